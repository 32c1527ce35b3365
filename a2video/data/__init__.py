"""Data room: annotations, decoders, sampling, transforms, datasets, DataModules, synthetic data.

Knows nothing of models. See docs/data.md and docs/internals.md for the contracts.
"""

from .annotations import AnnotationError, VideoRecord
from .datamodules import KineticsDataModule, UCF101DataModule, VideoDataModule
from .datasets import (
    BadVideoMonitor,
    ClipSpec,
    DataQualityError,
    ShardedSampler,
    VideoClipDataset,
)
from .video import VideoDecodeError, available_decoders, get_decoder

__all__ = [
    "AnnotationError",
    "BadVideoMonitor",
    "ClipSpec",
    "DataQualityError",
    "KineticsDataModule",
    "ShardedSampler",
    "UCF101DataModule",
    "VideoClipDataset",
    "VideoDataModule",
    "VideoDecodeError",
    "VideoRecord",
    "available_decoders",
    "get_decoder",
]
