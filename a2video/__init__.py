"""a2video: video action recognition with A²-Nets (Chen et al., NeurIPS 2018) on Lightning."""

__version__ = "0.1.0"
