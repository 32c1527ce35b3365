"""NVDEC backend (``decoder: nvdec``) without a GPU: the CPU-side logic against a fake decoder.

The fake (tests/fake_nvdec.py) stands in for PyNvVideoCodec's ``SimpleDecoder`` as documented
and decodes with PyAV, so the reader's index handling and layout conversion are checked frame
for frame against the PyAV reader. The GPU measurement is benchmarks/bench_nvdec.py's; the mixed
loader (NVDEC threads + CPU workers) is tests/test_data_mixed.py's.
"""

from __future__ import annotations

import fake_nvdec as fake_nvdec_module
import pytest
import torch
import user_videos
from fake_nvdec import FakeSimpleDecoder

from a2video.data import KineticsDataModule
from a2video.data import video as video_mod
from a2video.data.video import (
    DecoderUnavailableError,
    PyAVReader,
    VideoDecodeError,
    get_decoder,
    nvdec_frames_to_uint8,
)


@pytest.fixture
def fake_nvdec(monkeypatch):
    return fake_nvdec_module.install(monkeypatch)


def test_frames_to_uint8_layout():
    a = torch.randint(0, 255, (6, 5, 3), dtype=torch.uint8)
    out = nvdec_frames_to_uint8([a, a.reshape(6, 15)])
    assert out.shape == (2, 6, 5, 3) and torch.equal(out[0], a) and torch.equal(out[1], a)
    with pytest.raises(VideoDecodeError, match=r"NVDEC returned a frame of torch\.float32"):
        nvdec_frames_to_uint8([a.float()], "v.mp4")


def test_reader_matches_pyav_and_reuses_one_session(kinetics_root, small_clip, fake_nvdec):
    records = KineticsDataModule(kinetics_root, **small_clip)._dataset("train").records[:3]
    decoder = get_decoder("nvdec")
    for record in records:
        reader = decoder.open(record.path)
        ref = PyAVReader(record.path)
        assert (reader.num_frames, reader.height, reader.width) == (
            ref.num_frames,
            ref.height,
            ref.width,
        )
        idx = [5, 0, 5, ref.num_frames - 1, 2]  # any order, repeats
        assert torch.equal(reader.get_frames(idx), ref.get_frames(idx))
        with pytest.raises(VideoDecodeError, match="out of range"):
            reader.get_frames([ref.num_frames])
        reader.close()
    assert decoder._simple is not None and len(FakeSimpleDecoder.opened) == 3  # reconfigured


def test_datamodule_with_nvdec_gives_the_pyav_batches(kinetics_root, small_clip, fake_nvdec):
    ref = KineticsDataModule(kinetics_root, decoder="pyav", **small_clip)
    nv = KineticsDataModule(kinetics_root, decoder="nvdec", **small_clip)
    assert nv.pin_memory is False
    a, b = next(iter(ref.train_dataloader())), next(iter(nv.train_dataloader()))
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["index"], b["index"])
    assert not nv.mixed and nv.datasets["train"].decoder_name == "nvdec"


def install_pynvvideocodec(monkeypatch, folder, source: str = "") -> None:
    """An importable ``PyNvVideoCodec`` (a module with ``source``) on ``sys.path``."""
    (folder / "PyNvVideoCodec.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))


def test_nvdec_where_it_cannot_run_is_one_clear_line(
    kinetics_root, small_clip, monkeypatch, tmp_path
):
    """No package; the package but no CUDA GPU (a RuntimeError traceback before); a GPU but the
    driver's decoding library missing: each one DecoderUnavailableError line naming what is
    missing and the fix, in the option of the caller (the DataModule's ``--data.decoder``, the
    Python ``decoder=``)."""
    cpu = video_mod.check_decoder("auto")  # decord where installed, else pyav
    if video_mod.importlib.util.find_spec("PyNvVideoCodec") is None:
        with pytest.raises(DecoderUnavailableError) as err:
            KineticsDataModule(kinetics_root, decoder="nvdec", **small_clip)
        assert str(err.value) == (
            "decoder='nvdec' needs PyNvVideoCodec: pip install 'a2video[nvdec]', or decode on "
            f"the CPU with --data.decoder {cpu}"
        )
    install_pynvvideocodec(monkeypatch, tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    no_gpu = (
        "decoder='nvdec' needs an NVIDIA GPU and its driver, and torch finds none here "
        "(torch.cuda.is_available() is False): run on a machine with an NVIDIA GPU, or decode "
        "on the CPU with "
    )
    with pytest.raises(DecoderUnavailableError) as err:
        KineticsDataModule(kinetics_root, decoder="nvdec", **{**small_clip, "num_workers": 2})
    assert str(err.value) == no_gpu + f"--data.decoder {cpu}"
    with pytest.raises(DecoderUnavailableError) as err:
        get_decoder("nvdec")
    assert str(err.value) == no_gpu + f"decoder={cpu!r}"

    install_pynvvideocodec(monkeypatch, tmp_path, "raise ImportError('libnvcuvid.so.1: no')")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(DecoderUnavailableError) as err:
        get_decoder("nvdec")
    assert str(err.value).startswith("decoder='nvdec': PyNvVideoCodec does not load (ImportError")
    assert str(err.value).endswith(f"libnvcuvid), or decode on the CPU with decoder={cpu!r}")


@pytest.mark.timeout(120)
def test_bench_nvdec_needs_no_pyav_decord_numpy_or_jsonargparse(
    kinetics_root, small_clip, fake_nvdec
):
    """The GPU machine has python3 + torch + PyNvVideoCodec only: the benchmark imports with the
    others blocked, and its clip loop runs (here on the fake decoder, on the CPU)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    absent = ("av", "decord", "numpy", "jsonargparse", "torchvision", "lightning")
    blocked = f"import sys; [sys.modules.__setitem__(m, None) for m in {absent!r}]"
    code = f"{blocked}; sys.path.insert(0, 'benchmarks'); import bench_nvdec; print('ok')"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]

    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location(
        "bench_nvdec", root / "benchmarks" / "bench_nvdec.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = KineticsDataModule(kinetics_root, **small_clip)._dataset("train").records[0].path
    args = types.SimpleNamespace(frames=4, stride=2, train_crop=False)
    decoder = get_decoder("nvdec")
    assert bench.decode_clips(decoder, path, 4, bench._Rng(0), args) == 4
    frames = torch.randint(0, 255, (4, 64, 48, 3), dtype=torch.uint8)
    assert bench.train_crop(frames, bench._Rng(1), (40, 48), 32).shape == (3, 4, 32, 32)


@pytest.mark.timeout(120)
def test_bench_nvdec_mixed_mode_runs_on_the_stand_in(kinetics_root, small_clip, fake_nvdec, capsys):
    """``bench_nvdec.py --cpu-workers``: CPU only, NVDEC only and both, through a2video's
    MixedLoader (here NVDEC is the stand-in and the batches stay on the CPU)."""
    import importlib.util
    import types
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "bench_nvdec", root / "benchmarks" / "bench_nvdec.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    videos = [
        r.path for r in KineticsDataModule(kinetics_root, **small_clip)._dataset("train").records
    ]
    assert bench.cpu_decoder_or_none() == "auto"
    args = types.SimpleNamespace(
        frames=4, stride=2, train_scale=(40, 48), crop_size=32, batch_size=4, warmup_batches=1,
        seconds=0.5, threads=[2], repeats=[2], cpu_workers=1, share=None, device="cpu",
        cpu_decoder="auto", gpu_rate=0.0, fed_shares=None, rings=["on"],
    )  # fmt: skip
    cpu, nvdec, both = bench.mixed_main(videos, args)
    assert (cpu["mode"], nvdec["mode"], both["mode"]) == ("cpu", "nvdec", "mixed")
    assert (cpu["batch_ring"], nvdec["batch_ring"], both["batch_ring"]) == (True, False, True)
    assert all(r["clips"] > 0 and r["batch_clips"] == 4 for r in (cpu, nvdec, both))
    assert both["nvdec_share"] == both["suggested_nvdec_share"]
    assert 0 < both["nvdec_share"] < 1
    assert "suggested data.nvdec_share" in capsys.readouterr().out
    assert {thread for _, thread in FakeSimpleDecoder.opened} >= {"a2video-nvdec-0"}


def test_bench_nvdec_writes_each_mixed_row_to_its_json_as_the_row_ends(tmp_path, monkeypatch):
    """A mixed run stopped in its third configuration (gpu_checks.sh's timeout) leaves the two
    rows it finished in ``--json``, beside the run's info."""
    import importlib.util
    import json
    import types
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "bench_nvdec", root / "benchmarks" / "bench_nvdec.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    class Cut(Exception):
        pass

    done: list[float] = []

    def run_mixed(videos, share, *args, **kwargs) -> dict:
        if len(done) == 2:
            raise Cut
        done.append(share)
        return {"mode": "cpu" if share == 0 else "nvdec", "clips_per_s": 100.0 * len(done)}

    monkeypatch.setattr(bench, "run_mixed", run_mixed)
    out = tmp_path / "mixed.json"
    args = types.SimpleNamespace(
        threads=[4], repeats=[4], share=None, fed_shares=None, gpu_rate=0.0, rings=["on"],
        cpu_workers=2, device="cuda", json=str(out), info={"device": "H200"},
    )  # fmt: skip
    with pytest.raises(Cut):
        bench.mixed_main([], args)
    written = json.loads(out.read_text())
    assert written["device"] == "H200"
    assert [r["mode"] for r in written["results"]] == ["cpu", "nvdec"]


def test_bench_nvdec_fed_shares_runs_only_the_fed_loader(
    kinetics_root, small_clip, fake_nvdec, monkeypatch
):
    """``--fed-shares``: only the loader feeding the stand-in step, once per share, per
    ``--stand-in-ahead`` and per ``--rings`` (the step is a sleep here; on a GPU it is bf16
    matmuls)."""
    import importlib.util
    import time
    import types
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "bench_nvdec", root / "benchmarks" / "bench_nvdec.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    steps: list[float] = []

    class Sleep:
        def __init__(self, seconds: float, ahead: int = 0) -> None:
            self.seconds, self.ahead = seconds, ahead

        def __call__(self) -> None:
            steps.append(self.seconds)
            time.sleep(self.seconds)

    monkeypatch.setattr(bench, "StandInStep", Sleep)
    videos = [
        r.path for r in KineticsDataModule(kinetics_root, **small_clip)._dataset("train").records
    ]
    args = types.SimpleNamespace(
        frames=4, stride=2, train_scale=(40, 48), crop_size=32, batch_size=4, warmup_batches=1,
        seconds=0.3, threads=[2], repeats=[2], cpu_workers=1, share=None, device="cpu",
        cpu_decoder="auto", gpu_rate=400.0, fed_shares=[0.0, 0.5], stand_in_ahead=[0, 1],
        rings=["on", "off"],
    )  # fmt: skip
    rows = bench.mixed_main(videos, args)
    got = [(r["mode"], r["nvdec_share"], r["stand_in_ahead"], r["batch_ring"]) for r in rows]
    assert got == [
        (mode, share, ahead, ring)
        for ahead in (0, 1)
        for mode, share in (("cpu", 0.0), ("mixed", 0.5))
        for ring in (True, False)
    ]
    assert {r["gpu_rate"] for r in rows} == {400.0}
    assert all(r["clips"] > 0 for r in rows) and steps and set(steps) == {4 / 400.0}
    for r in rows:  # where the main thread's time per batch went: at least the 10 ms sleep
        spent = r["main_ms_per_batch"]
        assert set(spent) == {"loader_wait", "to_device", "step"} and spent["step"] >= 10


def test_nvdec_with_repeat_clips_asks_for_the_frames_the_cpu_decoder_does(
    kinetics_root, small_clip, fake_nvdec, monkeypatch
):
    """``repeat_clips: K`` decodes the K clips' distinct frames once, and NVDEC (in the training
    process and in the mixed loader's threads) asks its reader for exactly the frames the CPU
    decoder asks for: no whole window or span on the GPU path."""
    asked: dict[str, list] = {"pyav": [], "nvdec": []}
    recording = {"pyav": False}
    pyav_iter, fake_get = PyAVReader.iter_frames, FakeSimpleDecoder.get_batch_frames_by_index

    def pyav_frames(self, indices, *args):  # the chunks of the CPU path, get_frames's too
        if recording["pyav"]:  # the stand-in decodes with PyAV too: not counted there
            asked["pyav"].append((self.path, sorted({int(i) for i in indices})))
        return pyav_iter(self, indices, *args)

    def nvdec_frames(self, indices):
        asked["nvdec"].append((self._reader.path, list(indices)))
        return fake_get(self, indices)

    monkeypatch.setattr(PyAVReader, "iter_frames", pyav_frames)
    monkeypatch.setattr(FakeSimpleDecoder, "get_batch_frames_by_index", nvdec_frames)
    clip = {**small_clip, "repeat_clips": 2}
    recording["pyav"] = True
    ref = [b["index"] for b in KineticsDataModule(kinetics_root, decoder="pyav", **clip)
           .train_dataloader()]  # fmt: skip
    recording["pyav"] = False
    for extra in ({}, {"num_workers": 1, "nvdec_share": 1.0, "nvdec_threads": 2}):
        asked["nvdec"] = []
        nv = KineticsDataModule(kinetics_root, decoder="nvdec", **{**clip, **extra})
        assert nv.mixed == bool(extra)
        got = [b["index"] for b in nv.train_dataloader()]
        assert all(torch.equal(a, b) for a, b in zip(ref, got, strict=True))
        assert sorted(asked["nvdec"]) == sorted(asked["pyav"])
    assert len(asked["pyav"]) == len({path for path, _ in asked["pyav"]}) > 5  # one decode each
    assert max(len(i) for _, i in asked["pyav"]) <= 2 * small_clip["frames"]  # K x T at most


@pytest.mark.timeout(180)
def test_bench_nvdec_stages_table_on_the_stand_in(kinetics_root, fake_nvdec, tmp_path, capsys):
    """``bench_nvdec.py --stages``: every stage of a training sample timed for NVDEC (here the
    stand-in, frames on the CPU) and the CPU decoder, as a markdown table and in the JSON; the
    staged sample is the dataset's; both decoders asked for the same frames."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "bench_nvdec", root / "benchmarks" / "bench_nvdec.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "stages.json"
    argv = [
        "--stages", "--videos", str(Path(kinetics_root) / "train"), "--repeats", "2",
        "--samples", "5", "--batch-size", "4", "--frames", "4", "--stride", "2",
        "--train-scale", "40", "48", "--crop-size", "32", "--seconds", "60", "--json", str(out),
    ]  # fmt: skip
    assert bench.main(argv) == 0
    text = capsys.readouterr().out
    nvdec, cpu = json.loads(out.read_text())["results"]
    assert (nvdec["decoder"], nvdec["frames_on"]) == ("nvdec", "cpu") and cpu["decoder"] != "nvdec"
    for r in (nvdec, cpu):
        assert (r["repeat"], r["samples"], r["clips"], r["batch_videos"]) == (2, 5, 10, 2)
        assert [s["stage"] for s in r["stages"]] == [key for key, _ in bench.STAGES]
        assert all(s["ms_per_sample"] > 0 and s["ms_per_clip"] > 0 for s in r["stages"])
        assert sum(s["share"] for s in r["stages"]) == pytest.approx(1.0)
        assert [a["alternative"] for a in r["alternatives"]] == [a[0] for a in bench.ALTERNATIVES]
        assert all(a["ms_per_sample"] > 0 for a in r["alternatives"])
        assert r["staged_equals_library"] is True and r["float_cf_max_abs_diff"] <= 1
        assert r["as_run"]["clips_per_s"] > 0 and r["frames_requested_per_sample"] <= 8
        assert r["table"] in text
        for label in [s["label"] for s in r["stages"]] + [a[1] for a in bench.ALTERNATIVES]:
            assert f"| {label} | " in r["table"]
    assert nvdec["requested_match_cpu"] is True and nvdec["requested_compared"] == 5
    assert "asked its reader for the same frames" in text
    frames = torch.randint(0, 255, (4, 64, 48, 3), dtype=torch.uint8)
    crop = bench.train_crop(frames, bench._Rng(1), (40, 48), 32, uint8=True)
    assert crop.shape == (3, 4, 32, 32) and crop.dtype == torch.uint8


@pytest.mark.parametrize("kind", [*user_videos.ORIENTED, "rotate90-hflip.webm", "vflip.mkv"])
def test_nvdec_shows_turned_and_mirrored_videos_as_players_do(kind, tmp_path, fake_nvdec):
    """NVDEC decodes the picture as coded (PyNvVideoCodec has no display-matrix handling): the
    reader applies the header's matrix, so a phone or front-camera video comes out as the CPU
    decoders give it, not sideways or mirrored only on the GPU path."""
    path, shown = user_videos.make(kind, tmp_path)
    reader = get_decoder("nvdec").open(path)
    idx = [0, 7, 3, reader.num_frames - 1]
    frames = reader.get_frames(idx)
    assert frames.shape[1:3] == shown.shape[1:3]  # (H, W) as shown: turned by 90° where due
    assert torch.equal(frames, PyAVReader(path).get_frames(idx))
