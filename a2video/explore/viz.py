"""Plots for the notebooks: clips with their top-k scores, confusion matrices, accuracy against
the number of views, and the A²-blocks' attention maps drawn over the frames.

The attention maps are those of Chen et al., "A²-Nets: Double Attention Networks", NeurIPS 2018,
Section 2: the gather maps B = softmax_L(θ(X)) (Eq. 3-4, each a distribution over the T·H·W
positions) and the distribution weights V = softmax_n(ρ(X)) (Eq. 5, at each position a
distribution over the n global descriptors). :mod:`a2video.explore.attention_maps` captures them.

Every function draws on axes it is given or on a new figure, and returns the figure (or the axes
for single-panel plots) so that tests can read back what was drawn. Nothing here chooses a
backend: notebooks show the figures inline, tests use Agg.

This module is the one import for the figures (``from a2video.explore import viz``); each family
lives in its own module: ``figures_common`` (colours, frames, small helpers), ``figures_gallery``
(clips and their scores), ``figures_classes`` (confusion, per-class, class report and browser),
``figures_views`` (views and clip vs video) and ``figures_attention`` (A² maps).
"""

from a2video.explore.figures_attention import (
    plot_attention_maps,
    plot_descriptor_usage,
    upsample_maps,
)
from a2video.explore.figures_classes import (
    class_browser,
    class_report,
    confused_classes,
    plot_confused_pairs,
    plot_confusion_matrix,
    plot_per_class_accuracy,
)
from a2video.explore.figures_common import (
    CORRECT_COLOR,
    OTHER_COLOR,
    WRONG_COLOR,
    denormalize,
    frame_indices,
)
from a2video.explore.figures_gallery import clip_animation, plot_clip_topk, plot_mistake_gallery
from a2video.explore.figures_views import plot_accuracy_vs_views, plot_view_summary

__all__ = [
    "CORRECT_COLOR",
    "OTHER_COLOR",
    "WRONG_COLOR",
    "class_browser",
    "class_report",
    "clip_animation",
    "confused_classes",
    "denormalize",
    "frame_indices",
    "plot_accuracy_vs_views",
    "plot_attention_maps",
    "plot_clip_topk",
    "plot_confused_pairs",
    "plot_confusion_matrix",
    "plot_descriptor_usage",
    "plot_mistake_gallery",
    "plot_per_class_accuracy",
    "plot_view_summary",
    "upsample_maps",
]
