# mmseg's default runtime (environment, logging) with mmext's visualizer: mmext.SegVisualizer
# replaces mmseg's SegLocalVisualizer.  mmseg's runtime has no default_hooks (its schedules
# define them); a config built on this one adds
# `visualization=dict(type='mmext.VisualizationHook')` to its own default_hooks.  Add
# dict(type='TensorboardVisBackend') to `vis_backends` for TensorBoard (needs
# `pip install tensorboard`).  Options: docs/tools/visualization.md.
_base_ = 'mmseg::_base_/default_runtime.py'

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    _delete_=True,
    type='mmext.SegVisualizer',
    vis_backends=vis_backends,
    layout='side_by_side',  # ground truth | prediction; 'overlay': prediction + gt boundaries
    alpha=0.5)
