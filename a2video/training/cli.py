"""The shared LightningCLI of ``train.py`` and ``finetune_ucf.py``.

Everything a run needs is in one YAML file; this class only sets the defaults every run shares:

- ``checkpoint`` (ModelCheckpoint): the best on ``val/top1``; ``step_checkpoint``
  (:class:`a2video.training.callbacks.LastCheckpoint`): ``last.ckpt`` every ``every_n_train_steps``
  optimizer steps and at every epoch end. Both write into
  ``<trainer.default_root_dir>/checkpoints`` (fixed, so ``--ckpt_path last`` finds it from a new
  process) through :class:`a2video.training.checkpoint.AtomicCheckpointIO`: atomic writes, safe
  reads
  (``--unsafe_load true`` to accept pickled objects from a trusted file).
- VersionedRichProgressBar, LearningRateMonitor (when a logger is on), SaveOnSigterm,
  :class:`a2video.training.resume.ResumeState` (exactly-once resume: data position and RNG
  streams in every checkpoint), :class:`a2video.training.logs.ResumeLogs` (a resumed fit goes on
  in its logger folders, each step logged once; :func:`~a2video.training.logs.share_version`:
  a run's TensorBoard and CSV loggers share one ``version_N``) and CollectiveWatchdog: in
  multi-process runs a collective that waits more than ``--collective_timeout`` seconds (default
  1800) ends the run with an error naming the stage.
- ``trainer.use_distributed_sampler: false``: our DataModules shard themselves without padding
  val/test; the metrics deduplicate by video index anyway.
- ``data.num_classes``, ``data.class_names`` and ``data.spec`` (the clip and test-view
  :class:`a2video.data.ClipSpec`, stored once in checkpoints) linked into the model.
- W&B: a ``WandbLogger`` runs offline unless the user is logged in (``WANDB_API_KEY`` or
  ``~/.netrc``) or ``WANDB_MODE`` is set.
- The resolved YAML travels in every checkpoint (``checkpoint["a2video"]["config"]``).
- ``--ckpt_path FILE`` is read through :func:`a2video.training.checkpoint.load_checkpoint` (safe
  unless ``--unsafe_load true``; a missing or refused file stops with one line), and its saved
  options (:func:`a2video.training.checkpoint.saved_model_options`) fill in only the model options
  the command line / YAML left unset (:func:`~a2video.training.checkpoint.options_from_checkpoint`,
  the same overlay as ``VideoClassifier.from_checkpoint``): a value given there wins (views,
  ``view_chunk``, outputs…), except the architecture-defining ones (:data:`ARCH_KEYS`): a
  conflict there stops with one line naming both values.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from a2video.atomic_write import replaced_atomically
from a2video.errors import debug_enabled, exit_with_user_error, running_entry_point
from a2video.models import check_clip_size
from a2video.training.callbacks import (
    DEFAULT_COLLECTIVE_TIMEOUT_S,
    CollectiveWatchdog,
    LastCheckpoint,
    SaveOnSigterm,
    VersionedRichProgressBar,
)
from a2video.training.checkpoint import (
    ARCH_KEYS,
    AtomicCheckpointIO,
    CheckpointError,
    find_best_checkpoint,
    find_run_checkpoint,
    load_checkpoint,
    not_a_file,
    options_from_checkpoint,
    same_option,
    saved_model_options,
)
from a2video.training.logs import LOGS_KEY, ResumeLogs, resume_logs, share_version
from a2video.training.module import SCHEDULE_OPTIONS, SGD_OPTIONS
from a2video.training.outputs import FolderSnapshot, folder_snapshot, remove_failed_start
from a2video.training.resume import ResumeState

__all__ = ["ARCH_KEYS", "A2VideoCLI", "run_root", "typed_value", "wandb_logged_in"]

# --ckpt_path values Lightning resolves itself (``last`` and ``best`` are resolved here).
_SPECIAL_CKPT = ("hpc", "registry")
# Subcommands that evaluate trained weights: they need a checkpoint.
_EVALUATION = ("validate", "test", "predict")
# What ``fit --ckpt_path`` restores besides the weights (Lightning's KeyError without them).
_TRAINING_STATE = ("optimizer_states", "lr_schedulers")
# The clip settings that shape what a network sees, compared with those a checkpoint was
# trained on (ClipSpec keys; the test views' count is the evaluation protocol, not listed).
_CLIP_KEYS_EVAL = ("frames", "stride", "crop_size", "test_scale", "mean", "std")
_CLIP_KEYS_FIT = (*_CLIP_KEYS_EVAL[:4], "train_scale", "flip", "mean", "std")


def wandb_logged_in() -> bool:
    """Whether W&B credentials are available (env var or ``~/.netrc`` entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def _mentions(value: Any, name: str) -> bool:
    return name in str(value)


def run_root(config: Any) -> str:
    """The run folder of ``config``: ``trainer.default_root_dir``, ``runs/default`` unset."""
    return config.trainer.get("default_root_dir") or "runs/default"


def _checkpoint_dir(config: Any, key: str) -> str:
    """Where the ``checkpoint`` / ``step_checkpoint`` callback of ``config`` writes."""
    dirpath = (config.get(key) or {}).get("dirpath")
    return dirpath or os.path.join(run_root(config), "checkpoints")


def _refuse_to_replace_checkpoints(config: Any, resuming: str | None = None) -> None:
    """A fresh ``fit`` (no ``--ckpt_path``, or ``last`` with no ``last.ckpt``), or one resuming
    ``resuming``, a file of another folder, stops before it would write over an earlier run's
    checkpoints in its checkpoint folders, with the fixes: resume that run, or another folder."""
    folders = [(config.get(key) or {}).get("dirpath") for key in ("step_checkpoint", "checkpoint")]
    folders = [d for d in folders if d and os.path.isdir(d)]
    if resuming is not None:
        source = os.path.dirname(os.path.realpath(resuming))
        if any(os.path.realpath(d) == source for d in folders):
            return  # a resume of this folder's run
    for dirpath in folders:
        found = sorted(name for name in os.listdir(dirpath) if name.endswith(".ckpt"))
        if found:
            name = "last.ckpt" if "last.ckpt" in found else found[0]
            path = os.path.join(dirpath, name)
            resume = "--ckpt_path last" if name == "last.ckpt" else f"--ckpt_path {path}"
            elsewhere = " ".join(["--trainer.default_root_dir DIR", *_set_elsewhere(config)])
            if resuming is None:
                raise ValueError(
                    f"{path}: an earlier run's checkpoint is here and a fresh fit would write "
                    f"over it; resume it with {resume}, or start this run elsewhere with "
                    f"{elsewhere} (or move the old run away)"
                )
            raise ValueError(
                f"{path}: an earlier run's checkpoint is here and this fit resumes {resuming}, "
                "another folder's, so it would write over it; resume that run in its own "
                f"folder with --trainer.default_root_dir {_run_folder_of(resuming)}, or go on "
                f"elsewhere with {elsewhere} (or move the old run away)"
            )


def _run_folder_of(ckpt_path: str) -> str:
    """The run folder a checkpoint file lies in (``<run>/checkpoints/x.ckpt``: ``<run>``)."""
    folder = os.path.dirname(ckpt_path) or "."
    if os.path.basename(folder) == "checkpoints":
        return os.path.dirname(folder) or "."
    return folder


def _set_elsewhere(config: Any) -> list[str]:
    """The flags that move the checkpoint folders a config sets outside its default_root_dir
    (e.g. a run's saved config.yaml of an older a2video): that flag alone would not move them."""
    root = os.path.abspath(run_root(config))
    flags = []
    for key in ("step_checkpoint", "checkpoint"):
        dirpath = (config.get(key) or {}).get("dirpath")
        if dirpath and os.path.commonpath([root, os.path.abspath(dirpath)]) != root:
            flags.append(f"--{key}.dirpath DIR/checkpoints")
    return flags


def _cli_value(value: Any) -> str:
    """``value`` as jsonargparse reads it on a command line (``null``, ``true``, ``false``;
    a list without spaces)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_cli_value(v) for v in value) + "]"
    return str(value)


def _plain(value: Any) -> Any:
    """A clip setting as plain data (tuples as lists), for comparing and printing."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


# Model options the data sets (linked at instantiation), with what sets them
_FROM_THE_DATA = {
    "num_classes": "the class count comes from the data: data.data_root (its annotation files) "
    "or data.annotation_dir",
    "class_names": "the class names come from the data: data.data_root (its annotation files) "
    "or data.annotation_dir",
    "clip_spec": "the clip settings are data.frames, data.stride, data.crop_size …",
}


def _config_files(argv: Sequence[str]) -> list[str]:
    """The ``--config`` files of the command line ``argv``, in order."""
    paths = []
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
        elif arg in ("--config", "-c") and i + 1 < len(argv):
            paths.append(argv[i + 1])
    return paths


def _trainer_in_files(argv: Sequence[str]) -> list[dict[str, Any]]:
    """The ``trainer`` sections of the readable ``--config`` files of ``argv``, in order."""
    found = []
    for path in _config_files(argv):
        try:
            with open(path, encoding="utf-8") as f:
                trainer = (yaml.safe_load(f) or {}).get("trainer")
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            continue  # the parser reports it
        if isinstance(trainer, dict):
            found.append(trainer)
    return found


def _save_dirs(loggers: Any) -> list[Any]:
    """The ``init_args`` of the ``class_path`` loggers in ``loggers`` (one or a list) that have
    a ``save_dir``: mappings, as a config file or the parsed config holds them."""
    found = []
    for logger in loggers if isinstance(loggers, (list, tuple)) else [loggers]:
        init_args = logger.get("init_args") if hasattr(logger, "get") else None
        if hasattr(init_args, "get") and isinstance(init_args.get("save_dir"), str):
            found.append(init_args)
    return found


def _inside(path: str, folder: str) -> str | None:
    """``path`` relative to ``folder`` where it lies in it (``.`` for the folder), else None."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.relpath(path, folder) if os.path.commonpath([path, folder]) == folder else None


def _move_logs_with_the_root(config: Any, argv: Sequence[str]) -> None:
    """A logger ``save_dir`` that a ``--config`` file puts in that file's ``default_root_dir``
    (a run's saved config.yaml: ``runs/a``) follows ``trainer.default_root_dir`` set elsewhere
    (``--trainer.default_root_dir runs/b``), as the checkpoints do: the logs go to ``runs/b``,
    not beside the old run's in ``runs/a/lightning_logs/version_1``; one line says so. A
    ``save_dir`` typed on the command line, or outside that folder, is kept."""
    files = _trainer_in_files(argv)
    roots = [t["default_root_dir"] for t in files if isinstance(t.get("default_root_dir"), str)]
    old, new = (roots[-1] if roots else None), run_root(config)
    if old is None or _inside(new, old) == ".":
        return
    in_files = {os.path.abspath(a["save_dir"]) for t in files for a in _save_dirs(t.get("logger"))}
    typed = typed_value(argv, "--trainer.logger.save_dir", "--trainer.logger.init_args.save_dir")
    moved = []
    for init_args in _save_dirs(config.trainer.get("logger")):
        save_dir = init_args["save_dir"]
        where = _inside(save_dir, old)
        if where is None or save_dir == typed or os.path.abspath(save_dir) not in in_files:
            continue
        init_args["save_dir"] = new if where == "." else os.path.join(new, where)
        moved.append((save_dir, init_args["save_dir"]))
    if moved:
        kept = moved[0][0] if len(moved) == 1 else "DIR"
        rank_zero_info(
            f"a2video: the logs follow trainer.default_root_dir {new} (the config file's is "
            f"{old}): logger save_dir {', '.join(f'{a} -> {b}' for a, b in moved)}; give "
            f"--trainer.logger.save_dir {kept} on the command line to log there instead"
        )


def _refuse_data_derived_model_options(argv: list[str], checkpoint_option: str) -> None:
    """One line for ``--model.num_classes`` (command line or a ``--config`` file): jsonargparse
    said it "must be given via data.num_classes", an option that does not exist. A ``--config``
    file that is not text (a checkpoint: ``--config last.ckpt``) is named in one line with the
    option that takes it (``checkpoint_option``, ``{path}`` in it replaced)."""
    given = [a.split("=", 1)[0][len("--model.") :] for a in argv if a.startswith("--model.")]
    for path in _config_files(argv):
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    model = (yaml.safe_load(f) or {}).get("model")
            except UnicodeDecodeError:
                raise ValueError(
                    f"{path}: not a YAML config (binary data: a checkpoint?); --config takes a "
                    f"YAML file: pass a checkpoint as {checkpoint_option.format(path=path)}"
                ) from None
            except (OSError, yaml.YAMLError, AttributeError):
                continue  # the parser reports it
            if isinstance(model, dict):
                given += [k for k in model if k in _FROM_THE_DATA]
    for key in given:
        if key in _FROM_THE_DATA:
            raise ValueError(
                f"model.{key} is not an option: {_FROM_THE_DATA[key]}; leave model.{key} out of "
                "the command line and --config files"
            )


def _processes_on_the_cpu(trainer: Any) -> int | None:
    """How many processes the Trainer options start on the CPU (``accelerator: cpu``, or
    ``auto`` on a machine without CUDA, MPS or TPU); None where they run on another accelerator
    (or one not given by name)."""
    accelerator = trainer.get("accelerator") or "auto"
    if accelerator == "auto":
        from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator, XLAAccelerator

        if any(a.is_available() for a in (CUDAAccelerator, MPSAccelerator, XLAAccelerator)):
            return None
    elif accelerator != "cpu":
        return None
    devices = trainer.get("devices")
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    else:
        try:
            count = int(str(devices).strip())
        except ValueError:
            count = 1  # "auto": one process on the CPU
    try:
        nodes = int(trainer.get("num_nodes") or 1)
    except (TypeError, ValueError):
        nodes = 1
    return max(count, 1) * max(nodes, 1)


def _refuse_sync_batchnorm_on_the_cpu(config: Any) -> None:
    """One line, before any process starts, for ``sync_batchnorm: true`` in a DDP fit on the
    CPU: torch's SyncBatchNorm has no CPU implementation, and every rank stopped with a
    traceback (CollectiveWatchdog still names it in a run this check cannot foresee)."""
    trainer = config.get("trainer") or {}
    if not trainer.get("sync_batchnorm"):
        return
    processes = _processes_on_the_cpu(trainer)
    ddp = "ddp" in str(trainer.get("strategy") or "").lower()
    if processes is None or (processes < 2 and not ddp):
        return  # one process without DDP: Lightning leaves the BatchNorm layers as they are
    devices = _cli_value(_plain(trainer.get("devices")))
    runs = f"{processes} processes" if processes > 1 else "a DDP process"
    raise ValueError(
        f"--trainer.sync_batchnorm true: sync_batchnorm needs GPUs (torch's SyncBatchNorm has no "
        f"CPU implementation) and this fit runs {runs} on the CPU (--trainer.accelerator "
        f"{trainer.get('accelerator') or 'auto'}, --trainer.devices {devices}); use "
        "--trainer.sync_batchnorm false on the CPU"
    )


# Options naming a file or folder, with the test a value must pass to be one: a relative path
# among them is made absolute in a run's saved config (a split or pretrained_2d may be a name).
_PATH_OPTIONS = {
    "data.data_root": os.path.isdir,
    "data.annotation_dir": os.path.isdir,
    "data.train_split": os.path.isfile,
    "data.val_split": os.path.isfile,
    "data.test_split": os.path.isfile,
    "data.predict_split": os.path.isfile,
    "model.pretrained_2d": os.path.isfile,
    "ckpt": os.path.isfile,  # finetune_ucf.py's pretrained weights
    "ckpt_path": os.path.isfile,
}


def _absolute_paths(config: Any) -> None:
    """Make the relative paths of ``config`` that name an existing file or folder absolute, so
    the run's saved config.yaml (and its copy in the checkpoints) reads the same data and
    weights when reused from another working directory."""
    for key, exists in _PATH_OPTIONS.items():
        try:
            value = config.get(key)
        except (KeyError, AttributeError):  # a group this entry point lacks
            continue
        if isinstance(value, str) and value and not os.path.isabs(value) and exists(value):
            config[key] = os.path.abspath(value)


def _seed_data_from_run(config: Any) -> None:
    """``data.seed`` left unset follows ``seed_everything`` (resolved to an int by then), so
    ``--seed_everything N`` also changes the data order and augmentation, as Lightning's and
    PySlowFast's seeds do; the saved config.yaml records the value used."""
    data = config.get("data")
    if data is None or "seed" not in data or data.get("seed") is not None:
        return
    seed = config.get("seed_everything")
    data.seed = int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else 0


def _refuse_lightning_optimizers(config: Any) -> None:
    """One line for LightningCLI's top-level ``--optimizer`` / ``--lr_scheduler`` in a fit: they
    replace ``VideoClassifier.configure_optimizers`` whole (its parameter groups, LR scaling and
    schedule, and ``model.optimizer`` / ``model.lr_scheduler``), with only Lightning's warning
    that it is overridden; ``model.optimizer`` / ``model.lr_scheduler`` take the same value."""
    for key in ("optimizer", "lr_scheduler"):
        value = config.get(key)
        if not value:
            continue
        name = value.get("class_path") if hasattr(value, "get") else value
        raise ValueError(
            f"--{key} {name}: Lightning's top-level {key} replaces a2video's optimisation "
            "(parameter groups without decay on BatchNorm and bias, lr_base_batch_size, the "
            f"built-in schedule, model.optimizer and model.lr_scheduler); give --model.{key} "
            f"{name} (its settings as --model.{key}.init_args.*) and leave the top-level {key} "
            "out of the command line and --config files"
        )


# finetune_ucf.py's options (FinetuneCLI, UCF101DataModule): named as such when another entry
# point (train.py) is given one, on its command line or in a --config file
_FINETUNE_ONLY = ("data.fold", "ckpt", "folds", "test_after_fit", "finetune")


def _one_line(message: str) -> str:
    """A jsonargparse message on one line: its indented detail lines joined by ``; ``."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = lines[0] if lines else message.strip()
    for line in lines[1:]:
        text += (" " if text.endswith(":") else "; ") + line
    return text


def _options(parser: Any) -> list[str]:
    """The parser's long option names (``--model.lr_base_batch_size`` …)."""
    return sorted(
        {o for a in getattr(parser, "_actions", ()) for o in a.option_strings if o[:2] == "--"}
    )


def _prog_words(parser: Any) -> list[str]:
    """The entry point's name and the subcommand of ``parser`` (``["train.py", "fit"]``)."""
    words = str(getattr(parser, "prog", "")).replace(" [options]", "").split()
    return [running_entry_point() or (words[0] if words else "train.py"), *words[1:]]


def _help_command(parser: Any) -> str:
    """``<entry point> [<subcommand>] --help`` for the parser that failed."""
    return " ".join([*_prog_words(parser), "--help"])


def _elsewhere(key: str, parser: Any) -> str | None:
    """Where an option this parser lacks belongs (finetune_ucf.py's options given to train.py)."""
    key = key.lstrip("-")
    if f"--{key}" in _options(parser) or not any(
        key == k or key.startswith(k + ".") for k in _FINETUNE_ONLY
    ):
        return None
    what = "UCF-101 fold options belong" if key == "data.fold" else f"{key} belongs"
    prog, *sub = _prog_words(parser)
    return (
        f"{what} to finetune_ucf.py (transfer to UCF-101), not to {prog}: run python "
        f"finetune_ucf.py {' '.join([*sub, ''])}with the same arguments"
    )


def _suggestion(name: str, parser: Any) -> str | None:
    """``--name`` (or ``name``) the parser does not know: its closest option, if one is close."""
    dashes = "--" if name.startswith("--") else ""
    wanted = name.split("=", 1)[0].rstrip("+")
    options = [o if dashes else o[2:] for o in _options(parser)]
    close = difflib.get_close_matches(wanted if dashes else wanted.lstrip("-"), options, n=1)
    return close[0] if close else None


def _config_suggestion(path: str) -> str | None:
    """The config file beside a missing ``--config`` path whose name is closest to it."""
    folder = os.path.dirname(path) or "."
    try:
        names = [n for n in os.listdir(folder) if n.endswith((".yaml", ".yml", ".json"))]
    except OSError:
        return None
    close = difflib.get_close_matches(os.path.basename(path), names, n=1)
    if not close:
        return None
    found = os.path.join(folder, close[0])
    relative = os.path.relpath(found)
    return relative if not relative.startswith("..") else found


def _unaccepted_option(message: str) -> str | None:
    """A key a ``class_path``'s ``init_args`` do not take (the optimizer's ``weight_decay``
    misspelt, a logger's ``save_dir``…) as one short line naming the class and the key meant
    (difflib over its signature); jsonargparse's message wraps it in every type of the option's
    Union. None for other messages."""
    key = re.match(r'Parser key "([^"]+)"', message)
    bad = re.search(r"Option '([^']+)' is not accepted", message)
    path = re.search(r"class_path(?:=| )'([\w.]+)'", message)
    if not (key and bad and path):
        return None
    module, _, name = path.group(1).rpartition(".")
    try:
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    names = [n for n, p in params.items() if n != "params" and p.kind not in variadic]
    close = difflib.get_close_matches(bad.group(1), names, n=1)
    fix = f"did you mean {close[0]}?" if close else f"its options are {', '.join(names)}"
    return f"{key.group(1)}: {path.group(1)} has no option {bad.group(1)!r}; {fix}"


def _parser_fix(message: str, parser: Any) -> str:
    """What to do about a jsonargparse error: the option meant (difflib over the parser's own
    options), where a finetune_ucf.py option belongs, the config file meant, the value meant."""
    unknown = re.match(r"unrecognized arguments: (.*)", message, re.S)
    if unknown:
        names = [t for t in unknown.group(1).split() if t.startswith("-")]
        for name in names:
            hint = _elsewhere(name.split("=", 1)[0], parser)
            if hint:
                return hint
        meant = {name: _suggestion(name, parser) for name in names}
        meant = {name: close for name, close in meant.items() if close}
        if len(meant) == 1:
            return f"did you mean {next(iter(meant.values()))}?"
        if meant:
            return "did you mean " + ", ".join(f"{c} (for {n})" for n, c in meant.items()) + "?"
        return f"{_help_command(parser)} lists the options"
    foreign = re.search(r"does not accept option '([^']+)'", message)
    if foreign:
        key = foreign.group(1)
        close = _suggestion(key, parser)
        said = f"did you mean {close}? " if close else ""
        return _elsewhere(key, parser) or f"{said}{_help_command(parser)} lists the options"
    choice = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
    if choice:
        names = re.findall(r"'([^']*)'", choice.group(2))
        close = difflib.get_close_matches(choice.group(1), names, n=1)
        if close:
            return f"did you mean {close[0]}?"
    if re.search(r'"subcommand" .* but it was not provided', message):
        prog = _prog_words(parser)[0]
        return f"name one first, e.g. {prog} fit --config CONFIG.yaml ({prog} --help lists them)"
    missing = re.search(r"\"config\": File does not exist: '(.+)'", message)
    if missing:
        close = _config_suggestion(missing.group(1))
        return f"did you mean {close}?" if close else "check the path of --config"
    literal = re.search(r"Expected a typing\.Literal(\[.*?\])\. Got value: (\S+)", message)
    if literal:
        try:
            choices = [str(c) for c in ast.literal_eval(literal.group(1))]
        except (ValueError, SyntaxError):
            choices = []
        close = difflib.get_close_matches(literal.group(2), choices, n=1)
        if close:
            return f"did you mean {close[0]}?"
    return f"{_help_command(parser)} lists the options and their types"


def typed_value(argv: Sequence[str], *flags: str) -> str | None:
    """The value last given on the command line ``argv`` to any of ``flags`` (``--flag V`` or
    ``--flag=V``); None where none was typed."""
    value = None
    for i, arg in enumerate(argv):
        name, eq, given = arg.partition("=")
        if name in flags and (eq or i + 1 < len(argv)):
            value = given if eq else argv[i + 1]
    return value


def _say_test_views_in_validate(argv: Sequence[str]) -> None:
    """A warning for ``validate --data.num_clips 10 --data.num_crops 3``: validation scores one
    centre clip per video (the val loop of a fit), so the numbers are not the multi-view result
    the views typed suggest; that is ``test``'s. Only views typed on the command line and above
    one (a --config file, or one argument list shared by every subcommand, sets them for the
    test they also serve); a warning, not a stop, for that shared list."""
    typed = {f: typed_value(argv, f) for f in ("--data.num_clips", "--data.num_crops")}
    typed = {f: v for f, v in typed.items() if v is not None and v.strip() not in ("1", "")}
    if typed:
        given = " ".join(f"{f} {v}" for f, v in typed.items())
        rank_zero_warn(
            f"a2video validate: {given} not used: validate scores one centre clip per video (as "
            "a fit's validation does); the num_clips x num_crops views are test's: run test with "
            "the same arguments for the multi-view result (its split is --data.test_split)"
        )


class A2VideoArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors are one line: ``<prog>: error: <what>; <fix>`` and
    exit code 2, as every a2video user error, in place of the usage text (over a hundred lines)
    followed by the message. The fix names the option meant for a mistyped one (difflib over
    this parser's options). ``--help`` is unchanged; a parser that does not exit on errors
    (``exit_on_error=False``) raises as before, and ``A2VIDEO_DEBUG=1`` prints jsonargparse's
    usage text and message as before."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: argparse took `train.py fit --ckpt X` (finetune_ucf.py's option: start
        # from these weights) as --ckpt_path X, a resume of that run.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug_enabled():
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        text = _one_line(message).rstrip(".")
        said = _unaccepted_option(text) or f"{text}; {_parser_fix(text, parser)}"
        exit_with_user_error(said, prog=_prog_words(self)[0])


def _config_name(log_dir: str, stage: str) -> str:
    """The file a ``stage`` command's config goes to in ``log_dir``: ``config.yaml``, unless an
    earlier command wrote one there: then the first free ``<stage>-config[-N].yaml``."""
    if not os.path.exists(os.path.join(log_dir, "config.yaml")):
        return "config.yaml"
    name, n = f"{stage}-config.yaml", 1
    while os.path.exists(os.path.join(log_dir, name)):
        name, n = f"{stage}-config-{n}.yaml", n + 1
    return name


def _keep_earlier_config(path: str, earlier: bytes) -> str | None:
    """Keep ``earlier`` (the ``config.yaml`` a resumed fit wrote over at ``path``) as the first
    free ``config-before-resume[-N].yaml`` beside it, unless the new one says the same."""
    if Path(path).read_bytes() == earlier:
        return None
    folder = os.path.dirname(path)
    name, n = "config-before-resume.yaml", 1
    while os.path.exists(os.path.join(folder, name)):
        name, n = f"config-before-resume-{n}.yaml", n + 1
    with replaced_atomically(os.path.join(folder, name)) as tmp:
        tmp.write_bytes(earlier)
    return name


class SaveRunConfig(SaveConfigCallback):
    """Lightning's ``config.yaml`` in the run folder. A validate, test or predict into a folder
    that already holds one (no logger, or one without versions) writes ``<stage>-config.yaml``
    beside it (its outputs go to ``test-1/``… there), so the fit's record of its settings is
    kept; before, ``train.py test --trainer.logger false`` replaced it with the test's settings.
    A resumed fit (it continues its run's folder) writes ``config.yaml`` with its own settings
    and, where they differ (a longer ``max_epochs`` …), keeps the earlier file as
    ``config-before-resume.yaml`` (then ``-1``…): no settings a run trained with are lost."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        stage = str(getattr(stage, "value", stage))  # TrainerFn: "fit", "test" …
        if self.already_saved or not self.save_to_log_dir:
            return super().setup(trainer, pl_module, stage)
        log_dir = trainer.log_dir  # on every rank: it broadcasts
        if stage != "fit":
            name = _config_name(log_dir, stage) if trainer.is_global_zero and log_dir else None
            self.config_filename = trainer.strategy.broadcast(name, src=0) or "config.yaml"
            if self.config_filename != "config.yaml":
                rank_zero_info(
                    f"a2video: {os.path.join(log_dir, 'config.yaml')} holds an earlier "
                    f"command's settings: this {stage}'s are in {self.config_filename} beside it"
                )
        path = os.path.join(log_dir or "", self.config_filename)
        earlier = None
        if stage == "fit" and trainer.is_global_zero and log_dir and os.path.isfile(path):
            earlier = Path(path).read_bytes()
        super().setup(trainer, pl_module, stage)
        if earlier is not None and (kept := _keep_earlier_config(path, earlier)):
            rank_zero_info(
                f"a2video: this resumed fit's settings differ from those in {path}: they are "
                f"written there, and the earlier ones kept in {kept} beside it"
            )


_NO_VAL_TOP1_YET = re.escape(
    "`ModelCheckpoint(monitor='val/top1')` could not find the monitored key"
)


# Lightning's refusal of a val_check_interval (in batches) above the epoch's batch count
_VAL_CHECK_TOO_LONG = re.compile(
    r"`val_check_interval` \((\d+)\) must be less than or equal to the number of the training "
    r"batches \((\d+)\)"
)


def _run_folders(trainer: Any, versions: bool = False) -> list[str]:
    """The folders a command of ``trainer`` writes into as it starts: its loggers' and
    ``default_root_dir`` (a run without a logger writes there). Read locally: no broadcast.

    Args:
        trainer: the command's Trainer.
        versions: False: the loggers' folders ``version_N`` is made in
            (``<save_dir>/lightning_logs``; loggers without one left out), to take stock of
            before the command; True: the ``version_N`` themselves (``save_dir`` of loggers
            without one), where it wrote its start-up files (config, hparams, class names).
    """
    if versions:
        folders = [
            getattr(logger, "log_dir", None) or logger.save_dir for logger in trainer.loggers
        ]
    else:
        folders = [getattr(logger, "root_dir", None) for logger in trainer.loggers]
    return [str(f) for f in folders if f] + [str(trainer.default_root_dir)]


def _refuse_fewer_epochs(ckpt_path: str, ckpt: dict[str, Any], config: Any) -> None:
    """One line, before anything runs, for ``fit --ckpt_path`` of a checkpoint written after
    more epochs than ``--trainer.max_epochs`` (Lightning's own check stopped the fit with a
    MisconfigurationException traceback, after the processes had started)."""
    epoch, max_epochs = ckpt.get("epoch"), config.trainer.get("max_epochs")
    if not isinstance(epoch, int) or max_epochs in (None, -1) or epoch <= int(max_epochs):
        return
    raise CheckpointError(
        f"{ckpt_path}: it was written in epoch {epoch} (from 0), past --trainer.max_epochs "
        f"{max_epochs}, so fit has nothing left to train; give --trainer.max_epochs above "
        f"{epoch} to train on (the schedule follows it), or evaluate it with test --ckpt_path "
        f"{ckpt_path}"
    )


def _val_check_interval_error(err: ValueError) -> ValueError | None:
    """One line naming the options for Lightning's "`val_check_interval` (N) must be less than
    or equal to the number of the training batches (M)", which ended the fit in a traceback
    from inside its loop; None for any other error."""
    found = _VAL_CHECK_TOO_LONG.search(str(err))
    if found is None:
        return None
    asked, batches = found.groups()
    return ValueError(
        f"--trainer.val_check_interval {asked}: an epoch has {batches} training batches, so no "
        f"validation would run inside it; give at most {batches}, a fraction of the epoch (e.g. "
        "0.5), or add --trainer.check_val_every_n_epoch null to count batches across epochs"
    )


class A2VideoCLI(LightningCLI):
    """LightningCLI with a2video's checkpoint, logging and data-link defaults.

    Args:
        model_class: the LightningModule (``VideoClassifier``).
        datamodule_class: the DataModule (``KineticsDataModule``, ``UCF101DataModule``).
        **kwargs: passed to :class:`LightningCLI`.
    """

    # Top-level options that a subclass links into a group at parse time (FinetuneCLI: --ckpt
    # and --unsafe_load): the explicit re-parse of :meth:`_given_model_options` (no defaults)
    # is handed their values, or jsonargparse cannot apply the links there.
    parse_link_sources: ClassVar[tuple[str, ...]] = ()
    # How this entry point starts a new fit from a checkpoint's weights only (named when
    # ``fit --ckpt_path`` gets a file without training state): the Finetune callback's loader.
    weights_option: ClassVar[str] = (
        "--trainer.callbacks+=a2video.training.finetune.Finetune "
        "--trainer.callbacks.pretrained {path} --trainer.callbacks.reset_head false "
        "(not --ckpt_path)"
    )

    # How this entry point takes a checkpoint (named when one is given as --config FILE)
    checkpoint_option: ClassVar[str] = "--ckpt_path {path} (to resume, test or predict with it)"

    # How this entry point starts a new fit from a checkpoint's weights with a new head (named
    # when ``fit --ckpt_path`` gets a checkpoint of other classes than the data's)
    new_head_option: ClassVar[str] = (
        "pass --trainer.callbacks+=a2video.training.finetune.Finetune "
        "--trainer.callbacks.pretrained {path} (not --ckpt_path)"
    )

    def __init__(self, model_class: Any = None, datamodule_class: Any = None, **kwargs: Any):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("parser_class", A2VideoArgumentParser)  # errors in one line
        # A fit that stops before its first validation (max_steps, a SIGTERM) has no val/top1
        # yet: Lightning's "could not find the monitored key ... Did you call log(...)?" is not
        # true of this default monitor (after a validation a missing key still raises).
        warnings.filterwarnings("ignore", message=_NO_VAL_TOP1_YET)
        super().__init__(model_class, datamodule_class, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--unsafe_load",
            type=bool,
            default=False,
            help="Accept checkpoints holding pickled Python objects (only for trusted files).",
        )
        parser.add_argument(
            "--collective_timeout",
            type=float,
            default=DEFAULT_COLLECTIVE_TIMEOUT_S,
            help="Seconds a collective (broadcast, barrier, all-reduce) may wait for the other "
            "ranks before the run stops with an error naming the stage (multi-process runs).",
        )
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/top1",
                "checkpoint.mode": "max",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": False,
                "checkpoint.filename": "best-epoch{epoch:03d}-step{step:07d}",
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "step_checkpoint")
        parser.set_defaults({"step_checkpoint.every_n_train_steps": 500})
        parser.set_defaults({"trainer.use_distributed_sampler": False})
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.spec", "model.clip_spec", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._args = (
            list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else None
        )
        _refuse_data_derived_model_options(self._args or [], self.checkpoint_option)
        # With --ckpt_path, --print_config waits for the checkpoint's options (arch …), which
        # apply after parsing: printed at parse time it showed values the run does not use.
        self._print_config = None
        if self._args is not None and any(a.startswith("--ckpt_path") for a in self._args):
            printing = [a for a in self._args if a.split("=", 1)[0] == "--print_config"]
            if printing and all("=" not in a for a in printing):
                self._print_config = printing[0]
                args = self._args = [a for a in self._args if a not in printing]
        with warnings.catch_warnings():
            if self._print_config:  # the command line less --print_config, given as args
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, args)

    def _given_model_options(self) -> set[str]:
        """The model options the user set (command line or YAML), not left at their default."""
        subcommand = self.config.get("subcommand")
        explicit = None
        if self._args is not None:  # not for args given as a dict: fall back on the defaults
            config = self.config[subcommand]
            links = [f"--{key}={_cli_value(config.get(key))}" for key in self.parse_link_sources]
            parsers = [self.parser, self._parser(subcommand)]
            exits = [p.exit_on_error for p in parsers]
            try:  # a failure here falls back quietly: no usage text on the user's terminal
                for p in parsers:
                    p.exit_on_error = False
                explicit = self.parser.parse_args(self._args + links, defaults=False)
            except (SystemExit, Exception):
                explicit = None
            finally:
                for p, value in zip(parsers, exits, strict=True):
                    p.exit_on_error = value
        model = explicit.get(subcommand, {}).get("model") if explicit is not None else None
        if model is not None:
            return set(dict(model))
        given = dict(self.config[subcommand].get("model") or {})
        defaults = dict(self._parser(subcommand).get_defaults().get("model") or {})
        return {k for k, v in given.items() if not same_option(k, v, defaults.get(k))}

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` early and apply its saved hyper-parameters below the user's;
        then a ``--print_config`` held back by :meth:`parse_arguments` prints the result."""
        self._apply_ckpt_path()
        if getattr(self, "_print_config", None):
            subcommand = self.config.get("subcommand")
            config = self.config[subcommand] if subcommand else self.config
            parser = self._parser(subcommand) if subcommand else self.parser
            print(parser.dump(config, skip_none=False, skip_check=True), end="")
            sys.exit(0)

    def _apply_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        self._saved_hparams: dict[str, Any] = {}
        self._saved_weights: set[str] | None = None
        self._saved_clip_spec: dict[str, Any] | None = None  # the clips it was trained on
        self._saved_data: dict[str, Any] = {}  # its DataModule's arguments (UCF-101's fold)
        self._saved_transfer: dict[str, Any] | None = None  # the Finetune callback's report
        self._saved_logs: dict[str, Any] = {}  # its loggers' versions and step (ResumeLogs)
        if str(ckpt_path) in ("last", "best"):
            ckpt_path = config.ckpt_path = self._run_checkpoint(config, subcommand, ckpt_path)
        if not ckpt_path and subcommand in _EVALUATION:
            raise CheckpointError(
                f"{subcommand} evaluates trained weights and no --ckpt_path was given: pass "
                "--ckpt_path FILE, or best / last of the run in --trainer.default_root_dir."
            )
        if not ckpt_path or str(ckpt_path) in _SPECIAL_CKPT:
            return
        if os.path.isdir(str(ckpt_path)):
            raise CheckpointError(not_a_file(str(ckpt_path)))
        if not os.path.isfile(str(ckpt_path)):
            raise CheckpointError(
                f"{ckpt_path}: no such checkpoint file; check the path, or pass --ckpt_path last "
                "/ best for the run in --trainer.default_root_dir."
            )
        ckpt = load_checkpoint(ckpt_path, unsafe=bool(config.get("unsafe_load")))
        if "state_dict" not in ckpt or "pytorch-lightning_version" not in ckpt:
            # a bare state dict (PySlowFast's init file): fit starts a new run from its weights
            start = self.weights_option.format(path=ckpt_path) if subcommand == "fit" else ""
            raise CheckpointError(
                f"{ckpt_path}: not a Lightning checkpoint (no state_dict / "
                "pytorch-lightning_version); pass a .ckpt written by train.py or finetune_ucf.py"
                + (f", or start a new run from the weights it holds with {start}" if start else "")
                + "."
            )
        if subcommand == "fit":
            self._check_training_state(str(ckpt_path), ckpt)
            _refuse_fewer_epochs(str(ckpt_path), ckpt, config)
        saved = saved_model_options(ckpt)
        self._saved_hparams = saved
        self._saved_weights = set(ckpt["state_dict"])
        self._saved_clip_spec = (ckpt.get("a2video") or {}).get("clip_spec")
        self._saved_data = dict(ckpt.get("datamodule_hyper_parameters") or {})
        self._saved_transfer = (ckpt.get("a2video") or {}).get("transfer")
        self._saved_logs = {k: ckpt[k] for k in (LOGS_KEY, "global_step") if k in ckpt}
        model = config.get("model")
        if model is None or "class_path" in model:
            return
        model = dict(model)
        given = {k: model[k] for k in self._given_model_options() if k in model}
        # given on the command line or in a --config file (as the shipped configs set model.arch)
        option = "--model.{key} (command line and --config files)"
        taken = options_from_checkpoint(str(ckpt_path), saved, model, given, option=option)
        # (what the config says already stays as written: arch_options null is the saved {})
        taken = {k: v for k, v in taken.items() if not same_option(k, model.get(k), v)}
        if taken:
            self.config = self.parser.parse_object({subcommand: {"model": taken}}, self.config)

    def _check_training_state(self, ckpt_path: str, ckpt: dict[str, Any]) -> None:
        """One line, before Lightning restores anything, when ``fit --ckpt_path`` names a file
        without the optimizer / LR-scheduler state a resume needs (``save_weights_only=True``)."""
        missing = [key for key in _TRAINING_STATE if key not in ckpt]
        if missing:
            fix = self.weights_option.format(path=ckpt_path)
            raise CheckpointError(
                f"{ckpt_path}: it holds weights but no training state (no {' / '.join(missing)}: "
                "written with save_weights_only=True?), so fit cannot resume from it; start a new "
                f"run from its weights with {fix}"
            )

    def _run_checkpoint(self, config: Any, subcommand: str, which: str) -> str | None:
        """``--ckpt_path last`` / ``best`` as the file they name in this run's checkpoint folder.

        None where ``fit`` has no ``last.ckpt`` yet (a new run starts: the same command starts
        and resumes a job); anything else missing is an error, not an evaluation of untrained
        weights or a fresh fit over the run's other checkpoints.
        """
        found, how = None, ""
        if which == "best":  # ranked by the monitor the run recorded (the command's: fallback)
            dirpath = _checkpoint_dir(config, "checkpoint")
            watch = config.get("checkpoint") or {}
            best = find_best_checkpoint(
                dirpath,
                monitor=watch.get("monitor"),
                mode=watch.get("mode") or "max",
                unsafe=bool(config.get("unsafe_load")),
            )
            if best is not None:
                found, how = best.path, f" ({best.how})"
        else:  # LastCheckpoint's folder, or the best's where SaveOnSigterm writes: the newer
            dirpath = _checkpoint_dir(config, "step_checkpoint")
            folders = (dirpath, _checkpoint_dir(config, "checkpoint"))
            candidates = [find_run_checkpoint("last", folder) for folder in folders]
            found = max((c for c in candidates if c), key=os.path.getmtime, default=None)
        if found is not None:
            rank_zero_info(f"a2video: --ckpt_path {which}: {found}{how}")
            return str(found)
        if subcommand == "fit" and which == "last":
            rank_zero_info(f"a2video: no last.ckpt in {dirpath} yet: this fit starts the run")
            return None
        raise CheckpointError(
            f"{dirpath}: no {which} checkpoint here for --ckpt_path {which}; pass the run's "
            "folder with --trainer.default_root_dir, or the file with --ckpt_path FILE."
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        config.trainer.default_root_dir = run_root(config)
        # <root>/checkpoints for the callbacks; left out of the saved config again once they are
        # made (after_instantiate_classes), so a run's config.yaml reused with another
        # --trainer.default_root_dir writes there, not into the old run's checkpoint folder
        self._derived_dirpaths = []
        for key in ("checkpoint", "step_checkpoint"):
            if config.get(key) is not None and not config[key].get("dirpath"):
                config[key].dirpath = _checkpoint_dir(config, key)
                self._derived_dirpaths.append(key)
        _seed_data_from_run(config)
        _move_logs_with_the_root(config, self._args or [])
        if self.subcommand == "validate":
            _say_test_views_in_validate(self._args or [])
        if self.subcommand == "fit":
            _refuse_lightning_optimizers(config)
            self._refuse_unused_sgd_options(config)
            self._refuse_unused_schedule_options(config)
            _refuse_sync_batchnorm_on_the_cpu(config)
        accumulate = config.trainer.get("accumulate_grad_batches")
        if accumulate is not None and int(accumulate) < 1:
            raise ValueError(
                f"--trainer.accumulate_grad_batches {accumulate}: it must be >= 1 (the batches "
                "whose gradients make one optimizer step)"
            )
        fast_dev_run = config.trainer.get("fast_dev_run")  # Lightning saves nothing then
        ckpt_path = config.get("ckpt_path")
        if self.subcommand == "fit" and not fast_dev_run:
            if not ckpt_path:
                _refuse_to_replace_checkpoints(config)
            elif str(ckpt_path) not in _SPECIAL_CKPT:
                _refuse_to_replace_checkpoints(config, resuming=str(ckpt_path))
        if (
            _mentions(config.trainer.get("logger"), "WandbLogger")
            and "WANDB_MODE" not in os.environ
        ) and not wandb_logged_in():
            os.environ["WANDB_MODE"] = "offline"
            rank_zero_info("a2video: W&B runs offline (not logged in); `wandb sync` later")

    def _unused_beside(self, config: Any, key: str, options: Sequence[str]) -> tuple | None:
        """``(model config, class path of model.<key>, the options of ``options`` set to other
        than their defaults, the defaults)`` where ``model.<key>`` is given (an injected object
        that takes over what those options configure), else None.

        Only a value other than the default counts: a run's saved config.yaml lists every
        option, the defaults of the unused ones included, and must be reusable as it is."""
        model = config.get("model")
        injected = model.get(key) if model is not None else None
        if not injected:
            return None
        defaults = dict(self._parser(self.subcommand).get_defaults().get("model") or {})
        set_options = self._given_model_options()
        unused = [
            k for k in options
            if k in set_options and not same_option(k, model.get(k), defaults.get(k))
        ]  # fmt: skip
        if not unused:
            return None
        name = injected.get("class_path") if hasattr(injected, "get") else injected
        return model, name, unused, defaults

    def _refuse_unused_sgd_options(self, config: Any) -> None:
        """One line when ``model.lr`` / ``momentum`` / ``weight_decay`` / ``nesterov`` are set to
        other than their defaults beside ``model.optimizer``: they configure the built-in SGD
        only, and an injected optimizer takes its own ``init_args``, so they would not be used."""
        found = self._unused_beside(config, "optimizer", SGD_OPTIONS)
        if found is None:
            return
        model, name, unused, _ = found
        given = ", ".join(f"model.{k} {_cli_value(_plain(model.get(k)))}" for k in unused)
        fix = " ".join(f"--model.optimizer.init_args.{k} {_cli_value(_plain(model.get(k)))}"
                       for k in unused if k != "nesterov")  # fmt: skip
        raise ValueError(
            f"{given}: not used, model.optimizer {name} takes its own settings; set "
            f"{fix or 'them in model.optimizer.init_args'} and leave "
            f"{', '.join('model.' + k for k in unused)} out of the command line and --config "
            "files (model.lr, momentum, weight_decay and nesterov are the built-in SGD's)"
        )

    def _refuse_unused_schedule_options(self, config: Any) -> None:
        """One line when the built-in schedule's options (``model.scheduler``, ``warmup_epochs``,
        ``milestones``, ``gamma``, ``min_lr_ratio``) are set to other than their defaults beside
        ``model.lr_scheduler``, which replaces that schedule: they would not be used."""
        found = self._unused_beside(config, "lr_scheduler", SCHEDULE_OPTIONS)
        if found is None:
            return
        model, name, unused, defaults = found
        given = ", ".join(f"model.{k} {_cli_value(_plain(model.get(k)))}" for k in unused)
        reset = " ".join(f"--model.{k} {_cli_value(_plain(defaults.get(k)))}" for k in unused)
        raise ValueError(
            f"{given}: not used, model.lr_scheduler {name} replaces the built-in schedule; set "
            "its settings in model.lr_scheduler.init_args and leave "
            f"{', '.join('model.' + k for k in unused)} out of the command line and --config "
            f"files (or give their defaults: {reset})"
        )

    def _run_subcommand(self, subcommand: str) -> None:
        snapshot = folder_snapshot(_run_folders(self.trainer))
        try:
            super()._run_subcommand(subcommand)
        except ValueError as err:
            said = _val_check_interval_error(err)
            self._forget_failed_start(subcommand, snapshot)
            if said is None:
                raise
            raise said from err
        except BaseException:
            self._forget_failed_start(subcommand, snapshot)
            raise

    def _forget_failed_start(self, subcommand: str, snapshot: FolderSnapshot) -> None:
        """A command that failed before its first training batch (and logged nothing) leaves no
        run folder: ``lightning_logs/version_N`` and a run folder it created, with only its
        config, hparams.yaml, class_names.txt … in them, are removed (rank 0), so the next
        attempt is version_N again. Before, each failed start left one behind."""
        trainer = self.trainer
        progress = trainer.fit_loop.epoch_loop.batch_progress.total.ready
        if progress or trainer.logged_metrics or not trainer.is_global_zero:
            return
        removed = remove_failed_start(snapshot, _run_folders(trainer, versions=True))
        tops = [p for p in removed if os.path.dirname(p) not in removed]  # the outermost ones
        if tops:
            rank_zero_info(
                f"a2video: the {subcommand} stopped before its first batch; removed what it had "
                f"created: {', '.join(tops)}"
            )

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            callbacks.append(VersionedRichProgressBar())
        # (logger unset, None: Lightning's default TensorBoard logger, which logs the LR too)
        if config.get("logger") not in (False, []) and not any(
            isinstance(c, LearningRateMonitor) for c in callbacks
        ):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        if not any(isinstance(c, SaveOnSigterm) for c in callbacks):
            callbacks.append(SaveOnSigterm())
        if not any(isinstance(c, ResumeState) for c in callbacks):
            callbacks.append(ResumeState())
        if not any(isinstance(c, ResumeLogs) for c in callbacks):
            callbacks.append(ResumeLogs())
        if not any(isinstance(c, CollectiveWatchdog) for c in callbacks):
            timeout = self._get(self.config_init, "collective_timeout", default=None)
            # First: its setup sets the timeout before the other callbacks' setup collectives.
            callbacks.insert(
                0,
                CollectiveWatchdog(
                    DEFAULT_COLLECTIVE_TIMEOUT_S if timeout is None else float(timeout)
                ),
            )
        kwargs.setdefault("callbacks", callbacks)

        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            unsafe = bool(self._get(self.config_init, "unsafe_load", default=False))
            plugins.append(AtomicCheckpointIO(unsafe_load=unsafe))
        kwargs.setdefault("plugins", plugins)
        return super().instantiate_trainer(**kwargs)

    def _check_saved_weights(self, ckpt_path: Any) -> None:
        """One line, before any run, when ``--ckpt_path``'s weights do not fit the model."""
        saved = getattr(self, "_saved_weights", None)
        if saved is None or not hasattr(self.model, "state_dict"):
            return
        wanted = set(self.model.state_dict())
        missing, unexpected = sorted(wanted - saved), sorted(saved - wanted)
        if missing:
            extra = f", {len(unexpected)} unexpected" if unexpected else ""
            raise ValueError(
                f"{ckpt_path}: its weights do not fit the model ({len(missing)} of "
                f"{len(wanted)} missing, e.g. {missing[0]}{extra}); pass a checkpoint of this "
                "architecture (train.py / finetune_ucf.py writes them)."
            )

    def _check_saved_classes(self, ckpt_path: Any) -> None:
        """One line when ``--ckpt_path``'s class list is not the data's (same count, other names
        or order): its outputs would be scored and trained against other classes."""
        saved = getattr(self, "_saved_hparams", {}).get("class_names")
        given = getattr(self.model, "class_names", None)
        if not saved or not given or list(saved) == list(given) or len(saved) != len(given):
            return
        differ = [i for i, (a, b) in enumerate(zip(saved, given, strict=True)) if a != b]
        i = differ[0]
        raise ValueError(
            f"{ckpt_path}: the checkpoint's classes are not the data's ({len(differ)} of "
            f"{len(saved)} differ, e.g. class {i} is {saved[i]!r} there and {given[i]!r} here); "
            "pass the dataset (or annotation_dir) it was trained on" + self._or_new_head(ckpt_path)
        )

    def _or_new_head(self, ckpt_path: Any) -> str:
        """The end of a class-mismatch message: for ``fit``, how to start a new run from the
        checkpoint's weights with a head for these classes instead of resuming it."""
        if self.subcommand != "fit":
            return "."
        option = self.new_head_option.format(path=ckpt_path)
        return f", or, to start a new fit from its weights with a new head, {option}."

    def _say_clip_differences(self, ckpt_path: Any) -> None:
        """A warning naming each clip setting (``--data.*``) that differs from the clips
        ``--ckpt_path``'s network was trained on, and the flags that restore them."""
        saved = getattr(self, "_saved_clip_spec", None)
        spec = getattr(self.datamodule, "spec", None)
        if not saved or spec is None:
            return
        keys = _CLIP_KEYS_FIT if self.subcommand == "fit" else _CLIP_KEYS_EVAL
        now = spec.as_dict()
        differ = [k for k in keys if k in saved and _plain(saved[k]) != _plain(now.get(k))]
        if not differ:
            return
        was = ", ".join(f"{k}={_plain(saved[k])}" for k in differ)
        used = ", ".join(f"{k}={_plain(now[k])}" for k in differ)
        flags = " ".join(f"--data.{k} {_cli_value(_plain(saved[k]))}" for k in differ)
        rank_zero_warn(
            f"a2video: {ckpt_path} was trained on clips with {was}; this {self.subcommand} uses "
            f"{used} (as configured); {flags} gives it the clips it was trained on."
        )

    def _check_clip_size(self) -> None:
        """One line, before any run, when ``data.frames`` × ``data.crop_size``² clips are too
        small for the model's arch (its strides and pooling leave nothing: a traceback deep in
        torch at the first batch otherwise)."""
        arch = getattr(self.model, "arch", None)
        spec = getattr(self.datamodule, "spec", None)
        if not isinstance(arch, str) or spec is None:
            return
        check_clip_size(
            arch,
            spec.frames,
            spec.crop_size,
            flags=("--data.frames", "--data.crop_size"),
            num_classes=self.model.num_classes,
            **(getattr(self.model, "arch_options", None) or {}),
        )

    def after_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        saved = getattr(self, "_saved_hparams", {}).get("num_classes")
        given = getattr(self.model, "num_classes", None)
        if saved is not None and given is not None and int(saved) != int(given):
            raise ValueError(
                f"{config.get('ckpt_path')}: the checkpoint's num_classes is {saved} but the data "
                f"has {given} classes; pass the dataset (or annotation_dir) it was trained on"
                + self._or_new_head(config.get("ckpt_path"))
            )
        self._check_saved_weights(config.get("ckpt_path"))
        self._check_saved_classes(config.get("ckpt_path"))
        self._say_clip_differences(config.get("ckpt_path"))
        self._check_clip_size()
        if hasattr(self.model, "unsafe_load"):  # model.pretrained_2d, loaded when a fit starts
            self.model.unsafe_load = bool(config.get("unsafe_load"))
        if self.subcommand == "fit" and config.get("ckpt_path"):  # a resumed fine-tune's record
            for callback in getattr(self.trainer, "callbacks", ()):
                if hasattr(callback, "resume_transfer"):  # a2video.training.finetune.Finetune
                    callback.resume_transfer(str(config.ckpt_path), self._saved_transfer)
            resume_logs(self.trainer, getattr(self, "_saved_logs", {}))  # the same log folders
        share_version(self.trainer)  # one version_N for the run's loggers
        for key in getattr(self, "_derived_dirpaths", ()):  # the callbacks hold it now
            config[key].dirpath = None
        if self.subcommand == "fit":
            # A resumed fit trains as the uninterrupted run would (docs/training.md): its
            # config.yaml reused starts that run, not a resume of the old run's last.ckpt, which
            # holds its final state by then (the fit already has the path: config_init)
            config.ckpt_path = None
        _absolute_paths(config)
        try:
            text = self._parser(self.subcommand).dump(config, skip_none=False, skip_check=True)
        except Exception as err:  # a config that cannot be dumped is not worth failing the run
            rank_zero_info(f"a2video: run config not stored in checkpoints ({err})")
            text = None
        if hasattr(self.model, "run_config"):
            self.model.run_config = text
