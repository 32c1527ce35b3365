"""The end-to-end CPU demo: ``python -m a2video.demo --out runs/demo`` (``make demo``).

Five stages, each through the entry point a user would run (the LightningCLI classes of
``train.py`` and ``finetune_ucf.py`` called in-process with the command line shown):

1. synthesize the Kinetics- and UCF-101-layout datasets under ``data/demo`` (skipped when they
   exist with the same parameters);
2. pretrain the demo arch (``a2net_tiny``) on the Kinetics layout: ``train.py fit`` with
   ``configs/demo_kinetics.yaml`` as it is (only paths and the seed on the command line);
3. fine-tune it on the UCF-101 layout (fold 1): ``finetune_ucf.py fit`` with
   ``configs/demo_ucf101.yaml --ckpt <pretrain>/checkpoints/last.ckpt``, then the 10×3-view test;
4. the same budget from scratch (no ``--ckpt``; ``configs/demo_ucf101_scratch.yaml`` layered
   over it for the from-scratch learning rate), then the same test;
5. print a table and write ``<out>/summary.json``.

The synthetic classes are motions (appearance is drawn independently of the class), the UCF
layout draws the same motions with other shapes and backgrounds, and it has few training videos
per class — so, as with the real UCF-101, pretraining is what makes the small set learnable.

Threads: one compute thread and one decoding worker by default. On a shared 2-core machine
two threads oversubscribe the cores and run an order of magnitude slower; ``--threads`` changes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from a2video.errors import exit_on_user_error

__all__ = ["FULL", "QUICK", "DemoPlan", "main", "run_demo"]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DemoPlan:
    """The demo's data and machine; the training runs are the YAMLs of ``configs/`` as they are
    (see docs/demo.md for why each number is what it is)."""

    # data (the generator's options)
    kinetics_classes: int = 8
    kinetics_videos_per_class: int = 40
    kinetics_val_per_class: int = 4
    kinetics_max_side: int = 64
    ucf_classes: int = 7
    ucf_videos_per_class: int = 15  # fold 1: 10 train + 5 test videos per class
    ucf_size: tuple[int, int] = (64, 48)
    duration: tuple[float, float] = (1.0, 1.5)
    seed: int = 0
    # runs: configs/demo_kinetics.yaml, configs/demo_ucf101.yaml (+ demo_ucf101_scratch.yaml)
    overlay: str | None = None  # a YAML layered over both (the quick smoke test's sizes)
    pretrain_epochs: int | None = None  # None: the YAML's
    finetune_epochs: int | None = None
    # machine
    threads: int = 1
    workers: int | None = None  # None: the YAML's

    def synth_params(self, layout: str) -> dict[str, Any]:
        """Keyword arguments of :func:`a2video.data.synthesize` for ``layout``."""
        if layout == "kinetics":
            return {
                "layout": "kinetics",
                "classes": self.kinetics_classes,
                "videos_per_class": self.kinetics_videos_per_class,
                "val_per_class": self.kinetics_val_per_class,
                "duration": list(self.duration),
                "max_side": self.kinetics_max_side,
                "seed": self.seed,
            }
        return {
            "layout": "ucf101",
            "classes": self.ucf_classes,
            "videos_per_class": self.ucf_videos_per_class,
            "duration": list(self.duration),
            "size": list(self.ucf_size),
            "seed": self.seed,
        }


FULL = DemoPlan()
QUICK = replace(
    FULL,
    kinetics_classes=4,
    kinetics_videos_per_class=3,
    kinetics_val_per_class=1,
    ucf_classes=4,
    ucf_videos_per_class=3,
    overlay="demo_quick.yaml",
)


@dataclass
class StageResult:
    name: str
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    command: str = ""


# --------------------------------------------------------------------------- helpers
def _say(msg: str) -> None:
    print(f"[a2video demo] {msg}", flush=True)


@contextlib.contextmanager
def _plain_argv() -> Iterator[None]:
    """LightningCLI warns when given ``args=`` while ``sys.argv`` has arguments of its own."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def synthesize_once(root: Path, params: dict[str, Any], progress: bool = True) -> bool:
    """Write a synthetic dataset unless ``root`` already holds a complete one made with
    ``params``. A folder the demo did not make (no ``demo_params.json``) is never replaced.

    Returns:
        True when the data were (re)written, False when the existing set was kept.

    Raises:
        ValueError: ``root`` holds files the demo did not write.
    """
    from a2video.data.synthetic import manifest_gaps, synthesize

    stamp = root / "demo_params.json"
    if root.is_dir() and not stamp.is_file() and any(root.iterdir()):
        raise ValueError(
            f"{root} holds files the demo did not write (no demo_params.json there); pass "
            "--data a new folder (the demo writes its datasets under it) or move that one away"
        )
    if stamp.is_file():
        with contextlib.suppress(ValueError):
            if json.loads(stamp.read_text()) == params:
                gaps = manifest_gaps(root)
                if not gaps:
                    return False
                _say(f"   {root}: {len(gaps)} video(s) gone (e.g. {gaps[0]}): writing it anew")
    if root.exists():
        shutil.rmtree(root)  # the demo's own data (stamped), made with other settings or damaged
    root.mkdir(parents=True)
    stamp.write_text(json.dumps({"incomplete": True}))  # the demo's, even if interrupted now
    kwargs = dict(params)
    for key in ("duration", "size"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    synthesize(root, progress=progress, **kwargs)
    stamp.write_text(json.dumps(params, indent=1, sort_keys=True))
    return True


def _run_args(plan: DemoPlan, configs: Sequence[str], root: Path, data: Path) -> list[str]:
    """``fit`` with the YAMLs as they are; only paths, the seed and explicit plan options."""
    args = ["fit"]
    for name in [*configs, *([plan.overlay] if plan.overlay else [])]:
        args += ["--config", _config(name)]
    args += ["--data.data_root", str(data), "--trainer.default_root_dir", str(root)]
    args += ["--seed_everything", str(plan.seed)]
    if plan.workers is not None:
        args += ["--data.num_workers", str(plan.workers)]
    return args


def _config(name: str) -> str:
    """``configs/<name>`` relative to the working directory when it is inside it."""
    path = REPO / "configs" / name
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _command(program: str, args: Sequence[str]) -> str:
    return " ".join([program, *(shlex.quote(a) for a in args)])


def _metric(metrics: Any, key: str) -> float | None:
    value = metrics.get(key) if metrics is not None else None
    return None if value is None else float(value)


# --------------------------------------------------------------------------- stages
def pretrain(plan: DemoPlan, data: Path, out: Path, progress: bool) -> tuple[StageResult, str]:
    """``train.py fit`` on the Kinetics layout; returns the stage and ``last.ckpt``."""
    from a2video.data import KineticsDataModule
    from a2video.training.cli import A2VideoCLI
    from a2video.training.module import VideoClassifier

    run = out / "pretrain"
    args = _run_args(plan, ["demo_kinetics.yaml"], run, data)
    if plan.pretrain_epochs is not None:
        args += ["--trainer.max_epochs", str(plan.pretrain_epochs)]
        args += ["--trainer.check_val_every_n_epoch", str(plan.pretrain_epochs)]
    args += ["--trainer.enable_progress_bar", str(progress).lower()]
    start = time.perf_counter()
    with _plain_argv():
        cli = A2VideoCLI(VideoClassifier, KineticsDataModule, args=args)
    seconds = time.perf_counter() - start
    dm = cli.datamodule
    metrics = {
        "val_top1": _metric(cli.trainer.callback_metrics, "val/top1"),
        "val_top5": _metric(cli.trainer.callback_metrics, "val/top5"),
        "train_videos": len(dm.datasets["train"]),
        "val_videos": len(dm.datasets["val"]),
        "classes": dm.num_classes,
        "steps": int(cli.trainer.global_step),
        "arch": cli.model.arch,
        "clip": dm.spec.as_dict(),
    }
    ckpt = run / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise RuntimeError(f"pretraining wrote no checkpoint at {ckpt}")
    return StageResult("pretrain", seconds, metrics, _command("python train.py", args)), str(ckpt)


def finetune(
    plan: DemoPlan, data: Path, out: Path, ckpt: str | None, progress: bool
) -> StageResult:
    """``finetune_ucf.py fit`` (then the 10×3 test) from ``ckpt``, or from scratch if None."""
    from a2video.training.finetune import run_folds

    name = "finetune" if ckpt else "scratch"
    configs = ["demo_ucf101.yaml"] if ckpt else ["demo_ucf101.yaml", "demo_ucf101_scratch.yaml"]
    args = _run_args(plan, configs, out / name, data)
    if plan.finetune_epochs is not None:
        args += ["--trainer.max_epochs", str(plan.finetune_epochs)]
    args += ["--trainer.enable_progress_bar", str(progress).lower()]
    if ckpt:
        args += ["--ckpt", ckpt]
    start = time.perf_counter()
    with _plain_argv():
        results = run_folds(args)
    seconds = time.perf_counter() - start
    m = results.get("metrics", {})
    metrics = {
        "video_top1": m.get("test/top1"),
        "video_top5": m.get("test/top5"),
        "clip_top1": m.get("test/clip_top1"),
        "mean_class_acc": m.get("test/mean_class_acc"),
        "test_videos": m.get("test/videos"),
        "train_videos": results.get("videos", {}).get("train"),
        "steps": results.get("steps"),
    }
    transfer = results.get("transfer") or {}
    if ckpt and transfer:
        metrics["loaded_tensors"] = transfer.get("counts", {}).get("loaded")
        metrics["loaded_attention_tensors"] = transfer.get("counts", {}).get("loaded_attention")
    stage = StageResult(name, seconds, metrics, _command("python finetune_ucf.py", args))
    stage.metrics["predictions"] = results.get("predictions")
    return stage


# --------------------------------------------------------------------------- report
def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def _fmt(x: Any) -> str:
    return "—" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def print_table(summary: dict[str, Any]) -> str:
    """Print the result table (rich when available) and return it as Markdown."""
    rows = [
        ("synthesize data", "", "", summary["stage_seconds"]["synth"]),
        (
            f"pretrain {summary['arch']} (Kinetics layout)",
            "val top-1 (centre clip)",
            summary["kinetics_val_top1"],
            summary["stage_seconds"]["pretrain"],
        ),
        (
            "fine-tune from the Kinetics checkpoint (UCF layout)",
            f"video top-1 ({summary['views']} views)",
            summary["ucf101_video_top1"],
            summary["stage_seconds"]["finetune"],
        ),
        (
            "same budget from scratch (UCF layout)",
            f"video top-1 ({summary['views']} views)",
            summary["ucf101_scratch_video_top1"],
            summary["stage_seconds"]["scratch"],
        ),
        ("total", "", None, summary["seconds"]),
    ]
    md = ["| stage | metric | value | seconds |", "|---|---|---|---|"]
    md += [f"| {a} | {b} | {_fmt(c)} | {s:.0f} |" for a, b, c, s in rows]
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="a2video demo: transfer from synthetic Kinetics to synthetic UCF-101")
        for col, justify in (("stage", "left"), ("metric", "left"), ("value", "right")):
            table.add_column(col, justify=justify)
        table.add_column("seconds", justify="right")
        for a, b, c, s in rows:
            table.add_row(a, b, _fmt(c), f"{s:.0f}")
        Console().print(table)
    except ImportError:  # pragma: no cover - rich comes with Lightning's progress bar extra
        print("\n".join(md))
    return "\n".join(md)


STAGES = ("pretrain", "finetune", "scratch")
OUT_STAMP = "demo_runs.json"  # marks a folder whose stage runs the demo may replace


def _claim_out(out: Path) -> None:
    """Make ``out`` the demo's (stamped), refusing a folder whose runs it did not write."""
    ours = (out / OUT_STAMP).is_file() or (out / "summary.json").is_file()  # or an older demo's
    theirs = [stage for stage in STAGES if (out / stage).exists()]
    if theirs and not ours:
        raise ValueError(
            f"{out / theirs[0]}: a run the demo did not write (no {OUT_STAMP} in {out}) would be "
            "replaced; pass --out a new folder, or move that run away"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / OUT_STAMP).write_text(json.dumps({"written_by": "python -m a2video.demo"}) + "\n")


def run_demo(
    out: str | os.PathLike = "runs/demo",
    data: str | os.PathLike = "data/demo",
    plan: DemoPlan = FULL,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every stage; returns (and writes to ``<out>/summary.json``) the summary."""
    import torch

    out, data = Path(out), Path(data)
    torch.set_num_threads(plan.threads)
    load_start = _load()
    t0 = time.perf_counter()
    stages: dict[str, StageResult] = {}

    _say(f"plan: {json.dumps(asdict(plan))}")
    _claim_out(out)
    _say(f"1/4 synthesizing data under {data} (skipped if already there)")
    start = time.perf_counter()
    made = {}
    for layout, sub in (("kinetics", "kinetics"), ("ucf101", "ucf101")):
        made[layout] = synthesize_once(data / sub, plan.synth_params(layout), progress)
    for stage in STAGES:  # the demo's own runs (its folder is stamped): made anew each time
        if (out / stage).exists():
            _say(f"replacing the earlier demo run in {out / stage}")
            shutil.rmtree(out / stage)
    stages["synth"] = StageResult("synth", time.perf_counter() - start, {}, "")
    synth_cmds = [
        _command("a2video synth", [str(data / sub), *_synth_cli(plan.synth_params(lay))])
        for lay, sub in (("kinetics", "kinetics"), ("ucf101", "ucf101"))
    ]
    _say(f"   {'written' if any(made.values()) else 'kept'} in {stages['synth'].seconds:.0f}s")

    _say("2/4 pretraining on the Kinetics layout (configs/demo_kinetics.yaml)")
    stages["pretrain"], ckpt = pretrain(plan, data / "kinetics", out, progress)
    _say(f"   val top-1 {_fmt(stages['pretrain'].metrics['val_top1'])}")

    _say("3/4 fine-tuning on the UCF layout (configs/demo_ucf101.yaml), then the multi-view test")
    stages["finetune"] = finetune(plan, data / "ucf101", out, ckpt, progress)
    _say(f"   video top-1 {_fmt(stages['finetune'].metrics['video_top1'])}")

    _say("4/4 the same budget from scratch (+ demo_ucf101_scratch.yaml), then the same test")
    stages["scratch"] = finetune(plan, data / "ucf101", out, None, progress)
    _say(f"   video top-1 {_fmt(stages['scratch'].metrics['video_top1'])}")

    seconds = time.perf_counter() - t0
    clip = stages["pretrain"].metrics.pop("clip")
    ft, sc = stages["finetune"].metrics["video_top1"], stages["scratch"].metrics["video_top1"]
    summary: dict[str, Any] = {
        "kinetics_val_top1": stages["pretrain"].metrics["val_top1"],
        "ucf101_video_top1": ft,
        "ucf101_scratch_video_top1": sc,
        "transfer_gain": None if ft is None or sc is None else ft - sc,
        "seconds": seconds,
        "stage_seconds": {k: round(v.seconds, 1) for k, v in stages.items()},
        "arch": stages["pretrain"].metrics.pop("arch"),
        "clip": {
            k: clip[k] for k in ("frames", "stride", "crop_size", "train_scale", "test_scale")
        },
        "views": f"{clip['num_clips']}x{clip['num_crops']}",
        "datasets": {
            "kinetics": {
                "classes": stages["pretrain"].metrics["classes"],
                "train_videos": stages["pretrain"].metrics["train_videos"],
                "val_videos": stages["pretrain"].metrics["val_videos"],
            },
            "ucf101": {
                "classes": plan.ucf_classes,
                "fold": 1,
                "train_videos": stages["finetune"].metrics["train_videos"],
                "test_videos": stages["finetune"].metrics["test_videos"],
            },
        },
        "stages": {k: asdict(v) for k, v in stages.items()},
        "commands": synth_cmds + [stages[k].command for k in STAGES],
        "plan": asdict(plan),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": plan.threads,
            "workers": plan.workers if plan.workers is not None else "the YAML's",
            "load_average_start": load_start,
            "load_average_end": _load(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    summary["bars"] = {
        "ucf101_video_top1>=0.9": ft is not None and ft >= 0.9,
        "transfer_gain>=0.10": summary["transfer_gain"] is not None
        and summary["transfer_gain"] >= 0.10,
        "seconds<900": seconds < 900,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    md = print_table(summary)
    (out / "table.md").write_text(md + "\n")
    _say(f"summary: {out / 'summary.json'} (table: {out / 'table.md'}); {seconds:.0f}s in all")
    return summary


def _synth_cli(params: dict[str, Any]) -> list[str]:
    args = ["--layout", params["layout"], "--classes", str(params["classes"])]
    args += ["--videos-per-class", str(params["videos_per_class"])]
    if params.get("val_per_class") is not None:
        args += ["--val-per-class", str(params["val_per_class"])]
    args += ["--duration", *(str(d) for d in params["duration"])]
    if params.get("max_side"):
        args += ["--max-side", str(params["max_side"])]
    if params.get("size"):
        args += ["--size", *(str(s) for s in params["size"])]
    return [*args, "--seed", str(params["seed"])]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m a2video.demo",
        description="Synthesize data, pretrain on the Kinetics layout, fine-tune on the UCF-101 "
        "layout and from scratch, test 10x3 views, print the table, write summary.json.",
    )
    parser.add_argument("--out", default="runs/demo", help="run directory (summary.json here)")
    parser.add_argument("--data", default="data/demo", help="where the synthetic datasets go")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, one epoch each (a smoke test)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch compute threads (1)")
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (1)")
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--finetune-epochs", type=int, default=None)
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the data and of the runs (0)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    for key in ("threads", "workers", "pretrain_epochs", "finetune_epochs", "seed"):
        if getattr(args, key) is not None:
            plan = replace(plan, **{key: getattr(args, key)})
    with exit_on_user_error("python -m a2video.demo"):
        summary = run_demo(args.out, args.data, plan, progress=not args.no_progress)
    return 0 if summary["ucf101_video_top1"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
