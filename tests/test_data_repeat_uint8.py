"""Repeated augmentation (``repeat_clips``) and uint8 batches normalised on the device.

- uint8: the workers' uint8 clips, normalised by the DataModule's ``on_after_batch_transfer``,
  are the very floats the float path gives (train, val and test views), and ``fit`` through the
  CLI feeds the model float clips.
- repeat_clips=K: one decode gives K clips of one video, each with its own start and
  augmentation; a batch of B clips holds B/K videos; an epoch is one pass over the videos (K
  clips each) on one rank and on two gloo ranks (disjoint videos, every video once).
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.multiprocessing as mp
from lightning.pytorch import Callback
from ports import free_port
from tiny_fit import tiny_fit_args

from a2video.data import KineticsDataModule
from a2video.data.datamodules import to_model_input
from a2video.data.datasets import VideoClipDataset
from a2video.data.transforms import normalize_batch
from a2video.training.cli import A2VideoCLI
from a2video.training.module import VideoClassifier


# ------------------------------------------------------------------------------------ uint8
@pytest.mark.parametrize("mode", ["train", "val", "test"])
def test_uint8_clips_normalise_to_the_float_clips(kinetics_root, small_clip, mode):
    dm = KineticsDataModule(kinetics_root, **small_clip)
    dm.setup("fit")
    records, spec = dm.datasets["train"].records[:3], dm.spec
    as_float = VideoClipDataset(records, mode, spec, seed=5)
    as_uint8 = VideoClipDataset(records, mode, spec, seed=5, uint8=True)
    for i in range(len(records)):
        f, u = as_float[(i, 2)]["video"], as_uint8[(i, 2)]["video"]
        assert u.dtype == torch.uint8 and f.dtype == torch.float32
        assert torch.equal(normalize_batch(u, spec.mean, spec.std), f)


def test_datamodule_batches_cross_as_uint8_and_reach_the_same_floats(kinetics_root, small_clip):
    on_device = KineticsDataModule(kinetics_root, seed=1, **small_clip)
    in_worker = KineticsDataModule(kinetics_root, seed=1, normalize_on_device=False, **small_clip)
    for name in ("train_dataloader", "val_dataloader"):
        a = next(iter(getattr(on_device, name)()))
        b = next(iter(getattr(in_worker, name)()))
        assert a["video"].dtype == torch.uint8 and b["video"].dtype == torch.float32
        a = on_device.on_after_batch_transfer(a, 0)
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["index"], b["index"])


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_channels_last_3d_with_the_channels_first_values(
    kinetics_root, small_clip, workers
):
    """A batch keeps the decoder's (T, H, W, C) memory order (``channels_last_3d``: no
    transposing copy per clip in the workers) and holds the values the channels-first batch
    held; a worker's batch is in shared memory (no copy to the training process); the network
    gets the same logits from it as from a contiguous batch."""
    from a2video.data.datasets import collate_clips

    kw = {**small_clip, "num_workers": workers, "batch_size": 4}
    dm = KineticsDataModule(kinetics_root, seed=3, repeat_clips=2, **kw)
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        video = next(iter(getattr(dm, name)()))["video"]
        clips = video.flatten(0, video.dim() - 5)
        assert clips.is_contiguous(memory_format=torch.channels_last_3d), (name, video.stride())
    # the same samples as the channels-first stack made them
    dataset = dm.datasets["train"]
    samples = [dataset[(i, 0)] for i in range(2)]
    batch = collate_clips(samples, repeat=2)
    first = torch.stack([s["video"].contiguous() for s in samples]).flatten(0, 1)
    assert torch.equal(batch["video"], first) and not batch["video"].is_contiguous()
    module = VideoClassifier(arch="a2net_tiny", num_classes=4, clip_spec=dm.spec).eval()
    with torch.no_grad():
        a = module(normalize_batch(batch["video"], dm.spec.mean, dm.spec.std))
        b = module(normalize_batch(first.contiguous(), dm.spec.mean, dm.spec.std))
    assert torch.equal(a, b)


def test_a_workers_batch_is_made_in_shared_memory(kinetics_root, small_clip):
    """Stacked into shared memory inside the worker (read there, where it is made): a batch made
    in ordinary memory is copied once more into shared memory to cross to the main process."""
    dm = KineticsDataModule(kinetics_root, **{**small_clip, "num_workers": 1})
    loader = dm.train_dataloader()
    collate = loader.collate_fn

    def collate_and_say_where(samples):
        batch = collate(samples)
        batch["made_shared"] = torch.tensor(batch["video"].is_shared())
        return batch

    loader.collate_fn = collate_and_say_where
    batch = next(iter(loader))
    assert bool(batch["made_shared"]) and batch["video"].is_shared()


def test_normalising_a_batch_makes_no_tensor_from_host_numbers_after_the_first():
    """The mean and std are made on the batch's device once: on a GPU each tensor made from
    host numbers is a blocking copy, i.e. a host sync every training step."""
    from host_data import HostData

    video = torch.randint(0, 256, (2, 3, 2, 4, 4), dtype=torch.uint8)
    mean, std = (0.41, 0.42, 0.43), (0.21, 0.22, 0.23)  # not used by another test
    first = normalize_batch(video, mean, std)
    with HostData() as watch:
        again = normalize_batch(video, mean, std)
    assert watch.made == 0
    assert torch.equal(again, first)
    m = torch.tensor(mean).view(-1, 1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1, 1)
    assert torch.equal(first, (video.float() / 255 - m) / s)


# ------------------------------------------------------------------------------ repeat_clips
def test_repeat_clips_must_divide_the_batch(kinetics_root, small_clip):
    with pytest.raises(ValueError, match="repeat_clips=3 must be >= 1 and divide batch_size=4"):
        KineticsDataModule(kinetics_root, repeat_clips=3, **small_clip)


def test_k_clips_of_one_video_each_differ(kinetics_root, small_clip):
    dm = KineticsDataModule(kinetics_root, repeat_clips=4, normalize_on_device=False, **small_clip)
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 3, 4, 32, 32)  # batch_size 4 clips = 1 video x 4
    assert batch["index"].unique().numel() == 1 and batch["label"].unique().numel() == 1
    assert batch["failed"].shape == (1,)  # failure flags stay one per video
    clips = batch["video"]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(clips[i], clips[j]), (i, j)
    # the same video decoded alone gives the same K clips: they all come from it
    ds = dm.datasets["train"]
    alone = ds[(int(batch["index"][0]), 0)]["video"]
    assert torch.equal(alone, clips)


def test_k_clips_have_their_own_start(kinetics_root, small_clip):
    """Starts drawn independently: over the videos, some K-tuple has distinct temporal starts."""
    dm = KineticsDataModule(kinetics_root, repeat_clips=4, **small_clip)
    ds = dm._dataset("train")
    picked = []
    real = ds._decode

    def spy(path, pick, *transform):
        picked.append(pick(1000))  # a long video: K starts in [0, 1000 - span]
        return real(path, pick, *transform)

    ds._decode = spy
    ds[(0, 0)]
    starts = [clip[0] for clip in picked[0]]
    assert len(starts) == 4 and len(set(starts)) > 1


def test_epoch_is_one_pass_over_the_videos_with_k_clips_each(kinetics_root, small_clip):
    small_clip["batch_size"] = 4
    dm = KineticsDataModule(kinetics_root, repeat_clips=2, **small_clip)
    loader = dm.train_dataloader()
    n = len(dm.datasets["train"])
    assert len(loader) == math.ceil(n / 2)
    seen = []
    for batch in loader:
        index = batch["index"]
        assert torch.equal(index[0::2], index[1::2])  # the K clips of a video side by side
        seen += index[0::2].tolist()
    assert sorted(seen) == list(range(n))


def _rank_videos(rank: int, world: int, root: str, clip: dict, split: str, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        dm = KineticsDataModule(root, train_split=split, repeat_clips=2, **clip)
        loader = dm.train_dataloader()
        videos = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            videos.append([b["index"][0::2].tolist() for b in loader])
        out.put((rank, len(loader), videos))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.timeout(120)
def test_two_gloo_ranks_see_disjoint_videos_each_once(kinetics_root, small_clip, tmp_path):
    dm = KineticsDataModule(kinetics_root, **small_clip)
    records = dm._dataset("train").records[:10]  # an even count: no padding duplicate
    split = tmp_path / "train10.txt"
    split.write_text("".join(f"{r.path} {r.label}\n" for r in records))
    (tmp_path / "class_names.txt").write_text("".join(f"{c}\n" for c in dm.class_names))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(
            target=_rank_videos, args=(r, 2, kinetics_root, small_clip, str(split), port, out)
        )
        for r in range(2)
    ]
    for p in procs:
        p.start()
    results = dict((r, (n, v)) for r, n, v in (out.get(timeout=100) for _ in procs))
    for p in procs:
        p.join(timeout=20)
        assert p.exitcode == 0
    for epoch in range(2):
        ranks = [[i for batch in results[r][1][epoch] for i in batch] for r in range(2)]
        assert not set(ranks[0]) & set(ranks[1])
        assert sorted(ranks[0] + ranks[1]) == list(range(10))
    assert results[0][0] == results[1][0] == 3  # 5 videos per rank, 2 per batch of 4 clips


# ----------------------------------------------------------------------------- through fit
class BatchRecorder(Callback):
    def __init__(self) -> None:
        self.train: list[tuple[torch.dtype, tuple, list[int]]] = []
        self.val_dtypes: list[torch.dtype] = []
        self.total_steps = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.total_steps = int(trainer.estimated_stepping_batches)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        v = batch["video"]
        self.train.append((v.dtype, tuple(v.shape), batch["index"].tolist()))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dl_idx=0) -> None:
        self.val_dtypes.append(batch["video"].dtype)


def test_fit_with_repeat_clips_feeds_float_clips_and_counts_steps(kinetics_root, tmp_path):
    recorder = BatchRecorder()
    torch.set_num_threads(1)
    A2VideoCLI(
        VideoClassifier,
        KineticsDataModule,
        trainer_defaults={"callbacks": [recorder]},
        args=tiny_fit_args(
            kinetics_root, tmp_path / "run", "--data.num_workers", "0", "--data.repeat_clips", "2"
        ),
    )
    steps_per_epoch = math.ceil(11 / 2)  # 11 training videos, 2 per batch of 4 clips
    assert len(recorder.train) == 2 * steps_per_epoch == recorder.total_steps
    assert all(dtype == torch.float32 for dtype, _, _ in recorder.train)
    clips = [shape[0] for _, shape, _ in recorder.train]
    assert clips == ([4] * 5 + [2]) * 2  # the last batch: the 11th video's 2 clips
    assert recorder.val_dtypes and all(d == torch.float32 for d in recorder.val_dtypes)


# --------------------------------------------------------------- uint8 into a compiled module
def test_compiled_module_normalises_uint8_clips_itself_with_the_same_floats(
    kinetics_root, small_clip
):
    """A compiled VideoClassifier with the DataModule's mean/std gets the uint8 batch (its graph
    normalises it, fused with the first layer); every other module gets the DataModule's floats,
    and both reach the network as the same floats."""
    dm = KineticsDataModule(kinetics_root, seed=1, **small_clip)
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].dtype == torch.uint8
    spec = dm.spec
    compiled = VideoClassifier(arch="a2net_tiny", num_classes=4, clip_spec=spec, compile=True)
    compiled.compile_options = {"backend": "aot_eager"}
    eager = VideoClassifier(arch="a2net_tiny", num_classes=4, clip_spec=spec)
    eager.load_state_dict(compiled.state_dict())
    assert compiled.takes_uint8(spec.mean, spec.std) and not eager.takes_uint8(spec.mean, spec.std)
    assert not compiled.takes_uint8(spec.mean, (0.5, 0.5, 0.5))  # another std: the data's floats
    as_uint8 = to_model_input(dict(batch), spec.mean, spec.std, compiled)
    as_float = to_model_input(dict(batch), spec.mean, spec.std, eager)
    assert as_uint8["video"].dtype == torch.uint8 and as_float["video"].dtype == torch.float32

    seen = []
    hook = compiled.net.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        compiled.eval(), eager.eval()
        got, want = compiled(as_uint8["video"]), eager(as_float["video"])
        assert torch.equal(eager(as_uint8["video"]), want)  # eager forward takes uint8 too
    hook.remove()
    assert torch.equal(seen[-1], as_float["video"])  # the same floats reach the network
    torch.testing.assert_close(got, want)


def test_uint8_clips_without_a_clip_spec_are_refused_with_the_fix():
    model = VideoClassifier(arch="a2net_tiny", num_classes=4)
    fix = r"uint8 clips need the clip spec's mean and std.*pass clip_spec="
    with pytest.raises(ValueError, match=fix):
        model(torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8))


class LossRecorder(BatchRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def test_compiled_fit_takes_uint8_clips_and_trains_as_the_eager_fit(
    kinetics_root, tmp_path, monkeypatch
):
    """``fit`` through the CLI with ``model.compile: true``: training and validation batches
    reach the module as uint8 (normalised inside its compiled graph), and the losses are the
    eager run's (same seed, same floats into the network)."""
    monkeypatch.setattr(VideoClassifier, "compile_options", {"backend": "aot_eager"})
    torch.set_num_threads(1)
    runs = {}
    extra = ["--data.num_workers", "0", "--trainer.max_epochs", "1"]
    extra += ["--trainer.check_val_every_n_epoch", "1", "--model.compile"]
    for compile in ("false", "true"):
        recorder = LossRecorder()
        A2VideoCLI(
            VideoClassifier,
            KineticsDataModule,
            trainer_defaults={"callbacks": [recorder]},
            args=tiny_fit_args(kinetics_root, tmp_path / f"run_{compile}", *extra, compile),
        )
        runs[compile] = recorder
    eager, compiled = runs["false"], runs["true"]
    assert {d for d, _, _ in eager.train} == {torch.float32} == set(eager.val_dtypes)
    assert {d for d, _, _ in compiled.train} == {torch.uint8} == set(compiled.val_dtypes)
    assert [i for _, _, i in compiled.train] == [i for _, _, i in eager.train]
    torch.testing.assert_close(compiled.losses, eager.losses, rtol=1e-4, atol=1e-5)
