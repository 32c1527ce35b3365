"""Writing a file so that its readers find the old one or the whole new one, never a part.

Every file a2video writes over an earlier one (checkpoints, exported models, ``scores.npz``, a
prepared copy's marker and annotation files) is written to ``.<name>.<pid>.tmp`` beside it and
renamed over it when complete: a run killed while writing leaves the old file, and a temp file
whose name says which process wrote it (``a2video prepare`` removes those of dead runs). The
temp file is opened by the caller like any file, so it gets the mode a plain ``open`` gives
(0o666 less the umask: a team's checkpoints stay readable by the group).

Imports nothing but the standard library: :mod:`a2video.data` uses it and must not import
Lightning or torch's checkpoint code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["replaced_atomically", "sync_to_disk", "temp_path"]


def temp_path(path: str | os.PathLike, suffix: str = "") -> Path:
    """The temp file ``.<name>.<pid>.tmp<suffix>`` beside ``path`` that this process writes
    (``suffix``: for writers that pick a format from the name, e.g. ``.onnx``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


@contextlib.contextmanager
def replaced_atomically(
    path: str | os.PathLike, suffix: str = "", durable: bool = False
) -> Iterator[Path]:
    """Yield a temp path to write; when the block ends without an error, rename it over
    ``path``. An error (or a kill) leaves ``path`` as it was, and the temp file is removed.

    Args:
        path: the file to replace; its folder is created if needed.
        suffix: appended to the temp file's name (see :func:`temp_path`).
        durable: flush the temp file and the folder entry to disk (``fsync``) around the
            rename, so a power loss right after leaves the old or the new file (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        if durable:
            _fsync(tmp, os.O_WRONLY)  # (not O_RDONLY: Windows flushes only files open to write)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    if durable:  # the rename itself (POSIX: the folder's entry)
        with contextlib.suppress(OSError):
            _fsync(path.parent, os.O_RDONLY)


def sync_to_disk(path: str | os.PathLike) -> None:
    """Flush what was written to ``path`` (by any process) to disk (``fsync``): a file appended
    to in place, such as a logger's, that a power loss must not take back."""
    _fsync(Path(path), os.O_WRONLY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
