# mmdet's default runtime (hooks, logging, environment) with mmext's visualization: the
# mmext.DetVisualizer and mmext.VisualizationHook replace mmdet's DetLocalVisualizer and
# DetVisualizationHook.  The hook draws nothing during training unless
# `default_hooks.visualization.draw=True` (then every `interval`-th validation image goes to the
# backends); `tools/test.py --show-dir DIR` turns it on for the test set.  Add
# dict(type='TensorboardVisBackend') to `vis_backends` to see the drawings and the scalars in
# TensorBoard (needs `pip install tensorboard`).  Options: docs/tools/visualization.md.
_base_ = 'mmdet::_base_/default_runtime.py'

default_hooks = dict(
    visualization=dict(_delete_=True, type='mmext.VisualizationHook', draw=False, interval=50))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    _delete_=True,
    type='mmext.DetVisualizer',
    vis_backends=vis_backends,
    layout='side_by_side',  # ground truth | prediction; 'overlay' draws both on one image
    score_thr=0.3)
