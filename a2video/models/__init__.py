"""Models: A²-blocks, the non-local baseline, 3-D ResNets, inflation and weight import."""

from a2video.models.attention import DoubleAttention, NonLocal, association_cost

__all__ = ["DoubleAttention", "NonLocal", "association_cost"]
