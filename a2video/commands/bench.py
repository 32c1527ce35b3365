"""``a2video bench blocks|model|share …``: runs ``benchmarks/bench.py`` of a source checkout.

Benchmark drivers and report writers are tooling, kept out of the library in ``benchmarks/``
(torchvision keeps its in ``references/``); this command finds that directory (the working
directory's or the one beside the installed package) and runs the script with the same arguments.
"""

from __future__ import annotations

import argparse
import inspect
import runpy
import sys
from pathlib import Path

HELP = "Benchmark attention blocks and whole models (runs benchmarks/bench.py of a checkout)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        help="arguments of benchmarks/bench.py (blocks|model|share)",
    )


def find_script() -> Path | None:
    """``benchmarks/bench.py`` in the working directory or beside the package, if present."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        script = root / "benchmarks" / "bench.py"
        if script.is_file():
            return script
    return None


def run(args: argparse.Namespace) -> int:
    script = find_script()
    if script is None:
        print(
            "a2video bench: benchmarks/bench.py not found: the benchmarks live in the source "
            "repository, not in the installed package; run it from a checkout.",
            file=sys.stderr,
        )
        return 2
    saved = sys.argv
    sys.argv = [str(script), *args.args]
    try:
        namespace = runpy.run_path(str(script), run_name="a2video_bench")
        main = namespace["main"]
        # Errors read "a2video bench: error: ..." (an older checkout's main takes no prog).
        kwargs = {"prog": "a2video bench"} if "prog" in inspect.signature(main).parameters else {}
        return int(main(args.args, **kwargs) or 0)
    finally:
        sys.argv = saved
