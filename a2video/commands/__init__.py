"""Subcommands of the ``a2video`` console script (see ``a2video.cli``)."""

from __future__ import annotations

import argparse


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt`` and ``--unsafe-load`` of the commands that read a trained checkpoint (loaded by
    :func:`a2video.explore.predict.load_predictor`; a refused or missing file ends in one line
    through :func:`a2video.errors.exit_on_user_error`)."""
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py / finetune")
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow pickled Python objects in the checkpoint (trusted files only)",
    )
