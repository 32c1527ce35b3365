"""Checkpoint files: atomic writes and safe reads.

Writes go to a temporary file in the target's directory, are flushed and fsync'ed, and then
``os.replace``'d over the target, so a process killed mid-write (SIGKILL, OOM, pre-emption) leaves
either the previous complete file or the new complete file, never a truncated ``last.ckpt``.

Reads use ``torch.load(weights_only=True)``: tensors, containers and plain Python values only.
A checkpoint that needs arbitrary pickled objects (a crafted file, or one saved with objects in its
hyper-parameters) is refused with a one-line message unless the caller opts in with
``unsafe=True`` (``--unsafe_load true`` on the command line).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import pickle
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.plugins.io import TorchCheckpointIO

from a2video.atomic_write import replaced_atomically
from a2video.errors import unsafe_flag

__all__ = [
    "ARCH_KEYS",
    "META_KEYS",
    "AtomicCheckpointIO",
    "BestCheckpoint",
    "CheckpointError",
    "UntrustedCheckpointError",
    "atomic_save",
    "find_best_checkpoint",
    "find_run_checkpoint",
    "holds_weights",
    "load_checkpoint",
    "not_a_file",
    "options_from_checkpoint",
    "plain_data",
    "recorded_monitor",
    "safe_globals",
    "same_option",
    "saved_config",
    "saved_model_options",
]


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message names the file and the fix."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint holding pickled Python objects, refused by safe loading (nothing ran).

    The message names the file, why, and ``flag``: the option of the entry point that accepts
    such a file (each entry point sets its own, e.g. ``--unsafe-load`` for ``a2video predict``).
    """

    def __init__(self, path: str, detail: str = "", flag: str | None = None) -> None:
        self.path, self.detail, self.flag = path, detail, flag or unsafe_flag()
        super().__init__(path)

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return (
            f"{self.path}: refused: it holds pickled Python objects that safe (weights_only) "
            f"loading does not allow{detail}; nothing in it was run. If you trust the file's "
            f"source, pass {self.flag}."
        )


# Plain-data classes Lightning and our configs may leave in a checkpoint's hyper-parameters.
# Each is rebuilt from strings or dict items only, so allowing them keeps loading code-free.
_SAFE_GLOBALS: list[Any] = [
    AttributeDict,
    pathlib.PosixPath,
    pathlib.WindowsPath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
]


def safe_globals() -> list[Any]:
    """The classes allowed by :func:`load_checkpoint` on top of torch's weights-only defaults."""
    return list(_SAFE_GLOBALS)


def plain_data(x: Any) -> Any:
    """Convert to plain Python data (for weights_only-loadable checkpoint metadata)."""
    if isinstance(x, dict):
        return {str(k): plain_data(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_data(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return str(x)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically and durably
    (:func:`a2video.atomic_write.replaced_atomically`: temp file beside it, fsync, replace).

    Args:
        obj: anything ``torch.save`` accepts.
        path: the target file; its directory is created if needed.
    """
    path = os.path.abspath(os.fspath(path))
    _remove_stale_temps(os.path.dirname(path), os.path.basename(path))
    with replaced_atomically(path, durable=True) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def _remove_stale_temps(directory: str, name: str) -> None:
    """Remove what an earlier write of ``name`` left when its process was killed (SIGKILL, OOM)
    between creating its temporary file and the replace: one full-size file per such kill.
    Only one process writes a given checkpoint, so no live write of ``name`` is touched."""
    for stale in Path(directory).glob(f".{glob.escape(name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


# Files whose every zip member matched its CRC-32 in this process: (real path, size, mtime).
_VERIFIED: set[tuple[str, int, int]] = set()


def _damaged_member(path: str) -> str | None:
    """The first member of a torch zip checkpoint whose bytes do not match their CRC-32 (a bit
    flip, a bad copy), or None. ``torch.load`` does not check them: a damaged tensor loads as
    other numbers. Reads the whole file once per process (about 1 GB/s)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as err:
        return f"?: {type(err).__name__}"
    if bad is None:
        _VERIFIED.add(key)
    return bad


def _diagnose(path: str, verify: bool = True) -> str | None:
    """A reason the file is not a complete torch zip checkpoint, or None if it looks like one
    (``verify``: every member's bytes checked against their CRC-32)."""
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty (a write was interrupted?)"
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            return "the file is truncated or corrupt (incomplete zip archive)"
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
        if _torchscript(members):  # torch.load refuses it as weights_only: not "corrupt"
            return (
                "not a PyTorch checkpoint (a TorchScript program, e.g. written by `a2video export "
                "--format torchscript`: torch.jit.load runs it)"
            )
        if not any(m.endswith("data.pkl") for m in members):  # torch.save's zip holds one
            npz = members and all(m.endswith(".npy") for m in members)
            what = "a NumPy .npz, e.g. a test's scores.npz" if npz else f"a zip of {members[:3]}"
            return f"not a PyTorch checkpoint ({what})"
        bad = _damaged_member(path) if verify else None
        if bad is not None:
            return f"the file is corrupt (its bytes of {bad.split('/')[-1]} fail their checksum)"
        return None
    if head[:1] == b"\x80":
        return None  # a legacy (non-zip) pickle; weights_only decides whether it is allowed
    return "not a PyTorch checkpoint"


def load_checkpoint(
    path: str | os.PathLike,
    unsafe: bool = False,
    map_location: Any = "cpu",
    mmap: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint dict safely.

    Args:
        path: the ``.ckpt``/``.pt`` file.
        unsafe: allow arbitrary pickled objects (``weights_only=False``). Only for files you trust.
        map_location: passed to ``torch.load``.
        mmap: map the tensors from the file instead of reading them (to look at metadata).

    Returns:
        The checkpoint dictionary.

    Raises:
        CheckpointError: missing, empty, truncated, not a checkpoint, or a pickle that
            weights-only loading refuses. The message is one line naming the file and the fix.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(not_a_file(path))
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file; check the path.")
    reason = _diagnose(path, verify=not mmap)
    if reason is not None and reason.startswith("not a PyTorch checkpoint"):
        raise CheckpointError(
            f"{path}: {reason}; pass a .ckpt written by train.py (Trainer.save_checkpoint)."
        )
    if reason is not None:
        raise CheckpointError(
            f"{path}: {reason}; re-copy it or resume from an earlier checkpoint "
            "(checkpoints written by a2video are replaced atomically, so 'last' stays readable)."
        )
    try:
        if unsafe:
            ckpt = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
        else:
            with torch.serialization.safe_globals(_SAFE_GLOBALS):
                ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()
        detail = next((line for line in first if "Unsupported" in line or "GLOBAL" in line), "")
        detail = detail.split(" Please use")[0].replace("WeightsUnpickler error: ", "")
        raise UntrustedCheckpointError(path, detail.strip().rstrip(".")) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({msg}); the file is truncated or corrupt: re-copy it "
            "or resume from an earlier checkpoint."
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path}: not a checkpoint (it holds a {type(ckpt).__name__}, not a dict); "
            "pass a file written by Trainer.save_checkpoint / ModelCheckpoint."
        )
    return ckpt


def holds_weights(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file of weights ``torch.save`` wrote (a checkpoint, a state dict:
    a zip holding ``data.pkl``, or a legacy pickle), not a TorchScript archive (whose zip holds
    ``constants.pkl`` and ``code/`` too) nor anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80":
        return True
    if not (head.startswith(b"PK") and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        members = archive.namelist()
    return not _torchscript(members) and any(m.endswith("data.pkl") for m in members)


def _torchscript(members: list[str]) -> bool:
    """Whether a zip's member names are a TorchScript archive's (``torch.jit.save``)."""
    return any(m.endswith("/constants.pkl") or "/code/" in m for m in members)


def not_a_file(path: str | os.PathLike) -> str:
    """The one-line error for a directory given where a checkpoint file is wanted, naming the
    checkpoints in it (a run folder: its ``checkpoints/``)."""
    folder = Path(path)
    found = sorted(folder.glob("*.ckpt")) or sorted(folder.glob("checkpoints/*.ckpt"))
    last = [p for p in found if p.name == "last.ckpt"]
    example = f" (e.g. {(last or found)[0]})" if found else ""
    return f"{path}: is a directory; pass a checkpoint file in it{example}."


# ------------------------------------------------------------------ a run's last and best
# The mode in a ModelCheckpoint's state key: "ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min'…"
_STATE_KEY_MODE = re.compile(r"'mode': '(min|max)'")


@dataclass(frozen=True)
class BestCheckpoint:
    """``--ckpt_path best`` resolved: the file, and how it was chosen (for the CLI's info line)."""

    path: Path
    how: str


def recorded_monitor(ckpt: dict[str, Any], name: str = "") -> tuple[str, str] | None:
    """The metric and mode (``"max"``/``"min"``) the run that wrote ``ckpt`` ranked its best by.

    Read from Lightning's state of the ModelCheckpoint that wrote it (``checkpoint["callbacks"]``:
    ``monitor`` in the state, the mode in its key), else from the run's ``checkpoint`` options in
    ``checkpoint["a2video"]["config"]`` (weights-only files keep no callback state).

    Args:
        ckpt: the checkpoint dict.
        name: the file's name: of several monitoring ModelCheckpoints, the one that lists it wins.

    Returns:
        ``(monitor, mode)``, or None when nothing names a monitor.
    """
    states = []  # (monitor, mode, whether this state's top-k lists the file)
    for key, state in (ckpt.get("callbacks") or {}).items():
        mode = _STATE_KEY_MODE.search(str(key))
        if isinstance(state, dict) and state.get("monitor") and mode:
            listed = any(Path(str(p)).name == name for p in state.get("best_k_models") or {})
            states.append((str(state["monitor"]), mode.group(1), listed))
    if states:
        monitor, mode, _ = next((s for s in states if s[2]), states[0])
        return monitor, mode
    return _config_monitor(ckpt)


def saved_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The run's resolved YAML stored in the checkpoint (``checkpoint["a2video"]["config"]``,
    its existing relative paths made absolute), parsed; empty where it holds none."""
    import yaml

    text = (ckpt.get("a2video") or {}).get("config")
    try:
        config = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return {}
    return config if isinstance(config, dict) else {}


def _config_monitor(ckpt: dict[str, Any]) -> tuple[str, str] | None:
    """``checkpoint.monitor`` / ``checkpoint.mode`` of the run's YAML stored in the file."""
    watch = saved_config(ckpt).get("checkpoint")
    if isinstance(watch, dict) and watch.get("monitor") and watch.get("mode") in ("min", "max"):
        return str(watch["monitor"]), str(watch["mode"])
    return None


def _scores(ckpt: dict[str, Any], name: str) -> dict[str, float]:
    """The file's saved metrics (``checkpoint["a2video"]["metrics"]``), plus its score in the
    ModelCheckpoint state that lists it (a monitor a2video does not keep, e.g. ``train/loss``)."""
    metrics = (ckpt.get("a2video") or {}).get("metrics") or {}
    scores = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    for state in (ckpt.get("callbacks") or {}).values():
        if not isinstance(state, dict) or not state.get("monitor"):
            continue
        for path, score in (state.get("best_k_models") or {}).items():
            if Path(str(path)).name == name and score is not None:
                scores.setdefault(str(state["monitor"]), float(score))
    return scores


def _ranking(
    records: dict[Path, tuple[str, str] | None], monitor: str | None, mode: str
) -> tuple[str | None, str, str]:
    """The monitor and mode to rank a run's best files by, and a clause saying why: the one the
    files record (the newest file's where they differ), else the caller's."""
    kinds = {r for r in records.values() if r is not None}
    if not kinds and not monitor:
        return None, mode, "the newest: no monitor recorded in the checkpoints or set"
    if not kinds:
        how = f"ranked by {monitor} ({mode}) of this command's checkpoint.monitor: none recorded"
        return monitor, mode, how
    newest = max((p for p, r in records.items() if r is not None), key=lambda p: p.stat().st_mtime)
    used = records[newest]
    how = f"ranked by {used[0]} ({used[1]}), the monitor the run's checkpoints record"
    if len(kinds) > 1:
        others = ", ".join(f"{m} ({d})" for m, d in sorted(kinds - {used}))
        how = (
            f"ranked by {used[0]} ({used[1]}), the monitor of the newest, {newest.name}; "
            f"older checkpoints of the run record {others}"
        )
    if monitor and used != (monitor, mode):
        how += f"; not by this command's checkpoint.monitor {monitor} ({mode})"
    return used[0], used[1], how


def find_best_checkpoint(
    dirpath: str | os.PathLike,
    monitor: str | None = "val/top1",
    mode: str = "max",
    unsafe: bool = False,
) -> BestCheckpoint | None:
    """A run's ``best`` checkpoint (None: there is none), ranked by the monitor the run recorded.

    The files are the ModelCheckpoint ones of the folder (every ``.ckpt`` but ``last*``). With
    several, each is ranked by its saved value of the metric the run was trained to monitor
    (:func:`recorded_monitor`; the newest file's where the files differ); ``monitor`` and
    ``mode`` rank them only when no file records one. Files without the value rank by time.

    Args:
        dirpath: the checkpoint folder.
        monitor: the fallback metric (the command's ``checkpoint.monitor``).
        mode: its ``"max"`` or ``"min"``.
        unsafe: allow pickled objects when reading the files (trusted files only).
    """
    folder = Path(dirpath)
    if not folder.is_dir():
        return None
    found = sorted(
        p for p in folder.glob("*.ckpt") if p.is_file() and not p.name.startswith("last")
    )
    if len(found) <= 1:
        return BestCheckpoint(found[0], "the run's only best checkpoint") if found else None
    scores, records = {}, {}
    for path in found:
        ckpt = load_checkpoint(path, unsafe=unsafe, mmap=True)
        scores[path], records[path] = _scores(ckpt, path.name), recorded_monitor(ckpt, path.name)
    used, used_mode, how = _ranking(records, monitor, mode)

    def rank(path: Path) -> tuple[bool, float, float]:
        value = scores[path].get(used) if used else None
        if value is None:
            return (False, 0.0, path.stat().st_mtime)
        return (True, value if used_mode == "max" else -value, path.stat().st_mtime)

    return BestCheckpoint(max(found, key=rank), how)


def find_run_checkpoint(
    which: str,
    dirpath: str | os.PathLike,
    monitor: str | None = "val/top1",
    mode: str = "max",
    unsafe: bool = False,
) -> Path | None:
    """A run's ``last`` or ``best`` checkpoint in its checkpoint folder (None: there is none).

    ``--ckpt_path last``/``best`` of the CLI, resolved from the files alone, so that they work
    from a new process (Lightning knows ``best`` only in the process that saved it) and the
    resolved file gets the same checks as a path.

    Args:
        which: ``"last"`` (``last.ckpt``, written by ``LastCheckpoint`` and on SIGTERM) or
            ``"best"`` (:func:`find_best_checkpoint`).
        dirpath: the checkpoint folder.
        monitor: the metric that ranks ``best`` files when none records the run's monitor.
        mode: ``"max"`` or ``"min"``.
        unsafe: allow pickled objects when reading the files' metrics (trusted files only).
    """
    if which == "best":
        best = find_best_checkpoint(dirpath, monitor, mode, unsafe)
        return best.path if best is not None else None
    path = Path(dirpath) / "last.ckpt"
    return path if path.is_file() else None


# ------------------------------------------------------------------ saved model options
# Model options that define the network a checkpoint's weights belong to.
ARCH_KEYS = ("arch", "num_classes", "arch_options")
# Read from ``checkpoint["a2video"]`` over ``hyper_parameters``: they describe the weights in the
# file (a fine-tuned head, its class list) even where the saved hyper-parameters do not.
META_KEYS = (*ARCH_KEYS, "class_names")
# Never restored: a file must not be able to switch off safe loading, and 2-D weights to inflate
# are for a fit from scratch (the checkpoint holds every weight).
NOT_RESTORED = ("unsafe_load", "pretrained_2d")


def saved_model_options(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The model options a checkpoint can restore: its ``hyper_parameters`` (private and
    :data:`NOT_RESTORED` ones left out) with the ``a2video`` metadata's :data:`META_KEYS` over
    them."""
    saved = {
        k: v
        for k, v in dict(ckpt.get("hyper_parameters") or {}).items()
        if not k.startswith("_") and k not in NOT_RESTORED
    }
    meta = ckpt.get("a2video") or {}
    saved.update({k: meta[k] for k in META_KEYS if meta.get(k) is not None})
    return saved


def same_option(key: str, a: Any, b: Any) -> bool:
    """Whether two values of option ``key`` are the same (``arch_options``: None is {})."""
    if key == "arch_options":
        return dict(a or {}) == dict(b or {})
    return a == b


def options_from_checkpoint(
    ckpt_path: str | os.PathLike,
    saved: dict[str, Any],
    accepted: Iterable[str],
    given: dict[str, Any],
    option: str = "{key}",
) -> dict[str, Any]:
    """The saved options to apply: those the model accepts and the user did not give.

    The one overlay of a checkpoint's settings under the user's, used by ``--ckpt_path`` of the
    CLI (:class:`a2video.training.cli.A2VideoCLI`) and by
    :meth:`a2video.training.module.VideoClassifier.from_checkpoint`.

    Args:
        ckpt_path: the checkpoint (named in errors).
        saved: :func:`saved_model_options` of it.
        accepted: the option names the model takes (others, e.g. removed ones, are dropped).
        given: the options the user set (command line, YAML, keyword arguments): they win.
        option: how the user names an option in the error, e.g. ``"--model.{key}"``.

    Returns:
        ``{option: saved value}`` for the options to take from the checkpoint.

    Raises:
        ValueError: an architecture option (:data:`ARCH_KEYS`) given with a value that conflicts
            with the checkpoint's (one line naming both).
    """
    accepted = set(accepted)
    taken = {}
    for key, value in saved.items():
        if key not in accepted:
            continue
        if key not in given:
            taken[key] = value
        elif key in ARCH_KEYS and not same_option(key, given[key], value):
            raise ValueError(
                f"{os.fspath(ckpt_path)}: the checkpoint's {key} is {value!r} but {given[key]!r} "
                f"was asked for; leave {option.format(key=key)} unset (the checkpoint's network "
                "is used) or pass a checkpoint of that architecture."
            )
    return taken


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: atomic replace on save, :func:`load_checkpoint` on load.

    Installed by :class:`a2video.training.cli.A2VideoCLI` so every ModelCheckpoint write (best,
    last, step and epoch-end) and every ``--ckpt_path`` read goes through it.

    Args:
        unsafe_load: allow pickled Python objects when loading (trusted files only).
    """

    def __init__(self, unsafe_load: bool = False) -> None:
        super().__init__()
        self.unsafe_load = unsafe_load

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_save(checkpoint, path)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | Any = "cpu",
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        # Lightning's own `weights_only` hint is ignored: only the user's flag allows pickles.
        return load_checkpoint(path, unsafe=self.unsafe_load, map_location=map_location)
