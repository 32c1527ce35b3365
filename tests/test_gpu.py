"""On a CUDA device: bf16 close to fp32, compile equal to eager, a short Lightning fit without
host syncs between logging steps (``torch.cuda.set_sync_debug_mode``). Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from test_hotpath import NaNAt
from test_module import TinyVideoData, tiny_model

from a2video.models import build_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CL3D = torch.channels_last_3d


def _live_model() -> torch.nn.Module:
    model = build_model("a2net_tiny", num_classes=5)
    for block in model.attention_blocks.values():  # make the blocks do something
        torch.nn.init.normal_(block.bn.weight, 1.0, 0.2)
    return model.cuda().eval().to(memory_format=CL3D)


def test_bf16_forward_is_close_to_fp32_with_live_attention_blocks() -> None:
    model = _live_model()
    x = torch.randn(4, 3, 8, 64, 64, device="cuda").contiguous(memory_format=CL3D)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(x)
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), ref, atol=0.05 * ref.abs().max().item(), rtol=0.05)


def test_compiled_model_matches_eager_on_cuda() -> None:
    model = _live_model()
    x = torch.randn(2, 3, 8, 64, 64, device="cuda").contiguous(memory_format=CL3D)
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model)(x)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


def test_compiled_module_normalises_uint8_clips_in_its_graph_as_eager_on_cuda() -> None:
    """What a compiled VideoClassifier gets from the DataModules on a GPU: a uint8 batch, made
    float, normalised, channels-last and stacked for the stem inside one compiled graph (bf16)."""
    from a2video.data.datasets import ClipSpec
    from a2video.data.transforms import normalize_batch

    spec = ClipSpec(frames=8, train_scale=(64, 64), crop_size=64, test_scale=64)
    model = tiny_model(channels_last=True, compile=True, clip_spec=spec).cuda().eval()
    for block in model.net.attention_blocks.values():  # make the blocks do something
        torch.nn.init.normal_(block.bn.weight, 1.0, 0.2)
    video = torch.randint(0, 256, (2, 3, 8, 64, 64), dtype=torch.uint8, device="cuda")
    assert model.takes_uint8(spec.mean, spec.std)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        got = model(video)
        model.hparams.compile = False
        expected = model(normalize_batch(video, spec.mean, spec.std))
    assert model.compiled_forward.state == "warm"
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)


class SyncWatch(Callback):
    """CUDA sync debug mode "error" from batch ``start`` to the start of batch ``stop``.

    A synchronising call in between raises where it happens (the traceback names it).
    """

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.start:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        elif batch_idx == self.stop:
            torch.cuda.set_sync_debug_mode("default")

    def on_train_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")


def _gpu_trainer(tmp_path, **kw) -> Trainer:
    return Trainer(
        accelerator="gpu",
        devices=1,
        default_root_dir=str(tmp_path),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        precision="bf16-mixed",
        **kw,
    )


def test_five_step_bf16_fit_skips_a_nan_step_on_the_device(tmp_path) -> None:
    model = tiny_model(channels_last=True, max_nonfinite_steps=3)
    model.criterion = NaNAt(model.criterion, {2})
    trainer = _gpu_trainer(tmp_path, max_steps=5, log_every_n_steps=4)
    trainer.fit(model, TinyVideoData(train_size=48))
    assert trainer.global_step == 5 and model.nonfinite.device_skip
    assert model.nonfinite_total == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "train/top1" in trainer.callback_metrics


class Uint8VideoData(TinyVideoData):
    """TinyVideoData's clips as the DataModules hand them over: uint8 to the device, normalised
    there by the transfer hook (:func:`a2video.data.datamodules.to_model_input`)."""

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        batch["video"] = (batch["video"] * 40 + 128).clamp(0, 255).to(torch.uint8)
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        from a2video.data.datamodules import to_model_input

        module = self.trainer.lightning_module
        return to_model_input(batch, self.spec.mean, self.spec.std, module)


@pytest.mark.parametrize("clips", ["float", "uint8"])
def test_training_steps_between_logging_steps_never_synchronise(tmp_path, clips) -> None:
    """Batches 1 and 2 (neither logs nor checks) run under sync debug mode "error", also with
    uint8 clips normalised on the device by the transfer hook."""
    data = (Uint8VideoData if clips == "uint8" else TinyVideoData)(train_size=48)
    trainer = _gpu_trainer(tmp_path, max_steps=5, log_every_n_steps=4, callbacks=[SyncWatch(1, 3)])
    trainer.fit(tiny_model(channels_last=True, clip_spec=data.spec), data)
    assert trainer.global_step == 5


def test_resume_restores_the_cuda_rng_streams() -> None:
    """The CUDA generator travels in the resume state (``capture_rng``/``restore_rng``): the
    dropout and augmentation draws on the device after a resume are the uninterrupted run's."""
    from a2video.training.resume import capture_rng, restore_rng

    torch.manual_seed(0)
    torch.randn(3, device="cuda")  # the CUDA generator initialised and advanced
    state = capture_rng()
    assert "cuda" in state
    expected = torch.randn(1000, device="cuda")
    torch.randn(77, device="cuda")  # the streams move on (the killed run)
    restore_rng(state)
    assert torch.equal(torch.randn(1000, device="cuda"), expected)


def test_select_frames_on_the_gpu_is_advanced_indexing() -> None:
    """NVDEC's frames are gathered on the GPU by stacking views (no index copied from the host)."""
    from a2video.data.video import select_frames

    frames = torch.randint(0, 256, (6, 4, 5, 3), dtype=torch.uint8)
    positions = [4, 0, 0, 5]
    got = select_frames(frames.cuda(), positions)
    assert got.is_cuda and torch.equal(got.cpu(), frames[positions])


def test_the_batch_ring_is_page_locked_and_no_slot_is_rewritten_before_its_copy() -> None:
    """``data.batch_ring`` on a GPU: the ring is page-locked, the copies to the GPU are
    asynchronous, and a slot is handed to a worker again only after the copy out of it ran, even
    when the GPU lags behind (each copy queued behind a long kernel): every clip arrives with
    its own video's values."""
    import functools

    from a2video.data.annotations import VideoRecord
    from a2video.data.datasets import ClipSpec, VideoClipDataset, collate_clips
    from a2video.data.ring import BatchRing, RingDataLoader, slots_for

    class IndexClips(VideoClipDataset):  # each video's clip holds its index in every byte
        def __getitem__(self, key) -> dict:
            i = int(key)
            video = torch.full((4, 32, 32, 3), i % 251, dtype=torch.uint8).permute(3, 0, 1, 2)
            return {"video": video, "label": 0, "index": i, "valid": True, "failed": False}

    spec = ClipSpec(frames=4, train_scale=(32, 32), crop_size=32, test_scale=32)
    dataset = IndexClips([VideoRecord(str(i), 0) for i in range(40)], "train", spec, uint8=True)
    ring = BatchRing(slots_for(2, None), 4 * 3 * 4 * 32 * 32, pin=True)
    assert ring.pinned and ring.memory.is_pinned()
    loader = RingDataLoader(
        dataset, batch_size=4, num_workers=2, collate_fn=functools.partial(collate_clips, ring=ring)
    )
    loader.ring = ring
    for _ in range(2):
        arrived = []
        for batch in loader:
            torch.cuda._sleep(2_000_000)  # the GPU falls behind the loader
            video = batch["video"].to("cuda", non_blocking=True)
            ring.released(batch)
            arrived.append((batch["index"].clone(), video))
        for index, video in arrived:
            want = (index % 251).to(torch.uint8).view(-1, 1, 1, 1, 1).expand(-1, 3, 4, 32, 32)
            assert torch.equal(video.cpu(), want)
    ring.wait()
