"""Multi-process ``train.py`` runs as a user starts them, on the CPU (gloo: the same code path as
NCCL on GPUs): Lightning's own launcher with 2 and 3 processes, torchrun with 2 nodes x 1 process
on localhost, and SLURM (its variables set by hand for 2 tasks).

Each rank records what it trained through ``tests/ddp_probe.py`` (``RecordRanks``, passed with
``--trainer.callbacks+=``), so the tests check from the samplers' own indices that every rank runs
``ceil(videos / (world * batch))`` steps per epoch, that all ranks end at the same global step and
that every training video is trained once per epoch over all ranks (plus the few repeats the
sampler pads with when the videos do not divide evenly). Every test has a hard timeout: a
regression (a collective behind a rank condition) fails instead of hanging CI.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from ports import free_port
from test_data_datamodule import settled
from tiny_fit import TINY_CLIP

from a2video.data import KineticsDataModule
from a2video.training.checkpoint import load_checkpoint

TESTS = Path(__file__).resolve().parent
TRAIN_PY = TESTS.parent / "train.py"
BATCH = 2

# 4 frames of 32², one val view, no logger or progress bar unless a test wants one.
TINY = [
    "--model.arch", "a2net_tiny",
    *TINY_CLIP,
    "--data.batch_size", str(BATCH),
    "--data.test_batch_size", "1",
    "--data.num_workers", "0",
    "--trainer.accelerator", "cpu",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.num_sanity_val_steps", "0",
]  # fmt: skip


# --------------------------------------------------------------------------- helpers
def env(**extra: str) -> dict[str, str]:
    """The child environment: tests/ importable (ddp_probe), one thread per process."""
    out = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}
    out["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH")) if p
    )
    for key in [k for k in out if k.startswith(("SLURM_", "TORCHELASTIC_"))]:
        if key not in extra:
            del out[key]  # a test run inside a SLURM job must not look like one of its tasks
    return out


def probe(out: Path) -> list[str]:
    record = {"class_path": "ddp_probe.RecordRanks", "init_args": {"out_dir": str(out)}}
    return ["--trainer.callbacks+=" + json.dumps(record)]


def fit_args(data_root: str, run: Path, *extra: str, logger: bool = False) -> list[str]:
    args = ["fit", "--data.data_root", data_root, "--trainer.default_root_dir", str(run), *TINY]
    return [*args, *([] if logger else ["--trainer.logger", "false"]), *extra]


def run_train(args: list[str], timeout: float, **env_extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TRAIN_PY), *args]
    return subprocess.run(
        cmd, env=env(**env_extra), capture_output=True, text=True, timeout=timeout
    )


def run_pair(commands: list[list[str]], envs: list[dict], timeout: float) -> list[tuple]:
    """Start the commands together (one per node or task); return ``(returncode, output)``."""
    procs = [
        subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c, e in zip(commands, envs, strict=True)
    ]
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, o) for p, o in zip(procs, outs, strict=True)]


def records(out: Path) -> dict[int, list[dict]]:
    """``RecordRanks`` rows by global rank."""
    rows: dict[int, list[dict]] = {}
    for path in sorted(out.glob("rank*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows.setdefault(row["rank"], []).append(row)
    return rows


def train_videos(data_root: str, **kwargs) -> int:
    dm = KineticsDataModule(data_root, num_workers=0, **kwargs)
    dm.setup("fit")
    return len(dm.datasets["train"])


def break_train_videos(data_root: str, out: Path, count: int) -> tuple[str, set[int]]:
    """A copy of ``data_root`` whose first ``count`` training videos are not videos; returns the
    copy and their indices in the train split."""
    shutil.copytree(data_root, out, symlinks=True)
    dm = KineticsDataModule(str(out), num_workers=0)
    dm.setup("fit")
    records = dm.datasets["train"].records
    for record in records[:count]:
        Path(record.path).write_text("not a video")
    return str(out), set(range(count))


def write_list(path: Path, data_root: str, split: str, count: int) -> Path:
    """A ``path label`` list of the first ``count`` videos of ``split`` (a DataModule split)."""
    dm = KineticsDataModule(data_root, num_workers=0)
    dm.setup("fit")
    rows = dm.datasets[split].records[:count]
    assert len(rows) == count
    path.write_text(
        "".join(f"{os.path.relpath(r.path, data_root)} {dm.class_names[r.label]}\n" for r in rows)
    )
    return path


def check_epochs(
    rows: dict[int, list[dict]], videos: int, world: int, epochs: list[int], batch: int = BATCH
) -> int:
    """Per-epoch checks over all ranks; returns the steps per epoch."""
    assert sorted(rows) == list(range(world)), sorted(rows)
    per_rank = math.ceil(videos / (world * batch))
    shard = math.ceil(videos / world)  # samples per rank (the train sampler pads)
    for epoch in epochs:
        seen: Counter[int] = Counter()
        steps = set()
        for rank, rank_rows in rows.items():
            batches = [r for r in rank_rows if r["event"] == "train_batch" and r["epoch"] == epoch]
            assert len(batches) == per_rank, (rank, epoch, len(batches), per_rank)
            steps.add(tuple(r["step"] for r in batches))
            seen.update(i for r in batches for i in r["index"])
        assert len(steps) == 1, f"ranks ran different steps in epoch {epoch}: {steps}"
        assert set(seen) == set(range(videos)), (epoch, sorted(seen))  # every video trained
        repeats = sum(seen.values()) - videos
        assert repeats == shard * world - videos and max(seen.values()) <= 2, (epoch, seen)
    return per_rank


def assert_ended(rows: dict[int, list[dict]], fn: str) -> None:
    """Every rank reached the end of ``fn`` without an exception (child exit codes are unseen)."""
    for rank, rank_rows in rows.items():
        ends = [
            (r["event"], r.get("fn", r.get("type"))) for r in rank_rows if "fn" in r or "type" in r
        ]
        assert ends == [("end", fn)], (rank, ends)


def last_steps(rows: dict[int, list[dict]]) -> set[int]:
    """The last trained step of each rank."""
    return {[r for r in rank_rows if "step" in r][-1]["step"] for rank_rows in rows.values()}


def output(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-4000:]


# --------------------------------------------------------------------------- Lightning's launcher
@pytest.mark.timeout(240)
def test_two_processes_fit_two_epochs_then_resume_last(kinetics_root, tmp_path) -> None:
    """2 gloo processes, 2 epochs, with the default TensorBoard logger, progress bar and a step
    checkpoint (the progress bar reads the epoch's figures on rank 0 alone, before the module's
    ``on_train_epoch_end``: a figure that needed a collective there hung the run at the end of
    epoch 0); then ``--ckpt_path last`` resumes under 2 processes for a third epoch. Two
    training videos are unreadable: the logged ``data/bad_videos`` (summed over ranks) is the
    number of bad samples the ranks trained on, which is also the ranks' BadVideoMonitor counts
    together; Lightning's "use sync_dist=True" advice never prints (the logged values are
    reduced); and the video folders are listed once, by local rank 0's prepare_data, for both
    ranks and for the resumed run."""
    root, bad = break_train_videos(kinetics_root, tmp_path / "data", count=2)
    run, videos = tmp_path / "run", train_videos(root, listing_cache=False)
    settled(Path(root))  # a dataset not written to now: its listing is cached
    (tmp_path / "tmp").mkdir()  # the node's temporary folder, where the listing goes
    first = run_train(
        fit_args(
            root, run, *probe(tmp_path / "a"),
            "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "2",
            "--step_checkpoint.every_n_train_steps", "2", "--data.max_bad_fraction", "0.5",
            "--trainer.enable_progress_bar", "true",
            logger=True,
        ),
        timeout=180,
        PYTHONWARNINGS="default",  # Lightning's warnings shown, as a user sees them
        TMPDIR=str(tmp_path / "tmp"),
    )  # fmt: skip
    assert first.returncode == 0, output(first)
    assert "sync_dist" not in first.stdout + first.stderr, output(first)
    # the train list's missing videos are said once, not once per rank
    said = (first.stdout + first.stderr).count("train.csv: 1 of 12 listed videos are missing")
    assert said == 1, output(first)
    rows = records(tmp_path / "a")
    per_epoch = check_epochs(rows, videos, world=2, epochs=[0, 1])
    assert_ended(rows, "fit")
    sampled_bad = sum(
        i in bad for rank_rows in rows.values() for r in rank_rows
        if r["event"] == "train_batch" and r["epoch"] == 1 for i in r["index"]
    )  # fmt: skip
    assert sampled_bad >= len(bad)  # each bad video once, or twice if the sampler padded with it
    ends = [r for rank_rows in rows.values() for r in rank_rows if r["event"] == "end"]
    assert {r["logged"]["data/bad_videos"] for r in ends} == {sampled_bad}  # epoch 1, every rank
    assert sum(r["monitor_failed"] for r in ends) == sampled_bad
    assert {(r["fn"], r["step"], r["world"]) for r in ends} == {("fit", 2 * per_epoch, 2)}
    # No per-batch broadcast (Lightning's SIGTERM flag, read with .item(): a host sync per step
    # on GPUs); SaveOnSigterm's asynchronous host all-reduce stands in for it.
    assert {r["broadcasts_in_training"] for r in ends} == {0}
    # The train and val folders are listed once for the node, by its local rank 0's
    # prepare_data; setup on both ranks reads that listing.
    assert {r["rank"]: r["listings"] for r in ends} == {0: 2, 1: 0}
    # One run directory (Trainer.log_dir agreed on by all ranks), written once by rank 0.
    versions = sorted(p.name for p in (run / "lightning_logs").iterdir())
    assert versions == ["version_0"], versions
    assert (run / "lightning_logs" / "version_0" / "class_names.txt").is_file()
    assert list((run / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2 * per_epoch

    second = run_train(
        fit_args(
            root, run, *probe(tmp_path / "b"),
            "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "3",
            "--ckpt_path", "last", "--data.max_bad_fraction", "0.5",
        ),
        timeout=180,
        TMPDIR=str(tmp_path / "tmp"),
    )  # fmt: skip
    assert second.returncode == 0, output(second)
    rows = records(tmp_path / "b")
    assert_ended(rows, "fit")
    # the folders are unchanged since the first run: its listing serves this one too
    assert {r["listings"] for rank_rows in rows.values() for r in rank_rows if "listings" in r} == {
        0
    }
    check_epochs(rows, videos, world=2, epochs=[2])
    steps = [r["step"] for r in rows[0] if r["event"] == "train_batch"]
    assert steps == list(range(2 * per_epoch + 1, 3 * per_epoch + 1)), steps  # none repeated
    assert last_steps(rows) == {3 * per_epoch}
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 3 * per_epoch


@pytest.mark.timeout(240)
def test_three_processes_odd_number_of_videos(kinetics_root, tmp_path) -> None:
    """11 training videos over 3 ranks: 4 samples each (one video repeated per epoch), and 4 val
    videos split 2/1/1; validation still counts each video once."""
    listing = write_list(tmp_path / "train11.txt", kinetics_root, "train", 11)
    run = tmp_path / "run"
    result = run_train(
        fit_args(
            kinetics_root, run, *probe(tmp_path / "p"),
            "--data.train_split", str(listing),
            "--trainer.devices", "3", "--trainer.strategy", "ddp", "--trainer.max_epochs", "2",
        ),
        timeout=200,
    )  # fmt: skip
    assert result.returncode == 0, output(result)
    rows = records(tmp_path / "p")
    assert_ended(rows, "fit")
    per_epoch = check_epochs(rows, 11, world=3, epochs=[0, 1])
    assert per_epoch == 2 and last_steps(rows) == {4}
    val = Counter(
        i for rank_rows in rows.values() for r in rank_rows if r["event"] == "validate_batch"
        for i in r["index"]
    )  # fmt: skip
    assert val == Counter({i: 2 for i in range(4)})  # 2 validations, each video once
    meta = load_checkpoint(run / "checkpoints" / "last.ckpt")["a2video"]
    assert meta["metrics"]["val/videos"] == 4


# --------------------------------------------------------------------------- torchrun and SLURM
@pytest.mark.timeout(240)
def test_torchrun_two_nodes_on_localhost(kinetics_root, tmp_path) -> None:
    """``python -m torch.distributed.run --nnodes 2 --nproc_per_node 1 --node_rank R …`` started
    twice, as on two machines: both nodes train, agree and stop cleanly."""
    port, run = free_port(), tmp_path / "run"
    args = fit_args(
        kinetics_root, run, *probe(tmp_path / "p"),
        "--trainer.devices", "1", "--trainer.num_nodes", "2", "--trainer.max_epochs", "1",
    )  # fmt: skip
    torchrun = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
        "--master_addr", "127.0.0.1", "--master_port", str(port),
    ]  # fmt: skip
    commands = [[*torchrun, "--node_rank", str(r), str(TRAIN_PY), *args] for r in (0, 1)]
    results = run_pair(commands, [env(), env()], timeout=200)
    for code, out in results:
        assert code == 0, out[-4000:]
    rows = records(tmp_path / "p")
    check_epochs(rows, train_videos(kinetics_root), world=2, epochs=[0])
    assert {r["node"] for rank_rows in rows.values() for r in rank_rows} == {0, 1}
    assert len(last_steps(rows)) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_slurm_two_tasks(kinetics_root, tmp_path) -> None:
    """What ``srun`` gives two tasks on two nodes (the variables Lightning's SLURMEnvironment
    reads), set by hand, with docs/training.md's ``--ckpt_path last`` (nothing to resume yet: a
    fresh start): both train, agree on every step and stop cleanly."""
    run = tmp_path / "run"
    args = fit_args(
        kinetics_root, run, *probe(tmp_path / "p"),
        "--trainer.devices", "1", "--trainer.num_nodes", "2", "--trainer.max_epochs", "2",
        "--ckpt_path", "last",
    )  # fmt: skip
    slurm = {
        "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "a2video", "SLURM_NODELIST": "127.0.0.1",
        "SLURM_LOCALID": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
    }  # fmt: skip
    envs = [env(**slurm, SLURM_PROCID=str(r), SLURM_NODEID=str(r)) for r in (0, 1)]
    results = run_pair([[sys.executable, str(TRAIN_PY), *args]] * 2, envs, timeout=240)
    for code, out in results:
        assert code == 0, out[-4000:]
        assert "SLURM auto-requeueing enabled" in out  # Lightning took the SLURM environment
    rows = records(tmp_path / "p")
    check_epochs(rows, train_videos(kinetics_root), world=2, epochs=[0, 1])
    assert {r["node"] for rank_rows in rows.values() for r in rank_rows} == {0, 1}


# --------------------------------------------------------------------------- SIGTERM
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("signalled_rank", "where"), [(1, "mid_epoch"), (0, "before_val")])
def test_sigterm_stops_every_rank_then_resume(kinetics_root, tmp_path, signalled_rank, where):
    """SIGTERM to one rank of a 2-process fit (rank 1: a node-local ``kill``, which Lightning's
    own handler turned into a gloo abort without a checkpoint): every rank stops after the same
    step, one ``last.ckpt`` holds that step, and ``--ckpt_path last`` runs each remaining step
    once under 2 processes."""
    run, videos = tmp_path / "run", train_videos(kinetics_root)
    common = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "2"]
    if where == "mid_epoch":  # in epoch 1
        per_epoch = math.ceil(videos / (2 * BATCH))
        signal_at = per_epoch + 1
    else:  # the last batch of epoch 0, then a validation of 2 batches on rank 0, 1 on rank 1
        per_epoch = math.ceil(videos / 2)
        signal_at = per_epoch - 1
        val3 = write_list(tmp_path / "val3.txt", kinetics_root, "val", 3)
        common += ["--data.batch_size", "1", "--data.val_split", str(val3)]
    sender = {
        "class_path": "ddp_probe.SignalAt",
        "init_args": {"step": signal_at, "rank": signalled_rank},
    }
    stopped = run_train(
        fit_args(
            kinetics_root, run, *probe(tmp_path / "a"), *common,
            "--step_checkpoint.every_n_train_steps", "0",
            "--trainer.callbacks+=" + json.dumps(sender),
        ),
        timeout=200,
    )  # fmt: skip
    assert stopped.returncode == 0, output(stopped)  # Lightning's SIGTERMException is SystemExit
    assert "SIGTERM received: saved" in stopped.stdout + stopped.stderr, output(stopped)
    rows = records(tmp_path / "a")
    assert sorted(rows) == [0, 1]
    assert last_steps(rows) == {signal_at + 1}  # the batch running at the signal was finished
    ends = [
        r for rank_rows in rows.values() for r in rank_rows if r["event"] in ("exception", "end")
    ]
    stops = [r.get("type", r["event"]) for r in ends]
    assert stops == ["SIGTERMException"] * 2, stops  # each rank: that exception, then no end
    files = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert [f for f in files if f.startswith("last")] == ["last.ckpt"], files
    assert not [f for f in files if f.endswith(".tmp")], files
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == signal_at + 1

    resumed = run_train(
        fit_args(kinetics_root, run, *probe(tmp_path / "b"), *common, "--ckpt_path", "last"),
        timeout=200,
    )
    assert resumed.returncode == 0, output(resumed)
    rows = records(tmp_path / "b")
    assert_ended(rows, "fit")
    steps = [r["step"] for r in rows[0] if r["event"] == "train_batch"]
    assert steps == list(range(signal_at + 2, 2 * per_epoch + 1)), steps
    assert last_steps(rows) == {2 * per_epoch}
    # Both runs together: each video once per epoch, the interrupted one included.
    both = {rank: records(tmp_path / "a")[rank] + rows[rank] for rank in rows}
    check_epochs(both, videos, world=2, epochs=[0, 1], batch=BATCH if where == "mid_epoch" else 1)


@pytest.mark.timeout(300)
def test_sigterm_to_one_rank_stops_a_two_process_test_together(kinetics_root, tmp_path) -> None:
    """SIGTERM to rank 1 of a 2-process ``test`` whose shards differ (5 videos: 3 and 2 batches).
    Lightning's handler broadcast from inside the signal handler of that rank alone: the ranks
    waited for each other until the collective timeout (here 60 s), then a traceback. Now both
    stop after the same batch, one line says no results were written and how to go on, and the
    exit status is 143 (128 + SIGTERM)."""
    fitted = run_train(
        fit_args(kinetics_root, tmp_path / "fit", "--trainer.max_steps", "1"), timeout=200
    )
    assert fitted.returncode == 0, output(fitted)
    ckpt = tmp_path / "fit" / "checkpoints" / "last.ckpt"
    five = write_list(tmp_path / "five.txt", kinetics_root, "train", 5)
    sender = {"class_path": "ddp_probe.SignalAtEval", "init_args": {"batch": 0, "rank": 1}}
    out = tmp_path / "test"
    result = run_train(
        [
            "test", "--data.data_root", kinetics_root, *TINY, "--data.test_split", str(five),
            "--trainer.default_root_dir", str(out), "--trainer.logger", "false",
            "--trainer.devices", "2", "--trainer.strategy", "ddp", "--ckpt_path", str(ckpt),
            "--collective_timeout", "60", *probe(out / "p"),
            "--trainer.callbacks+=" + json.dumps(sender),
        ],
        timeout=200,
    )  # fmt: skip
    text = result.stdout + result.stderr
    assert result.returncode == 143, output(result)
    assert text.count("SIGTERM received: test stopped after batch 1 of 3") == 1, output(result)
    assert "no results written; run the same command again" in text, output(result)
    assert "Traceback" not in text and "collective_timeout" not in text, output(result)
    rows = records(out / "p")
    for rank in (0, 1):
        events = [r.get("type", r["event"]) for r in rows[rank]]
        assert events == ["test_batch", "SIGTERMException"], (rank, events)
    assert not (out / "predictions.csv").exists()


# --------------------------------------------------------------------------- the watchdog
@pytest.mark.timeout(180)
def test_watchdog_names_the_stage_when_a_rank_is_stuck(kinetics_root, tmp_path) -> None:
    """Rank 1 stops responding at the end of epoch 0 (``StallRank`` sleeps 10 minutes): rank 0's
    next collective gives up after ``--collective_timeout 3``, the run exits non-zero with the
    stage named, and the stuck child process does not outlive it."""
    stall = {"class_path": "ddp_probe.StallRank", "init_args": {"rank": 1, "seconds": 600}}
    result = run_train(
        fit_args(
            kinetics_root, tmp_path / "run", *probe(tmp_path / "p"),
            "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "2",
            "--collective_timeout", "3", "--trainer.callbacks+=" + json.dumps(stall),
        ),
        timeout=150,
    )  # fmt: skip
    text = result.stdout + result.stderr
    assert result.returncode != 0, output(result)
    assert "a2video: rank 0: a collective waited longer than collective_timeout=3 s" in text, (
        output(result)
    )
    assert "during fit (train), epoch 0" in text and "on_train_epoch_end" in text, output(result)
    child = next(r["pid"] for r in records(tmp_path / "p")[1])
    assert not alive(child), "the stuck rank outlived the run"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_watchdog_timeout_must_be_positive() -> None:
    from a2video.training.callbacks import CollectiveWatchdog

    with pytest.raises(ValueError, match="collective_timeout must be > 0"):
        CollectiveWatchdog(0)


# --------------------------------------------------------------------------- other stages, loggers
def read_predictions(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return sorted(csv.DictReader(f), key=lambda row: int(row["index"]))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_validate_test_predict_with_two_and_three_processes(kinetics_root, tmp_path) -> None:
    """A checkpoint from a 1-process fit, then ``validate``, ``test`` and ``predict`` under 2 and 3
    processes (4 videos: shards of 2/2 and 2/1/1), with the progress bar on (it reads metrics on
    rank 0 alone): every video is evaluated exactly once over the ranks, and
    ``predictions.csv`` is the same whatever the number of processes."""
    fitted = run_train(
        fit_args(
            kinetics_root, tmp_path / "fit",
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        ),
        timeout=200,
    )  # fmt: skip
    assert fitted.returncode == 0, output(fitted)
    ckpt = tmp_path / "fit" / "checkpoints" / "last.ckpt"
    predictions: dict[tuple[int, str], list[dict]] = {}
    for world in (2, 3):
        for stage in ("validate", "test", "predict"):
            out = tmp_path / f"{stage}{world}"
            result = run_train(
                [
                    stage, "--data.data_root", kinetics_root, *TINY,
                    "--trainer.default_root_dir", str(out), "--trainer.logger", "false",
                    "--trainer.devices", str(world), "--trainer.strategy", "ddp",
                    "--ckpt_path", str(ckpt), *probe(out / "p"),
                    "--trainer.enable_progress_bar", "true",  # as users run it
                ],
                timeout=200,
            )  # fmt: skip
            assert result.returncode == 0, (stage, world, output(result))
            rows = records(out / "p")
            assert sorted(rows) == list(range(world)), (stage, world)
            seen = Counter(
                i for rank_rows in rows.values() for r in rank_rows
                if r["event"] == f"{stage}_batch" for i in r["index"]
            )  # fmt: skip
            assert seen == Counter(range(4)), (stage, world, seen)
            assert_ended(rows, stage)
            if stage != "validate":
                predictions[(world, stage)] = read_predictions(out / "predictions.csv")
    for stage in ("test", "predict"):
        assert [int(r["index"]) for r in predictions[(2, stage)]] == [0, 1, 2, 3]
        assert predictions[(2, stage)] == predictions[(3, stage)], stage


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wandb_offline_logger_with_two_processes(kinetics_root, tmp_path) -> None:
    """W&B with 2 processes and no login: the CLI switches it offline, rank 0 alone writes one
    offline run, and the fit ends."""
    wandb = {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"project": "a2video-test", "save_dir": str(tmp_path / "wandb_logs")},
    }
    (tmp_path / "wandb_dir").mkdir()
    extra = {"WANDB_DIR": str(tmp_path / "wandb_dir"), "WANDB_SILENT": "true"}
    extra["NETRC"] = str(tmp_path / "no_netrc")  # not logged in, whatever this machine has
    child_env = env(**extra)
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        child_env.pop(key, None)
    cmd = [
        sys.executable, str(TRAIN_PY),
        *fit_args(
            kinetics_root, tmp_path / "run", "--trainer.logger", json.dumps(wandb),
            "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "1",
            "--trainer.log_every_n_steps", "1", logger=True,
        ),
    ]  # fmt: skip
    result = subprocess.run(cmd, env=child_env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, output(result)
    assert "W&B runs offline" in result.stdout + result.stderr
    runs = sorted((tmp_path / "wandb_logs").rglob("offline-run-*"))
    assert len(runs) == 1, runs  # rank 0 only
    assert any(p.suffix == ".wandb" and p.stat().st_size > 0 for p in runs[0].rglob("*"))
    assert (tmp_path / "wandb_logs" / "class_names.txt").is_file()  # Trainer.log_dir: save_dir


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "given",
    [
        ["--trainer.devices", "2", "--trainer.strategy", "ddp"],
        ["--trainer.devices", "1", "--trainer.strategy", "ddp"],  # DDP converts it too
        ["--trainer.accelerator", "auto", "--trainer.devices", "2"],  # auto: the CPU here
    ],
)
def test_sync_batchnorm_on_the_cpu_stops_before_any_rank_starts(given, kinetics_root, tmp_path):
    """torch's SyncBatchNorm has no CPU implementation, so ``sync_batchnorm: true`` (the Kinetics
    config's setting) cannot run on gloo processes. It stops in one line naming the setting and
    the fix, exit 2, before any process starts (each rank stopped with its own traceback, 96
    lines and exit 1). (Multi-GPU runs use it; it needs 2 GPUs to test.)"""
    if "auto" in given:
        from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

        if CUDAAccelerator.is_available() or MPSAccelerator.is_available():
            pytest.skip("accelerator auto is not the CPU on this machine")
    run = tmp_path / "run"
    result = run_train(
        fit_args(kinetics_root, run, *given, "--trainer.sync_batchnorm", "true"), timeout=100
    )
    said = result.stdout + result.stderr
    assert result.returncode == 2, output(result)
    assert "Traceback" not in said and "[rank" not in said, output(result)
    (line,) = [ln for ln in said.splitlines() if "error:" in ln]
    assert line.startswith("train.py: error: --trainer.sync_batchnorm true: sync_batchnorm needs "
                           "GPUs"), line  # fmt: skip
    assert line.endswith("use --trainer.sync_batchnorm false on the CPU"), line
    assert not run.exists()  # nothing started


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_finetune_two_folds_with_two_processes(ucf_root, tmp_path) -> None:
    """``finetune_ucf.py fit --folds 1,2`` under 2 processes: each rank runs every fold (fit, then
    the multi-view test), and the summary is printed and written once."""
    args = [
        "fit", "--data.data_root", ucf_root, *TINY,
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "1",
        "--folds", "1,2", "--trainer.enable_progress_bar", "true",  # as users run it
    ]  # fmt: skip
    cmd = [sys.executable, str(TESTS.parent / "finetune_ucf.py"), *args]
    result = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=360)
    assert result.returncode == 0, output(result)
    assert (result.stdout + result.stderr).count("a2video UCF-101 folds") == 1, output(result)
    summary = json.loads((tmp_path / "run" / "folds.json").read_text())
    assert [r["fold"] for r in summary["folds"]] == [1, 2]
    assert all(r["metrics"]["test/videos"] == 4 for r in summary["folds"])
