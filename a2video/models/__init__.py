"""Models: A²-blocks, the non-local baseline, 3-D ResNets, inflation and weight import.

Knows nothing of data or Lightning (see docs/internals.md).
"""

from a2video.models.attention import DoubleAttention, NonLocal, association_cost, attention_blocks
from a2video.models.flops import a2_block_cost, count_arch_flops, count_flops
from a2video.models.inflate import convert_pytorchvideo_state_dict, inflate_weight
from a2video.models.registry import build_model, check_clip_size, list_models, register_model
from a2video.models.resnet3d import Bottleneck3d, VideoResNet
from a2video.models.weights import (
    LoadReport,
    WeightsError,
    filter_a2video,
    filter_imagenet,
    filter_pytorchvideo,
    load_weights,
)

__all__ = [
    "Bottleneck3d",
    "DoubleAttention",
    "LoadReport",
    "NonLocal",
    "VideoResNet",
    "WeightsError",
    "a2_block_cost",
    "association_cost",
    "attention_blocks",
    "build_model",
    "check_clip_size",
    "convert_pytorchvideo_state_dict",
    "count_arch_flops",
    "count_flops",
    "filter_a2video",
    "filter_imagenet",
    "filter_pytorchvideo",
    "inflate_weight",
    "list_models",
    "load_weights",
    "register_model",
]
