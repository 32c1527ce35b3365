"""A lent GPU host's python3 as the GPU benchmarks meet it: torch, Lightning, torchmetrics and
numpy, but no decord, PyAV or jsonargparse (and perhaps no torchvision).

:func:`bare_env` gives a subprocess, and every process it starts, an interpreter in which those
packages are not installed as far as code can tell: a ``sitecustomize.py`` puts ``None`` in
``sys.modules`` for each, so ``import av`` raises ModuleNotFoundError and
``importlib.util.find_spec("av")`` returns None, as where the package is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_ON_GPU_HOST = ("decord", "av", "jsonargparse")

SITECUSTOMIZE = """
import sys

for name in {names!r}:
    sys.modules[name] = None  # not installed, as on the GPU host
"""


def bare_env(folder: Path, missing: tuple[str, ...] = NOT_ON_GPU_HOST) -> dict[str, str]:
    """Environment for a subprocess without ``missing``; the working tree on PYTHONPATH.

    Args:
        folder: an empty folder for the sitecustomize.py.
        missing: top-level packages that must not import.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(names=tuple(missing)))
    path = os.pathsep.join([str(folder), str(ROOT)])
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="2", PYTHONDONTWRITEBYTECODE="1")
