"""``a2video synth --encoding web`` and ``a2video prepare`` end to end.

prepare: the same layout and annotation files, short-GOP no-B-frame H.264 that the DataModules
read (Kinetics and UCF-101), frames within codec noise of the original (PSNR), the source never
modified, DST inside SRC refused, unreadable videos listed and copied, a run killed mid-way
resumed without taking a half-written file as done, and ``--frame-step`` keeping ``stride``'s
time span.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import user_videos
from files import tree_digest

from a2video.cli import main
from a2video.data import KineticsDataModule, UCF101DataModule
from a2video.data.prepare import MARKER, Encoding, transcode
from a2video.data.video import PyAVReader

ROOT = Path(__file__).resolve().parents[1]


def _keyframes_and_reordering(path: str) -> tuple[int, int, bool]:
    import av

    with av.open(path) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
        fps = float(c.streams.video[0].average_rate)
    keys = sum(p.is_keyframe for p in packets)
    pts = [p.pts for p in packets]
    return keys, round(fps), pts != sorted(pts)  # B-frames: decode order != display order


def _videos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".mp4", ".avi", ".webm"))


def test_synth_web_encoding_is_download_like(tmp_path):
    args = ["synth", "--encoding", "web", "--classes", "1", "--videos-per-class", "2"]
    args += ["--val-per-class", "0", "--duration", "2", "2", "--max-side", "96", "--no-progress"]
    assert main([*args, str(tmp_path / "web")]) == 0
    videos = _videos(tmp_path / "web")
    assert len(videos) >= 1
    for v in videos:
        keys, fps, reordered = _keyframes_and_reordering(str(v))
        assert fps == 30 and keys == 1 and reordered  # keyint 250 > 60 frames; B-frames
    manifest = json.loads((tmp_path / "web" / "synth_manifest.json").read_text())
    assert manifest["encoding"] == "web"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def test_prepare_keeps_layout_and_content_and_never_touches_the_source(
    broken_kinetics_root, tmp_path, capsys
):
    src, dst = Path(broken_kinetics_root), tmp_path / "prepared"
    before = tree_digest(src)
    manifest = json.loads((src / "synth_manifest.json").read_text())
    rc = main(["prepare", str(src), str(dst), "--layout", "kinetics", "--gop", "4"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "videos on disk" in out and " MiB -> " in out
    assert tree_digest(src) == before  # the source is only read
    for name in ("train.csv", "val.csv", "test.csv"):
        assert (dst / "annotations" / name).read_bytes() == (
            src / "annotations" / name
        ).read_bytes()
    # every video has its copy, same folder and stem; the unusable ones are listed, unchanged
    unusable = {k for k, v in manifest["special"].items() if v in ("zero-byte", "text")}
    for rel in unusable:
        assert rel in out
        assert (dst / rel).read_bytes() == (src / rel).read_bytes()
    for v in _videos(src):
        rel = v.relative_to(src)
        copy = dst / (rel if str(rel) in manifest["special"] else rel.with_suffix(".mp4"))
        assert copy.is_file() or (dst / rel.with_suffix(".mp4")).is_file(), rel
    # the DataModule reads the copy as the original: same classes, same videos, same labels
    kw = dict(frames=4, stride=2, train_scale=(40, 48), crop_size=32, test_scale=40)
    a, b = KineticsDataModule(str(src), **kw), KineticsDataModule(str(dst), **kw)
    a.setup("fit"), b.setup("fit")
    assert a.class_names == b.class_names
    ra, rb = a.datasets["train"].records, b.datasets["train"].records
    assert [Path(r.path).stem for r in ra] == [Path(r.path).stem for r in rb]
    assert [r.label for r in ra] == [r.label for r in rb]
    # a normal video: short GOP, no B-frames, frames within codec noise of the original
    normal = next(r for r in ra if os.path.relpath(r.path, src) not in manifest["special"])
    copy = dst / Path(os.path.relpath(normal.path, src)).with_suffix(".mp4")
    keys, _, reordered = _keyframes_and_reordering(str(copy))
    orig, new = PyAVReader(normal.path), PyAVReader(str(copy))
    assert new.num_frames == orig.num_frames and keys >= new.num_frames // 4 and not reordered
    idx = list(range(orig.num_frames))
    assert _psnr(orig.get_frames(idx).numpy(), new.get_frames(idx).numpy()) > 30.0


def test_prepare_refuses_dst_inside_src(kinetics_root, capsys):
    assert (
        main(["prepare", kinetics_root, str(Path(kinetics_root) / "fast"), "--layout", "kinetics"])
        == 2
    )
    err = capsys.readouterr().err
    assert "inside the source" in err and "Traceback" not in err
    assert not (Path(kinetics_root) / "fast").exists()
    assert main(["prepare", kinetics_root, "/tmp/x", "--layout", "ucf101"]) == 2
    err = capsys.readouterr().err  # a root of the other layout names --layout of that one
    assert "not a ucf101 dataset root" in err and "fix: pass --layout kinetics" in err, err
    missing = str(Path(kinetics_root) / "nowhere")
    assert main(["prepare", missing, "/tmp/x", "--layout", "kinetics"]) == 2
    err = capsys.readouterr().err  # one line, naming the folder and what SRC must hold
    assert err.count("\n") == 1 and missing in err and "fix: point SRC" in err, err


@pytest.mark.timeout(180)
def test_prepare_resumes_after_a_kill(kinetics_root, tmp_path, capsys):
    dst = tmp_path / "prepared"
    cmd = [sys.executable, "-m", "a2video.cli", "prepare", kinetics_root, str(dst)]
    cmd += ["--layout", "kinetics", "--workers", "1", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list((dst / "train").rglob("*.mp4")) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its encoder process, mid-run
        proc.wait(timeout=30)
    done_before = {p for p in dst.rglob("*.mp4")}
    assert done_before, "the first run wrote nothing before the kill"
    total = len(_videos(Path(kinetics_root)))
    assert len(done_before) < total, "the run finished before the kill: nothing to resume"
    assert main(["prepare", kinetics_root, str(dst), "--layout", "kinetics", "--no-progress"]) == 0
    out = capsys.readouterr().out
    skipped = int(out.split(" written, ")[1].split(" already done")[0])
    assert 1 <= skipped == len(done_before)
    assert not list(dst.rglob("*.part"))
    for v in _videos(dst):  # every file complete and decodable
        reader = PyAVReader(str(v))
        reader.get_frames([reader.num_frames - 1])
        reader.close()
    assert len(_videos(dst)) == total


def test_prepare_frame_step_keeps_the_stride_time_span(kinetics_root, ucf_root, tmp_path):
    dst = tmp_path / "half"
    assert main(["prepare", kinetics_root, str(dst), "--layout", "kinetics", "--frame-step", "2",
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads((dst / MARKER).read_text())["frame_step"] == 2
    kw = dict(frames=4, train_scale=(40, 48), crop_size=32, test_scale=40, num_workers=0)
    dm = KineticsDataModule(str(dst), stride=4, **kw)
    dm.setup("fit")
    assert dm.datasets["train"].stride == 2  # 4 original frames = 2 frames of the copy
    assert next(iter(dm.train_dataloader()))["video"].shape[2] == 4
    src_video = KineticsDataModule(kinetics_root, stride=4, **kw)._dataset("train").records[0]
    copy = dm.datasets["train"].records[0]
    n_src, n_dst = PyAVReader(src_video.path).num_frames, PyAVReader(copy.path).num_frames
    assert n_dst == (n_src + 1) // 2
    with pytest.raises(ValueError, match="not a multiple of the videos' frame_step 2"):
        KineticsDataModule(str(dst), stride=3, **kw).setup("fit")
    # UCF-101: the split files name .avi files; the copy keeps the names
    ucf = tmp_path / "ucf"
    assert main(["prepare", ucf_root, str(ucf), "--layout", "ucf101", "--no-progress"]) == 0
    dm = UCF101DataModule(str(ucf), stride=2, **kw)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape[1:] == (3, 4, 32, 32) and batch["valid"].all()


def test_a_copys_frame_step_holds_when_data_root_is_its_video_folder(ucf_root, tmp_path):
    """UCF-101 read from the copy's ``UCF-101`` folder (``--data.annotation_dir`` apart) keeps
    the copy's frame_step, as ``a2video predict`` does for its videos; a split mixing copies
    with different steps stops in one line naming a video of each."""
    from a2video.data.prepare import PrepareError, records_frame_step

    ucf = tmp_path / "ucf_half"
    assert main(["prepare", ucf_root, str(ucf), "--layout", "ucf101", "--frame-step", "2",
                 "--no-progress"]) == 0  # fmt: skip
    kw = dict(frames=4, train_scale=(40, 48), crop_size=32, test_scale=40, num_workers=0)
    for root, lists in ((ucf, None), (ucf / "UCF-101", ucf / "ucfTrainTestlist")):
        dm = UCF101DataModule(str(root), annotation_dir=lists and str(lists),
                              stride=4, **kw)  # fmt: skip
        dm.setup("fit")
        assert dm.datasets["train"].stride == 2, root  # 4 original frames = 2 of the copy
    half = next(ucf.rglob("*.avi"))
    full = next(Path(ucf_root).rglob("*.avi"))
    assert records_frame_step([half]) == 2 and records_frame_step([full]) == 1
    with pytest.raises(PrepareError, match="mixes videos of prepared copies with frame_step 2 "
                       "and 1") as err:  # fmt: skip
        records_frame_step([full, half])
    assert str(half) in str(err.value) and str(full) in str(err.value)


@pytest.mark.timeout(240)
def test_bench_data_loading_runs_on_a_tiny_download_like_set(tmp_path):
    """The benchmark's path (web synth -> prepare -> interleaved variants -> cores per GPU)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_data", ROOT / "benchmarks" / "bench_data.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "loading.json"
    args = ["loading", "--root", str(tmp_path / "web"), "--classes", "1", "--per-class", "2"]
    args += ["--duration", "1", "1", "--repeats", "1", "--decoders", "pyav", "--frames", "4"]
    args += ["--stride", "4", "--crop", "32", "--scale-min", "40", "--scale-max", "48"]
    args += ["--gpu-rate", "100", "--json", str(out)]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())["loading"]
    assert json.loads((tmp_path / "web" / "synth_manifest.json").read_text())["encoding"] == "web"
    rows = result["variants"]["pyav"]
    assert set(rows) == {
        "bare decoder",
        "plain float (before)",
        "plain uint8",
        "repeated K=4",
        "prepared",
        "prepared K=4",
    }
    for row in rows.values():
        assert row["cores_per_gpu"]["100.0"] == -(-100 // row["clips_per_s_per_core"])
    # frame-steps: the same set prepared with frame step 1 and 2, K=1 and K=2
    args[0] = "frame-steps"
    assert bench.main([*args, "--steps", "1", "2", "--repeat", "2"]) == 0
    rows = json.loads(out.read_text())["frame_steps"]
    assert set(rows) == {f"frame_step {s}, K={k}" for s in (1, 2) for k in (1, 2)}
    assert rows["frame_step 1, K=2"]["vs_frame_step_1"] == 1.0
    assert json.loads((tmp_path / "web_prepared_fs2" / MARKER).read_text())["frame_step"] == 2
    # loader: the DataModule's train loader on the prepared copy, in one process
    args[0] = "loader"
    assert bench.main([*args, "--repeat", "2", "--batch-size", "2"]) == 0
    loader = json.loads(out.read_text())["loader"]
    assert loader["batch_layout"] == "channels_last_3d" and len(loader["clips_per_s_per_core"]) == 1


def _tiny_source(kinetics_root: str, root: Path, videos: int = 2) -> Path:
    """A Kinetics root with the fixture's annotations and ``videos`` of its train videos
    (the others are listed but absent: skipped and counted), in ``root/train_videos``."""
    import shutil

    root.mkdir(parents=True)
    shutil.copytree(Path(kinetics_root) / "annotations", root / "annotations")
    records = KineticsDataModule(kinetics_root, num_workers=0)._dataset("train").records
    for record in records[:videos]:
        target = root / "train_videos" / os.path.relpath(record.path, Path(kinetics_root) / "train")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.path, target)
    return root


def _prepare(src: Path, dst: Path, *options: str) -> None:
    args = ["prepare", str(src), str(dst), "--layout", "kinetics", "--workers", "1"]
    assert main([*args, "--no-progress", *options]) == 0


def test_preparing_a_prepared_copy_composes_the_frame_steps(kinetics_root, tmp_path):
    """A copy of a frame_step-2 copy keeps its videos' rate: it records frame_step 2, and the
    DataModule reads it with the source's stride; a further --frame-step multiplies."""
    src = _tiny_source(kinetics_root, tmp_path / "src")
    (src / "train_videos").rename(src / "train")
    (src / MARKER).write_text(json.dumps({"frame_step": 2}))  # as `prepare --frame-step 2` left
    smaller, half = tmp_path / "smaller", tmp_path / "half"
    _prepare(src, smaller, "--short-side", "32")
    marker = json.loads((smaller / MARKER).read_text())
    assert marker["frame_step"] == 2 and marker["source_frame_step"] == 2
    kw = dict(frames=4, stride=8, train_scale=(40, 48), crop_size=32, val_split="train")
    strides = [KineticsDataModule(str(r), **kw)._dataset("train").stride for r in (src, smaller)]
    assert strides == [4, 4]  # 8 original frames = 4 frames of either copy
    _prepare(smaller, half, "--frame-step", "2")
    assert json.loads((half / MARKER).read_text())["frame_step"] == 4
    dm = KineticsDataModule(str(half), **kw)
    assert dm._dataset("train").stride == 2
    a, b = (PyAVReader(r.records[0].path) for r in (KineticsDataModule(str(smaller), **kw)
            ._dataset("train"), dm._dataset("train")))  # fmt: skip
    assert b.num_frames == (a.num_frames + 1) // 2


def test_prepare_follows_symlinked_folders_once(kinetics_root, tmp_path):
    """Videos in a linked folder are prepared (the loaders follow links); a link back up the
    tree is not walked round."""
    src = _tiny_source(kinetics_root, tmp_path / "src")
    elsewhere = tmp_path / "elsewhere"
    (src / "train_videos").rename(elsewhere)
    (src / "train").symlink_to(elsewhere, target_is_directory=True)
    next(p for p in elsewhere.iterdir() if p.is_dir()).joinpath("loop").symlink_to(src)
    dst = tmp_path / "dst"
    _prepare(src, dst)
    expected = sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*.mp4"))
    assert len(expected) == 2
    assert sorted(p.relative_to(dst / "train") for p in (dst / "train").rglob("*.mp4")) == expected
    assert not (dst / "train").is_symlink() and len(_videos(dst)) == 2
    assert len(KineticsDataModule(str(dst), val_split="train")._dataset("train")) == 2


# ------------------------------------------------------------------ reruns and failures
def test_unreadable_videos_stay_listed_after_an_interrupted_run(broken_kinetics_root, tmp_path):
    """Each unreadable source is journalled before its unchanged copy is renamed in: a run
    killed before its end (so before the marker got the list) is rerun with the whole list
    (the rerun skips those copies as done, and listed none of them before)."""
    from a2video.data.prepare import JOURNAL, prepare_dataset

    dst = tmp_path / "prepared"
    full = prepare_dataset(broken_kinetics_root, dst, "kinetics", workers=1, progress=False)
    assert full.unreadable and (dst / JOURNAL).is_file()
    state = json.loads((dst / MARKER).read_text())
    del state["unreadable"]  # what a run killed mid-way leaves: no list in the marker
    (dst / MARKER).write_text(json.dumps(state))
    rerun = prepare_dataset(broken_kinetics_root, dst, "kinetics", workers=1, progress=False)
    assert rerun.encoded == 0 and rerun.unreadable == full.unreadable


def test_a_failure_to_write_the_copy_stops_the_run_and_is_not_done(kinetics_root, tmp_path):
    """An output-side failure (here a folder where the copy goes) is one line naming the file,
    not "unreadable video, copied unchanged" for a good source (a killed run's leftover
    encoder made a rerun's rename fail so, and the original was kept for good)."""
    from a2video.data.prepare import PrepareError, prepare_dataset

    src = _tiny_source(kinetics_root, tmp_path / "src", videos=1)
    (video,) = (src / "train_videos").rglob("*.mp4")
    dst = tmp_path / "dst"
    (dst / video.relative_to(src)).mkdir(parents=True)  # the copy's path is taken
    with pytest.raises(PrepareError, match="writing the prepared copy failed") as err:
        prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    assert str(dst / video.relative_to(src)) in str(err.value)
    assert not json.loads((dst / MARKER).read_text()).get("unreadable")
    assert not list(dst.rglob("*.part"))


@pytest.fixture(scope="module")
def long_video_root(tmp_path_factory) -> Path:
    """A Kinetics root with one 15-s video: its encoder works for over a second."""
    src = tmp_path_factory.mktemp("long") / "long"
    args = ["synth", str(src), "--layout", "kinetics", "--classes", "1", "--videos-per-class"]
    args += ["1", "--val-per-class", "0", "--duration", "15", "15", "--missing", "0"]
    assert main([*args, "--no-progress"]) == 0
    return src


def _start_prepare(src: Path, dst: Path, part: str = "*", **popen: object) -> subprocess.Popen:
    """``a2video prepare`` in a process of its own session, Ctrl-C not ignored (as in a shell's
    foreground); once its encoder writes (the video named ``part``)."""
    cmd = [sys.executable, "-m", "a2video.cli", "prepare", str(src), str(dst)]
    cmd += ["--layout", "kinetics", "--workers", "1", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")

    def ctrl_c_as_in_a_terminal() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, preexec_fn=ctrl_c_as_in_a_terminal, **popen
    )
    deadline = time.monotonic() + 60
    while not list(dst.rglob(f"{part}.part")) and time.monotonic() < deadline:
        time.sleep(0.005)  # the encoder is writing
    return proc


def _in_session(leader: int, marker: str = "") -> list[int]:
    """The live processes of ``leader``'s session but itself (a zombie waits for init to reap
    it), those whose command line holds ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(leader):
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                ours = os.getsid(int(entry.name)) == leader and state != "Z"
                if ours and marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return pids


@pytest.mark.timeout(120)
def test_killing_prepare_ends_its_encoder_processes(long_video_root, tmp_path):
    """SIGKILL to the prepare process alone (a job manager's kill): its spawn-pool encoder ends
    with it. It went on encoding its video, re-parented to init, and raced a rerun on its file:
    a 15-s video takes the encoder over a second, and it is gone within half of one."""
    dst = tmp_path / "prepared"
    proc = _start_prepare(long_video_root, dst)
    assert _in_session(proc.pid), "no encoder process started"
    proc.kill()
    proc.wait(timeout=30)
    time.sleep(0.5)
    assert _in_session(proc.pid) == [] and not list(dst.rglob("*.mp4"))


@pytest.mark.timeout(120)
def test_a_killed_run_lists_the_unreadable_videos_it_met(long_video_root, tmp_path):
    """The repro: a text file is the first video prepare handles; the run is killed while it
    encodes the next; the rerun lists the text file (its unchanged copy was renamed in, so the
    rerun skipped it as done, and the list was written only at a run's end)."""
    import shutil

    from a2video.data.prepare import prepare_dataset

    src = tmp_path / "src"
    shutil.copytree(long_video_root, src)
    (video,) = (src / "train").rglob("*.mp4")
    text = video.with_name("!not_a_video.mp4")  # sorted first
    text.write_text("not a video")
    dst = tmp_path / "prepared"
    proc = _start_prepare(src, dst, part=f"{video.name}*")  # the text file is done
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert (dst / text.relative_to(src)).is_file() and not (dst / video.relative_to(src)).exists()
    video.unlink()  # the rerun: only the text file, done
    report = prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    assert report.skipped == 1 and list(report.unreadable) == [str(text.relative_to(src))]


@pytest.mark.timeout(180)
def test_an_encoder_process_that_dies_is_not_a_hang(long_video_root, tmp_path):
    """An encoder process killed while it encodes (the kernel's out-of-memory killer, a crash in
    the codec library): the run encodes that video again in a process of its own and ends. With
    ``multiprocessing.Pool`` the task died with its process and the run waited for it for ever."""
    dst = tmp_path / "prepared"
    proc = _start_prepare(long_video_root, dst, stdout=subprocess.PIPE, text=True)
    (part,) = dst.rglob("*.part")  # NAME.<encoder pid>.part
    os.kill(int(part.name.rsplit(".", 2)[1]), signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    (copy,) = dst.rglob(part.name.rsplit(".", 2)[0])
    assert not list(dst.rglob("*.part")) and "unreadable" not in out  # encoded the second time
    from a2video.data.video import get_decoder

    reader = get_decoder("pyav").open(str(copy))
    assert reader.num_frames > 0
    reader.close()


def test_a_video_that_kills_its_encoder_each_time_is_copied_and_listed(kinetics_root, tmp_path):
    """A video whose encoding kills the process every time (a codec crash): copied unchanged and
    listed as unreadable with the cause; the others are encoded."""
    from a2video.data import prepare

    calls = []

    def one(job):  # in the run's process: the pool's workers are stood in for below
        calls.append(job[1])
        if job[1].endswith(victim):  # as _prepare_one starts, then the process dies
            Path(f"{job[1]}.{os.getpid()}.part").touch()
            raise prepare_broken()
        return real(job)

    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    def prepare_broken():
        return BrokenProcessPool("A process in the process pool was terminated abruptly")

    class Inline:  # ProcessPoolExecutor's interface, run in this process
        def __init__(self, *args, **kwargs) -> None:
            pass

        def submit(self, fn, job):
            future = Future()
            try:
                future.set_result(one(job))
            except BrokenProcessPool as err:
                future.set_exception(err)
            return future

        def shutdown(self, wait=True, cancel_futures=False) -> None:
            pass

    real = prepare._prepare_one
    videos = sorted(Path(kinetics_root).rglob("*.mp4"))
    victim = videos[1].name
    import concurrent.futures

    original = concurrent.futures.ProcessPoolExecutor
    concurrent.futures.ProcessPoolExecutor = Inline
    try:
        report = prepare.prepare_dataset(kinetics_root, tmp_path / "p", "kinetics", workers=2,
                                         progress=False)  # fmt: skip
    finally:
        concurrent.futures.ProcessPoolExecutor = original
    (listed,) = [v for v, why in report.unreadable.items() if why == prepare.CRASHED]
    assert listed.endswith(victim) and report.encoded == len(videos)
    assert (tmp_path / "p" / listed).read_bytes() == videos[1].read_bytes()
    assert sum(c.endswith(victim) for c in calls) == 2  # in the pool, then alone


@pytest.mark.timeout(120)
def test_ctrl_c_ends_prepare_in_one_line(long_video_root, tmp_path):
    """Ctrl-C (SIGINT to the foreground process group: the run and its encoder) while a video
    is encoded: one line and exit status 130. It printed the run's traceback (27 lines) and
    the encoder process's own."""
    dst = tmp_path / "prepared"
    proc = _start_prepare(long_video_root, dst, stderr=subprocess.PIPE, text=True)
    assert list(dst.rglob("*.part")), "the encoder never started"
    for pid in _in_session(proc.pid, "spawn_main"):  # the encoder: Ctrl-C is the run's to handle
        ignored = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if ln.startswith("SigIgn:"))  # fmt: skip
        assert int(ignored.split()[1], 16) >> (signal.SIGINT - 1) & 1, f"{pid} takes Ctrl-C"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        f"a2video prepare: interrupted; rerun the same command to resume into {dst}"
    ]


def test_names_and_annotations_follow_the_source_on_reruns(kinetics_root, tmp_path):
    """A Kinetics ``.mkv`` keeps its name (a ``path label`` list names it; the copy was renamed
    ``.mp4`` and the list lost it); a corrected annotation file of the same size is copied
    again on a rerun (it was compared by size)."""
    from a2video.data.prepare import prepare_dataset

    src = _tiny_source(kinetics_root, tmp_path / "src", videos=2)
    (src / "train_videos").rename(src / "train")
    first, second = sorted((src / "train").rglob("*.mp4"))
    mkv = first.with_suffix(".mkv")
    first.rename(mkv)
    lines = [f"{p.relative_to(src)} {p.parent.name}" for p in (mkv, second)]
    (src / "lists").mkdir()
    (src / "lists" / "train.txt").write_text("\n".join(lines) + "\n")
    dst = tmp_path / "dst"
    prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    assert (dst / mkv.relative_to(src)).is_file() and not (dst / first.relative_to(src)).exists()
    dm = KineticsDataModule(str(dst), train_split=str(dst / "lists" / "train.txt"),
                            val_split=str(dst / "lists" / "train.txt"), num_workers=0)  # fmt: skip
    assert len(dm._dataset("train")) == 2
    csv = src / "annotations" / "train.csv"
    data = bytearray(csv.read_bytes())
    data[data.rstrip().rfind(b"0")] = ord("1")  # the last row's is_cc: the same size
    csv.write_bytes(bytes(data))
    assert len(data) == len((dst / "annotations" / "train.csv").read_bytes())
    report = prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    assert report.skipped == 2 and report.encoded == 0
    assert (dst / "annotations" / "train.csv").read_bytes() == csv.read_bytes()


def test_a_root_of_links_to_a_frame_step_copy_keeps_its_stride(kinetics_root, tmp_path):
    """A dataset root whose split folders link into a ``--frame-step 2`` copy: the copy's step
    holds (the marker was looked for along the links' path only: stride 8, twice the span)."""
    import shutil

    copy = tmp_path / "half"
    _prepare(Path(kinetics_root), copy, "--frame-step", "2")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copytree(Path(kinetics_root) / "annotations", mixed / "annotations")
    for split in ("train", "val"):
        (mixed / split).symlink_to(copy / split, target_is_directory=True)
    strides = [KineticsDataModule(str(r), stride=8)._dataset("train").stride for r in (copy, mixed)]
    assert strides == [4, 4]


def test_prepare_refuses_encoder_settings_out_of_range_in_one_line(kinetics_root, tmp_path, capsys):
    """``--crf -5`` listed every video as unreadable and exited 0."""
    args = ["prepare", kinetics_root, str(tmp_path / "dst"), "--layout", "kinetics"]
    limits = [("--crf", "-5"), ("--crf", "52"), ("--gop", "0"), ("--workers", "0")]
    limits += [("--short-side", "1"), ("--frame-step", "0")]
    for flag, value in limits:
        assert main([*args, flag, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{flag} {value}: must be" in err
    assert not (tmp_path / "dst").exists()


def test_a_rerun_removes_the_leftovers_of_dead_runs_only(kinetics_root, tmp_path):
    """Part and temp files of a process that is gone (a killed run's, an earlier a2video's
    ``NAME.part``) are removed on a rerun; those of a live process (a run beside this one) are
    its own: removing them made its rename fail and stop it. A leftover in a prepared copy
    is not copied by a prepare of that copy."""
    src = _tiny_source(kinetics_root, tmp_path / "src", videos=1)
    dst = tmp_path / "dst"
    _prepare(src, dst)
    (video,) = (dst / "train_videos").rglob("*.mp4")
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process
    ended = subprocess.Popen(["true"])  # not reaped: a zombie (a killed run's encoder, ending)
    live = subprocess.Popen(["sleep", "60"])
    try:
        while Path(f"/proc/{ended.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        dead_part = video.with_name(f"{video.name}.{gone.pid}.part")
        old_part = video.with_name(f"{video.name}.part")
        ended_part = video.with_name(f"{video.name}.{ended.pid}.part")
        live_part = video.with_name(f"{video.name}.{live.pid}.part")
        dead_tmp = dst / "annotations" / f".train.csv.{gone.pid}.tmp"
        for path in (dead_part, old_part, ended_part, live_part, dead_tmp):
            path.write_bytes(b"half")
        _prepare(src, dst)
        assert live_part.exists()
        assert not any(p.exists() for p in (dead_part, old_part, ended_part, dead_tmp))
        dead_tmp.write_bytes(b"half")
        _prepare(dst, tmp_path / "copy_of_copy")
    finally:
        live.kill()
        live.wait()
        ended.wait()
    copied = {p.name for p in (tmp_path / "copy_of_copy").rglob("*")}
    assert live_part.name not in copied and dead_tmp.name not in copied


def test_kinetics_names_beside_an_mp4_and_from_an_earlier_version(kinetics_root, tmp_path):
    """``a.mkv`` beside a different ``a.mp4``: both are copies of their own, also when a rerun
    finds only ``a.mp4`` done (it took that for ``a.mkv``'s copy under the old naming and never
    wrote ``a.mkv``). A DST of the old naming (``b.mkv`` as ``b.mp4``) is not encoded again;
    the CSV finds every video by its stem."""
    from a2video.data.prepare import prepare_dataset

    src = _tiny_source(kinetics_root, tmp_path / "src", videos=2)
    (src / "train_videos").rename(src / "train")
    first, second = sorted((src / "train").rglob("*.mp4"))
    twin = first.parent / f"{second.stem}.mkv"  # same stem as the second, other content
    first.rename(twin)
    dst = tmp_path / "dst"
    prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    copies = [dst / p.relative_to(src) for p in (twin, second)]
    assert all(c.is_file() for c in copies)
    copies[0].unlink()  # a run killed before it got there
    report = prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    assert report.encoded == 1 and copies[0].is_file()
    # a DST of the old naming: the .mkv's copy is b.mp4, found as done
    second.unlink()
    copies[1].unlink()
    copies[0].rename(copies[0].with_suffix(".mp4"))
    report = prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    assert (report.encoded, report.skipped) == (0, 1) and not copies[0].exists()
    dm = KineticsDataModule(str(dst), val_split="train", num_workers=0)
    assert [Path(r.path).name for r in dm._dataset("train").records] == [f"{second.stem}.mp4"]


def test_a_video_encoded_later_leaves_the_unreadable_list(kinetics_root, tmp_path):
    """A source found unreadable, then replaced by a good video (its unchanged copy deleted):
    the rerun encodes it and lists it no more (the marker kept it for good); nor one deleted
    with its copy."""
    from a2video.data.prepare import JOURNAL, prepare_dataset

    src = _tiny_source(kinetics_root, tmp_path / "src", videos=2)
    bad = sorted((src / "train_videos").rglob("*.mp4"))[1]
    kept = bad.read_bytes()
    bad.write_text("not a video")
    dst = tmp_path / "dst"
    rel = str(bad.relative_to(src))
    first = prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    assert list(first.unreadable) == [rel]
    bad.write_bytes(kept)  # a new download
    (dst / rel).unlink()
    report = prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    assert report.encoded == 1 and report.unreadable == {}
    assert json.loads((dst / MARKER).read_text())["unreadable"] == {}
    assert not (dst / JOURNAL).exists()
    bad.write_text("not a video")  # unreadable again, then deleted with its copy
    (dst / rel).unlink()
    assert list(prepare_dataset(src, dst, "kinetics", workers=1, progress=False).unreadable)
    bad.unlink()
    (dst / rel).unlink()
    assert prepare_dataset(src, dst, "kinetics", workers=1, progress=False).unreadable == {}


def test_a_damaged_marker_is_one_line(kinetics_root, tmp_path, capsys):
    """A marker that is not JSON (cut short): prepare and the DataModules stop in one line
    naming it (they printed a JSON traceback)."""
    from a2video.data.prepare import PrepareError

    src = _tiny_source(kinetics_root, tmp_path / "src", videos=1)
    dst = tmp_path / "dst"
    _prepare(src, dst)
    (dst / MARKER).write_text('{"frame_step": 2, "enc')
    args = ["prepare", str(src), str(dst), "--layout", "kinetics", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{dst / MARKER}: damaged" in err
    dm = KineticsDataModule(str(dst), val_split="train", num_workers=0)
    with pytest.raises(PrepareError, match="damaged"):
        dm._dataset("train")


def test_a_link_to_no_video_is_listed_not_fatal(kinetics_root, tmp_path):
    """A source video that is a link to nothing (a moved download) is listed as unreadable and
    the others are prepared (the run stopped at it with FileNotFoundError)."""
    from a2video.data.prepare import prepare_dataset

    src = _tiny_source(kinetics_root, tmp_path / "src", videos=2)
    folder = next((src / "train_videos").iterdir())
    (folder / "zzz_moved.mp4").symlink_to(tmp_path / "nowhere.mp4")
    dst = tmp_path / "dst"
    report = prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    rel = str((folder / "zzz_moved.mp4").relative_to(src))
    assert report.encoded == 2 and list(report.unreadable) == [rel]
    assert "FileNotFoundError" in report.unreadable[rel] and not (dst / rel).exists()
    assert json.loads((dst / MARKER).read_text())["unreadable"] == report.unreadable


def test_options_are_free_until_a_video_is_written(kinetics_root, tmp_path):
    """A first run the encoder refused (no video written): the rerun with other options
    goes on (it was refused: 'prepared with' the failed options, although the failure said
    fix the options and rerun). Once a video is written, other options are refused; the
    Python API refuses a crf outside x264's 0..51 before writing anything."""
    from a2video.data import prepare as prep

    src = _tiny_source(kinetics_root, tmp_path / "src", videos=1)
    dst = tmp_path / "dst"
    with pytest.raises(prep.PrepareError, match="writing the prepared copy failed"):
        prep.prepare_dataset(src, dst, "kinetics", prep.Encoding(preset="no-such"), 1, False)
    report = prep.prepare_dataset(src, dst, "kinetics", prep.Encoding(gop=8), 1, progress=False)
    assert report.encoded == 1
    with pytest.raises(prep.PrepareError, match="resume with the same options"):
        prep.prepare_dataset(src, dst, "kinetics", workers=1, progress=False)
    with pytest.raises(prep.PrepareError, match=r"crf 0\.\.51"):
        prep.prepare_dataset(src, tmp_path / "new", "kinetics", prep.Encoding(crf=-5))
    assert not (tmp_path / "new").exists()


def test_the_encoder_initializer_runs_where_there_is_no_prctl(monkeypatch):
    """On Windows (a supported platform) and macOS there is no prctl: the pool initializer
    goes on (on Windows ``ctypes.CDLL(None)`` raised TypeError, which it let through, so no
    encoder process could start) and the parent check before each rename stands in."""
    import ctypes

    from a2video.data import prepare as prep

    def no_libc(*args: object, **kwargs: object) -> None:
        raise TypeError("LoadLibrary() argument 1 must be str, not None")  # Windows

    previous = signal.getsignal(signal.SIGINT)
    try:
        for platform in ("win32", "linux"):
            monkeypatch.setattr(sys, "platform", platform)
            monkeypatch.setattr(ctypes, "CDLL", no_libc)
            prep._end_with_the_parent(os.getppid())
            assert os.getppid() == prep._PARENT and not prep._orphaned()
    finally:
        signal.signal(signal.SIGINT, previous)
        monkeypatch.setattr(prep, "_PARENT", None)


def test_training_above_the_copys_short_side_says_it_upscales(kinetics_root, tmp_path, caplog):
    """A copy prepared with ``--short-side 24`` read at ``train_scale`` up to 40 upscaled every
    clip from the smaller copy without a word; one warning now names the split, both sizes and
    the two fixes. Scales the copy holds say nothing."""
    import logging

    src = _tiny_source(kinetics_root, tmp_path / "src")
    (src / "train_videos").rename(src / "train")
    _prepare(src, tmp_path / "small", "--short-side", "24")
    kw = dict(frames=4, crop_size=16, test_scale=24, num_workers=0, val_split="train")
    with caplog.at_level(logging.WARNING, logger="a2video.data.datamodules"):
        KineticsDataModule(str(tmp_path / "small"), train_scale=(24, 40), **kw).setup("fit")
    said = [r.getMessage() for r in caplog.records if "upscaled" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith("train split:") and "short side of at most 24 px" in said[0]
    assert "data.train_scale reaches 40" in said[0] and "--short-side 40" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="a2video.data.datamodules"):
        KineticsDataModule(str(tmp_path / "small"), train_scale=(16, 24), **kw).setup("fit")
        KineticsDataModule(str(src), train_scale=(24, 40), **kw).setup("fit")  # not a copy
    assert not [r for r in caplog.records if "upscaled" in r.getMessage()]


def test_the_shared_temp_files_name_their_writer_for_the_cleanup(tmp_path):
    """``prepare`` removes the temp files of dead runs only, by the process id in their name:
    the one temp-file writer (:mod:`a2video.atomic_write`) names its writer, and an error
    inside its block leaves the old file and no temp file."""
    from a2video.atomic_write import replaced_atomically, temp_path
    from a2video.data.prepare import _leftover, _writer_pid

    name = temp_path(tmp_path / "classInd.txt").name
    assert _leftover(name) and _writer_pid(name) == os.getpid()
    target = tmp_path / "classInd.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), replaced_atomically(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["classInd.txt"]


def test_prepare_refuses_a_dst_of_videos_it_did_not_write(kinetics_root, tmp_path, capsys):
    """A DST holding videos but no marker (say a plain copy of SRC): the videos of the same
    names counted as 'already done', nothing was encoded and the marker written then said
    ``--frame-step 2``, so the DataModules halved the stride on the original frame rate."""
    import shutil

    src = _tiny_source(kinetics_root, tmp_path / "src", videos=1)
    dst = tmp_path / "dst"
    shutil.copytree(src, dst)
    args = ["prepare", str(src), str(dst), "--layout", "kinetics", "--workers", "1"]
    assert main([*args, "--frame-step", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{dst} holds videos but is not a copy" in err and err.count("\n") == 1, err
    assert not (dst / MARKER).exists()


def test_prepare_encodes_videos_of_every_common_extension(tmp_path):
    """A ``path label`` list naming ``.mpg`` / ``.wmv`` videos: prepare took them for other
    files and copied them unchanged ('0 videos'), while the copy's marker said frame_step 2,
    so the DataModules read them at half the stride they asked for."""
    import av

    from a2video.data.prepare import prepare_dataset

    src = tmp_path / "src"
    (src / "annotations").mkdir(parents=True)
    (src / "v").mkdir()
    for name, fmt, codec in (("a.mpg", "mpeg", "mpeg1video"), ("b.wmv", "asf", "wmv2")):
        with av.open(str(src / "v" / name), "w", format=fmt) as out:
            stream = out.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            for i in range(8):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), "rgb24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
    (src / "annotations" / "train.txt").write_text("v/a.mpg 0\nv/b.wmv 1\n")
    report = prepare_dataset(src, tmp_path / "dst", "kinetics", Encoding(frame_step=2), 1, False)
    assert (report.videos, report.encoded, report.unreadable) == (2, 2, {})
    for name in ("a.mpg", "b.wmv"):
        assert PyAVReader(str(tmp_path / "dst" / "v" / name)).num_frames == 4


def test_a_link_in_src_to_the_copy_is_not_prepared_again(kinetics_root, tmp_path):
    """SRC holding a link to DST (``data/fast -> the copy``): a rerun encoded the copy's videos
    again into ``DST/fast/`` (a copy of the copy), one level deeper on every rerun."""
    src = _tiny_source(kinetics_root, tmp_path / "src", videos=1)
    dst = tmp_path / "dst"
    _prepare(src, dst)
    files = sorted(p.relative_to(dst) for p in dst.rglob("*"))
    (src / "fast").symlink_to(dst)
    _prepare(src, dst)
    assert sorted(p.relative_to(dst) for p in dst.rglob("*")) == files


@pytest.mark.parametrize(
    "kind", ["rotate90", "hflip", "rotate90-vflip", "hflip.mkv", "rotate90-vflip.webm"]
)
def test_a_copy_shows_what_a_turned_or_mirrored_source_shows(kind, tmp_path):
    """The display matrix (a phone's rotation, a front camera's mirror) is applied to the copy's
    pixels: the copy has none, and shows the frames players show of the source."""
    src, shown = user_videos.make(kind, tmp_path)
    dst = tmp_path / "copy.mp4"
    assert transcode(src, dst, Encoding()) == len(shown)
    reader = PyAVReader(str(dst))
    frames = reader.get_frames(range(len(shown)))
    reader.close()
    assert frames.shape == shown.shape
    assert (frames.float() - torch.from_numpy(shown).float()).abs().mean() < 8


# --------------------------------------------------------------------------- prepared-copy lookups
def _old_find_prepared_root(video) -> Path | None:
    """find_prepared_root as it was, one marker look-up per parent of each video: the reference."""
    for folder in Path(os.path.abspath(video)).parents:
        if (folder / MARKER).is_file():
            return folder
    return None


def _mixed_tree(root: Path) -> list[str]:
    """Prepared and unprepared folders, a copy nested in another, and videos reached through
    folder links, file links (absolute, relative, with ``..``, chained), a loop and a dangling
    link; the video paths, as a split names them."""
    marker = json.dumps({"frame_step": 2, "encoding": {"short_side": 64}})
    for folder in ("plain/a", "copy/b", "copy/inner/c", "copy/inner/d", "links/e"):
        (root / folder).mkdir(parents=True)
        (root / folder / "v.mp4").write_bytes(b"")
    for copy in ("copy", "copy/inner"):
        (root / copy / MARKER).write_text(marker)
    links = root / "links"
    (links / "b").symlink_to(root / "copy" / "b", target_is_directory=True)
    (links / "e" / "abs.mp4").symlink_to(root / "copy" / "inner" / "c" / "v.mp4")
    (links / "e" / "rel.mp4").symlink_to(Path("..") / ".." / "plain" / "a" / "v.mp4")
    (links / "e" / "plain_rel.mp4").symlink_to("v.mp4")
    (links / "e" / "chain.mp4").symlink_to(links / "e" / "abs.mp4")
    (links / "e" / "loop.mp4").symlink_to(links / "e" / "loop2.mp4")
    (links / "e" / "loop2.mp4").symlink_to(links / "e" / "loop.mp4")
    (links / "e" / "gone.mp4").symlink_to(root / "nowhere" / "v.mp4")
    (root / "copy" / "inner" / "d" / "up.mp4").symlink_to(root / "links" / "b" / "v.mp4")
    videos = sorted(str(p) for p in root.rglob("*.mp4"))
    return [*videos, str(links / "b" / "v.mp4"), str(root / "plain" / "a" / "absent.mp4")]


def test_the_lookups_of_a_split_answer_as_each_videos_own(tmp_path, monkeypatch):
    """records_prepared looks each folder up once for all the split's videos: the copy each
    video lies in (the nearest marker, links not resolved; None outside one) and where its
    links lead are those the per-video calls found, whatever the order of the videos."""
    from a2video.data import prepare

    videos = _mixed_tree(tmp_path)
    monkeypatch.chdir(tmp_path / "links")
    videos += ["e/abs.mp4", "b/v.mp4", "../plain/a/v.mp4"]  # relative to the working folder
    lookups = prepare._Lookups()
    for video in [*videos, *reversed(videos)]:
        real = os.path.realpath(video)
        assert lookups.realpath(video) == real, video
        assert lookups.root(video) == _old_find_prepared_root(video), video
        assert lookups.root(real) == _old_find_prepared_root(real), video
        assert prepare.find_prepared_root(video) == _old_find_prepared_root(video), video
    assert {str(r) for r in (lookups.root(v) for v in videos) if r} == {
        str(tmp_path / "copy"),
        str(tmp_path / "copy" / "inner"),
    }
    copied = [v for v in videos if prepare._copy_roots(v)]
    assert len(copied) < len(videos) and prepare.records_prepared(copied) == (2, 64)
    with pytest.raises(prepare.PrepareError, match="mixes videos of prepared copies"):
        prepare.records_prepared(videos)


def test_each_folder_above_a_split_is_looked_up_once(tmp_path, monkeypatch):
    """400 class folders share their parents, and their links their targets' folders: each
    path is stat'ed once per split (the per-video look-up stat'ed the parents' markers and
    lstat'ed every component of each video's path and link target once per class folder)."""
    from collections import Counter

    from a2video.data import prepare

    (tmp_path / "src" / "x").mkdir(parents=True)
    (tmp_path / "src" / "x" / "clip.mp4").write_bytes(b"")
    videos = []
    for c in range(20):
        (tmp_path / "train" / f"class{c}").mkdir(parents=True)
        for v in range(3):
            video = tmp_path / "train" / f"class{c}" / f"v{v}.mp4"
            video.symlink_to(tmp_path / "src" / "x" / "clip.mp4")
            videos.append(str(video))
    calls: Counter = Counter()
    for name in ("stat", "lstat"):

        def counting(path, *args, _real=getattr(os, name), _name=name, **kwargs):
            calls[_name, os.fspath(path)] += 1
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, counting)
    assert prepare.records_prepared(videos) == (1, None)
    assert calls and max(calls.values()) == 1, calls.most_common(3)
    markers = [p for kind, p in calls if kind == "stat" and p.endswith(MARKER)]
    assert len(markers) == len({os.path.dirname(p) for p in markers})
