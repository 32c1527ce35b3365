"""Kinetics pre-training: ``python train.py fit|validate|test|predict --config configs/….yaml``.

A thin LightningCLI entry point (the logic is in ``a2video``); see docs/training.md.
"""

from a2video.data import KineticsDataModule
from a2video.training.cli import A2VideoCLI
from a2video.training.module import VideoClassifier


def main() -> None:
    A2VideoCLI(VideoClassifier, KineticsDataModule)


if __name__ == "__main__":
    main()
