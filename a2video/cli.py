"""The ``a2video`` console script.

Each subcommand lives in ``a2video/commands/<name>.py`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import torch and the
heavy parts of the package inside ``run`` so that ``a2video --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS: dict[str, str] = {
    "synth": "a2video.commands.synth",
    "check-data": "a2video.commands.check_data",
    "prepare": "a2video.commands.prepare",
    "flops": "a2video.commands.flops",
    "predict": "a2video.commands.predict",
    "export": "a2video.commands.export",
    "bench": "a2video.commands.bench",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2video", description="A²-Nets video action recognition toolkit."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:  # a command whose module is not written yet
            if err.name != module_name:
                raise
            continue
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from a2video.errors import debug_enabled, exit_on_user_error

    args = build_parser().parse_args(argv)
    with exit_on_user_error(f"a2video {args.command}", "--unsafe-load"):
        try:
            return int(args._run(args) or 0)
        except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for it
            if debug_enabled():
                raise
            print(f"a2video {args.command}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `a2video flops all --json | head`: the reader left, not an error
            if debug_enabled():
                raise
            _silence_stdout()
            return 141  # 128 + SIGPIPE, as a shell reports a command ended by it


def _silence_stdout() -> None:
    """Points stdout at /dev/null, so that the interpreter's final flush of what is left for a
    closed pipe does not print a second error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured in a test): nothing left to flush
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
