"""Running the ``a2video`` command in-process, as the console script does."""

from __future__ import annotations

from a2video.cli import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``a2video ARGV``: (exit status, stdout, stderr); a user error exits 2 with one line
    (:mod:`a2video.errors`)."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err
