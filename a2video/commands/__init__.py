"""Subcommands of the ``a2video`` console script (see ``a2video.cli``)."""
