"""Training throughput (clips/s) and the share of step time spent waiting for data.

Measured with :class:`a2video.training.callbacks.StepTimer` inside a real ``Trainer.fit``:

- CPU: ``configs/demo_kinetics.yaml`` (a2net_tiny, 8×64², batch 8) on synthetic videos written by
  ``a2video synth``, decoded for real, with ``num_workers`` 0 and 2. The variants run
  interleaved in one process (round-robin, ``--rounds`` times), so they see the same machine load;
  the medians over rounds are reported side by side.
- GPU (when CUDA is present): ``a2net_r50`` 8×224², bf16-mixed, channels_last_3d, with
  ``torch.compile`` off and on, on clips already on the device (the model's training speed, no
  decoding). Without CUDA this part is skipped with a note.

    python benchmarks/bench_train.py                       # print JSON
    python benchmarks/bench_train.py --write               # also update benchmarks/RESULTS.md

``--write`` replaces only the "## Training throughput" section of RESULTS.md (added if absent).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## Training throughput"


def make_data(root: Path, classes: int, videos: int) -> None:
    """Synthetic Kinetics layout through the real console script."""
    cmd = [sys.executable, "-m", "a2video.cli", "synth", str(root), "--layout", "kinetics"]
    cmd += ["--classes", str(classes), "--videos-per-class", str(videos), "--no-progress"]
    subprocess.run(cmd, check=True, capture_output=True)


def _fit(model: Any, datamodule: Any, steps: int, skip: int, **trainer: Any) -> dict[str, float]:
    import lightning as L

    from a2video.training.callbacks import StepTimer

    timer = StepTimer(skip=skip)
    root = tempfile.mkdtemp(prefix="bench_train_run_")  # run files never land in the cwd
    t = L.Trainer(
        default_root_dir=root,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        **trainer,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.fit(model, datamodule)
    return timer.summary()


def bench_cpu(args: argparse.Namespace) -> dict[str, Any]:
    from a2video.data import KineticsDataModule
    from a2video.training.module import VideoClassifier

    cfg = yaml.safe_load(Path(args.config).read_text())
    data_root = args.data_root
    tmp = None
    if data_root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_train_")
        data_root = os.path.join(tmp.name, "synth_kinetics")
        make_data(Path(data_root), args.classes, args.videos)
    runs: dict[str, list[dict[str, float]]] = {f"num_workers={w}": [] for w in args.workers}
    torch.set_num_threads(args.threads)
    for _ in range(args.rounds):
        for w in args.workers:
            torch.manual_seed(0)
            data = dict(cfg["data"], data_root=data_root, num_workers=w)
            data["persistent_workers"] = w > 0  # worker start-up once, as in a long run
            dm = KineticsDataModule(**data)
            model_cfg = {k: v for k, v in cfg["model"].items() if k != "test_crops"}
            model = VideoClassifier(**model_cfg, num_classes=dm.num_classes)
            s = _fit(model, dm, args.steps, args.skip, accelerator="cpu", devices=1)
            runs[f"num_workers={w}"].append(s)
    if tmp is not None:
        tmp.cleanup()
    out: dict[str, Any] = {
        "config": os.path.relpath(args.config, ROOT),
        "arch": cfg["model"]["arch"],
        "clip": f"{cfg['data']['frames']}×{cfg['data']['crop_size']}²",
        "batch": cfg["data"]["batch_size"],
        "threads": args.threads,
        "variants": {},
    }
    for name, rs in runs.items():
        out["variants"][name] = {
            "clips_per_s": statistics.median(r["clips_per_s"] for r in rs),
            "step_ms": statistics.median(r["step_ms"] for r in rs),
            "data_wait_share": statistics.median(r["data_wait_share"] for r in rs),
            "rounds": [round(r["clips_per_s"], 2) for r in rs],
        }
    return out


class _DeviceClips(torch.utils.data.Dataset):
    """Random normalised clips and labels (the GPU benchmark measures the model, not decoding)."""

    def __init__(self, n: int, frames: int, size: int, classes: int) -> None:
        self.n, self.shape, self.classes = n, (3, frames, size, size), classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {
            "video": torch.randn(self.shape, generator=g),
            "label": torch.tensor(i % self.classes),
            "index": torch.tensor(i),
        }


def bench_gpu(args: argparse.Namespace) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine: the a2net_r50 GPU part did not run"}
    import lightning as L

    from a2video.training.module import VideoClassifier

    class Clips(L.LightningDataModule):
        def train_dataloader(self):
            ds = _DeviceClips(args.gpu_batch * (args.gpu_steps + 1), 8, 224, 400)
            return torch.utils.data.DataLoader(
                ds, batch_size=args.gpu_batch, num_workers=4, pin_memory=True, drop_last=True
            )

    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "arch": "a2net_r50",
        "clip": "8×224²",
        "batch": args.gpu_batch,
        "precision": "bf16-mixed",
        "channels_last": True,
        "variants": {},
    }
    runs: dict[str, list[dict[str, float]]] = {"compile=off": [], "compile=on": []}
    for _ in range(args.rounds):
        for name in runs:
            torch.manual_seed(0)
            model = VideoClassifier(
                arch="a2net_r50", num_classes=400, channels_last=True, compile=name == "compile=on"
            )
            torch.cuda.reset_peak_memory_stats()
            s = _fit(
                model,
                Clips(),
                args.gpu_steps,
                args.gpu_skip,
                accelerator="gpu",
                devices=1,
                precision="bf16-mixed",
            )
            s["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
            runs[name].append(s)
    for name, rs in runs.items():
        out["variants"][name] = {
            "clips_per_s": statistics.median(r["clips_per_s"] for r in rs),
            "step_ms": statistics.median(r["step_ms"] for r in rs),
            "data_wait_share": statistics.median(r["data_wait_share"] for r in rs),
            "peak_mem_gib": max(r["peak_mem_gib"] for r in rs),
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        SECTION,
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {m['cpu']}, nproc {m['nproc']}, torch {m['torch']}, 1-min load average "
        f"{m['loadavg_1min_at_start']} at start (cores shared with other jobs); "
        f"{result['date']}.  ",
        "StepTimer (a2video.training.callbacks) inside `Trainer.fit`: clips/s over the measured "
        "steps (the "
        "first ones skipped), and the share of step time between one batch's end and the next "
        "batch's start (waiting for data). Variants ran interleaved in one process; medians over "
        "rounds.",
        "",
    ]
    c = result["cpu"]
    lines += [
        f"**CPU**, `{c['config']}` ({c['arch']}, {c['clip']}, batch {c['batch']}, "
        f"{c['threads']} intra-op thread(s)), synthetic videos from `a2video synth`, decoded:",
        "",
        "| num_workers | clips/s | step (ms) | data wait share | clips/s per round |",
        "|---|---:|---:|---:|---|",
    ]
    base = None
    for name, v in c["variants"].items():
        base = base or v["clips_per_s"]
        lines.append(
            f"| {name.split('=')[1]} | {v['clips_per_s']:.1f} ({v['clips_per_s'] / base:.2f}×) "
            f"| {v['step_ms']:.0f} | {100 * v['data_wait_share']:.0f}% | "
            f"{', '.join(str(x) for x in v['rounds'])} |"
        )
    g = result["gpu"]
    lines.append("")
    if "skipped" in g:
        lines.append(f"**GPU** (`a2net_r50` 8×224², bf16-mixed, channels_last_3d, torch.compile "
                     f"off/on): skipped — {g['skipped']}.")  # fmt: skip
    else:
        lines += [
            f"**GPU** {g['device']}, `{g['arch']}` {g['clip']}, batch {g['batch']}, "
            f"{g['precision']}, channels_last_3d, clips already decoded:",
            "",
            "| torch.compile | clips/s | step (ms) | data wait share | peak memory (GiB) |",
            "|---|---:|---:|---:|---:|",
        ]
        base = None
        for name, v in g["variants"].items():
            base = base or v["clips_per_s"]
            lines.append(
                f"| {name.split('=')[1]} | {v['clips_per_s']:.1f} "
                f"({v['clips_per_s'] / base:.2f}×) | {v['step_ms']:.0f} | "
                f"{100 * v['data_wait_share']:.0f}% | {v['peak_mem_gib']:.1f} |"
            )
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace (or append) only the "## Training throughput" section of RESULTS.md."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(SECTION + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        tail = old[end + 1 :] if end >= 0 else ""
        new = old[:start] + text + ("\n" + tail if tail else "")
    path.write_text(new)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "demo_kinetics.yaml"))
    p.add_argument("--data-root", help="an existing synthetic Kinetics root (default: synth one)")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--videos", type=int, default=6, help="train videos per class to synthesise")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of the main process")
    p.add_argument("--steps", type=int, default=14, help="optimizer steps per CPU fit")
    p.add_argument("--skip", type=int, default=4, help="warm-up steps not measured")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--gpu-batch", type=int, default=16)
    p.add_argument("--gpu-steps", type=int, default=30)
    p.add_argument("--gpu-skip", type=int, default=10, help="warm-up (and compile) steps")
    p.add_argument("--no-gpu", action="store_true")
    p.add_argument("--note", default="", help="a line appended to the RESULTS.md section")
    p.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    p.add_argument("--results-md", default=str(RESULTS))
    args = p.parse_args(argv)

    result: dict[str, Any] = {
        "command": "python benchmarks/bench_train.py "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "date": dt.date.today().isoformat(),
        "machine": {
            "cpu": cpu_model(),
            "nproc": os.cpu_count(),
            "torch": torch.__version__,
            "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
        },
        "note": args.note,
    }
    result["cpu"] = bench_cpu(args)
    result["gpu"] = {"skipped": "--no-gpu"} if args.no_gpu else bench_gpu(args)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.write:
        write_section(markdown(result), Path(args.results_md))
    return result


if __name__ == "__main__":
    main()
