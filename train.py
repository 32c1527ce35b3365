"""Kinetics pre-training: ``python train.py fit|validate|test|predict --config configs/….yaml``.

A thin LightningCLI entry point (the logic is in ``a2video``); see docs/training.md. A user error
(bad path, annotation, checkpoint or value) ends with one message and exit code 2
(``A2VIDEO_DEBUG=1`` shows the traceback).
"""

from a2video.data import KineticsDataModule
from a2video.errors import exit_on_user_error
from a2video.training.cli import A2VideoCLI
from a2video.training.module import VideoClassifier


def main() -> None:
    with exit_on_user_error("train.py", "--unsafe_load true"):
        A2VideoCLI(VideoClassifier, KineticsDataModule)


if __name__ == "__main__":
    main()
