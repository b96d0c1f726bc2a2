"""Drawing what a model does: visualizers in mmext's scope and the embedding-trajectory maths.

Core only (mmengine, matplotlib, numpy): a recommender install imports this package without the
vision stack; detection and segmentation samples are read by duck typing.

Registered here (``VISUALIZERS``): :class:`DetVisualizer` and :class:`SegVisualizer`.  The
visualization backends are mmengine's (``LocalVisBackend``, ``TensorboardVisBackend``, ...),
reached from mmext's ``VISBACKENDS`` node through its parent, so a config picks them by name in
``visualizer.vis_backends``.
"""
from .det_visualizer import DetVisualizer, instance_arrays
from .display import NO_DISPLAY_MESSAGE, has_display
from .palette import ClassStyle, default_palette, to_rgb
from .panel_visualizer import PanelVisualizer, to_numpy, write_rgb
from .seg_visualizer import SegVisualizer, label_map

__all__ = [
    'DetVisualizer', 'SegVisualizer', 'PanelVisualizer', 'ClassStyle', 'default_palette', 'to_rgb',
    'has_display', 'NO_DISPLAY_MESSAGE', 'instance_arrays', 'label_map', 'to_numpy', 'write_rgb'
]
