"""How every entry point ends on a user error: one message (file, what, fix), exit code 2.

``train.py``, ``finetune_ucf.py`` and the ``a2video`` commands run inside
:func:`exit_on_user_error`: a bad data root, a missing annotation folder, a bad or untrusted
checkpoint, a bad config value print ``<prog>: error: <message>`` and exit with status 2, without a
traceback. ``A2VIDEO_DEBUG=1`` in the environment lets the exception through with its traceback.

A user error is one of a2video's own error types (a diverged run's included), an ``OSError``
naming a file, or a ``ValueError``/``OSError`` raised by a2video's own code (its checks of paths
and values); anything raised deeper (a library bug) keeps its traceback. This module imports
nothing heavy, so ``a2video --help`` stays instant.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

__all__ = [
    "DEBUG_ENV",
    "debug_enabled",
    "exit_on_user_error",
    "exit_with_user_error",
    "is_user_error",
    "running_entry_point",
    "unsafe_flag",
    "unsafe_flag_as",
]

DEBUG_ENV = "A2VIDEO_DEBUG"
_PACKAGE = Path(__file__).resolve().parent
_UNSAFE_FLAG = ["--unsafe_load true"]  # the LightningCLI entry points' spelling
_PROG: list[str | None] = [None]  # the running entry point's name (exit_on_user_error's prog)
# a2video's error types whose message names the file or setting and the fix (the last: a run
# whose loss stayed non-finite past max_nonfinite_steps; it says what to lower or enable)
_USER_ERRORS = {
    "CheckpointError",
    "DataQualityError",
    "AnnotationError",
    "WeightsError",
    "NonFiniteLossError",
}


def unsafe_flag() -> str:
    """The option the running entry point accepts to load a pickled (trusted) checkpoint."""
    return _UNSAFE_FLAG[0]


@contextmanager
def unsafe_flag_as(flag: str) -> Iterator[None]:
    """Refusals of pickled files inside name ``flag``: for a load the entry point's own trust
    flag does not reach (weights read while the model is built, before the flag is)."""
    saved = _UNSAFE_FLAG[0]
    _UNSAFE_FLAG[0] = flag
    try:
        yield
    finally:
        _UNSAFE_FLAG[0] = saved


def debug_enabled() -> bool:
    """Whether ``A2VIDEO_DEBUG`` asks for tracebacks (any value but empty, 0, false, no)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _raised_by_a2video(err: BaseException) -> bool:
    tb = err.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return False
    try:
        return Path(last.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


def is_user_error(err: BaseException) -> bool:
    """An error whose message is meant for the user (see the module docstring)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    if names & _USER_ERRORS:
        return True
    if isinstance(err, OSError) and getattr(err, "filename", None):
        return True  # "[Errno 2] No such file or directory: '<path>'" names the file
    return isinstance(err, (ValueError, OSError)) and _raised_by_a2video(err)


def running_entry_point() -> str | None:
    """The name of the entry point running :func:`exit_on_user_error` (``train.py`` …), if any."""
    return _PROG[0]


def exit_with_user_error(message: str, prog: str | None = None) -> NoReturn:
    """Print ``<prog>: error: <message>`` on one line and exit with status 2, where raising would
    not reach :func:`exit_on_user_error` (a command-line parser's error hook, whose callers may
    catch exceptions). ``prog``: the running entry point's name, else this one, else
    ``sys.argv[0]``'s."""
    prog = _PROG[0] or prog or os.path.basename(sys.argv[0]) or "a2video"
    message = " ".join(line.strip() for line in message.splitlines() if line.strip()) or "error"
    _print_error(prog, message)
    raise SystemExit(2)


def _print_error(prog: str, message: str) -> None:
    """``<prog>: error: <message>`` on stderr, in one write: processes of a multi-process run
    that stop together do not interleave."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()


@contextmanager
def exit_on_user_error(prog: str, flag: str | None = None) -> Iterator[None]:
    """Run the body; a user error prints ``<prog>: error: <message>`` and exits with status 2.

    Args:
        prog: the entry point's name, e.g. ``train.py`` or ``a2video predict``.
        flag: the option this entry point accepts to trust a pickled checkpoint (named by the
            refusal message); default ``--unsafe_load true``.
    """
    saved, saved_prog = _UNSAFE_FLAG[0], _PROG[0]
    if flag is not None:
        _UNSAFE_FLAG[0] = flag
    _PROG[0] = prog
    try:
        yield
    except Exception as err:
        if debug_enabled() or not is_user_error(err):
            raise
        _print_error(prog, str(err).strip() or type(err).__name__)
        raise SystemExit(2) from None
    finally:
        # the next entry point in this process names its own flag and name
        _UNSAFE_FLAG[0], _PROG[0] = saved, saved_prog
