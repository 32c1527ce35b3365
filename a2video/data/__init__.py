"""Data room: annotations, decoders, sampling, transforms, datasets, DataModules, synthetic data.

Knows nothing of models. See docs/data.md and docs/internals.md for the contracts. Names are
imported lazily so that ``a2video.data.video`` and the CLI do not pay for Lightning.
"""

import importlib

_EXPORTS = {
    "AnnotationError": "annotations",
    "VideoRecord": "annotations",
    "KineticsDataModule": "datamodules",
    "UCF101DataModule": "datamodules",
    "VideoDataModule": "datamodules",
    "BadVideoMonitor": "datasets",
    "ClipSpec": "datasets",
    "DataQualityError": "datasets",
    "ShardedSampler": "datasets",
    "VideoClipDataset": "datasets",
    "VideoDecodeError": "video",
    "available_decoders": "video",
    "get_decoder": "video",
    "synthesize": "synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
