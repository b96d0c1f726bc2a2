"""mmext.SegVisualizer: class colours blended where each class is, ignore_index left alone, the
legend, the overlay layout, and names/colours from dataset_meta."""
import itertools

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement, PixelData

from mmext.registry import VISUALIZERS
from mmext.visualization import SegVisualizer

META = dict(
    classes=('background', 'circle', 'square'), palette=[(0, 0, 0), (220, 20, 60), (0, 130, 200)])
H = W = 64
GAP = 4
_names = itertools.count()


def make_visualizer(**kwargs) -> SegVisualizer:
    vis = SegVisualizer(name=f'test_seg_vis_{next(_names)}', **kwargs)
    vis.dataset_meta = META
    return vis


def labels() -> np.ndarray:
    seg = np.zeros((H, W), np.int64)
    seg[10:30, 10:30] = 1
    seg[40:50, 30:60] = 2
    seg[0:4, 0:4] = 255  # ignored
    return seg


def sample(gt=None, pred=None) -> BaseDataElement:
    fields = {}
    if gt is not None:
        fields['gt_sem_seg'] = PixelData(data=torch.from_numpy(gt)[None])
    if pred is not None:
        fields['pred_sem_seg'] = PixelData(data=torch.from_numpy(pred)[None])
    return BaseDataElement(**fields)


def blend(image_value: float, colour, alpha: float) -> np.ndarray:
    return (1 - alpha) * image_value + alpha * np.asarray(colour, float)


def test_class_colours_blended_where_each_class_is():
    vis = make_visualizer(alpha=0.4, legend=False)
    image = np.full((H, W, 3), 100, np.uint8)
    seg = labels()
    drawn = vis.draw_sem_seg(image, seg)
    for k in (0, 1, 2):
        region = drawn[seg == k].astype(float)
        np.testing.assert_allclose(
            region, np.broadcast_to(blend(100, META['palette'][k], 0.4), region.shape), atol=1)
    assert (drawn[seg == 255] == 100).all()


def test_side_by_side_with_legend_below():
    vis = make_visualizer(alpha=0.5)
    image = np.full((H, W, 3), 100, np.uint8)
    gt = labels()
    pred = np.zeros_like(gt)
    pred[40:50, 30:60] = 1  # predicts circle where the square is
    drawn = vis.draw_datasample(image, sample(gt, pred))
    assert drawn.shape[1] == 2 * W + GAP and drawn.shape[0] > H  # the legend strip below
    np.testing.assert_allclose(drawn[45, 40], blend(100, META['palette'][2], 0.5), atol=1)
    np.testing.assert_allclose(drawn[45, W + GAP + 40], blend(100, META['palette'][1], 0.5), atol=1)
    assert (drawn[:H, W:W + GAP] == 255).all()
    legend = drawn[H:]
    for colour in META['palette']:  # one entry per class present, on its colour
        assert (np.abs(legend.astype(int) - colour).sum(axis=2) < 10).sum() > 20


def test_legend_names_come_from_dataset_meta():
    vis = make_visualizer()
    image = np.zeros((H, W, 3), np.uint8)
    seg = np.ones((H, W), np.int64)

    def legend_width(classes):
        vis.dataset_meta = dict(classes=classes, palette=[(0, 0, 0), (0, 255, 0)])
        legend = vis.draw_datasample(image, sample(seg))[H:]
        return int((np.abs(legend.astype(int) - (0, 255, 0)).sum(axis=2) < 10).any(axis=0).sum())

    assert legend_width(('bg', 'a_much_longer_class_name')) > 3 * legend_width(('bg', 'a')) > 0


def test_overlay_shows_prediction_with_ground_truth_boundaries():
    vis = make_visualizer(layout='overlay', legend=False)
    image = np.full((H, W, 3), 100, np.uint8)
    gt = labels()
    pred = np.zeros_like(gt)
    pred[40:50, 30:60] = 2
    drawn = vis.draw_datasample(image, sample(gt, pred))
    assert drawn.shape == (H, W, 3)
    assert (drawn[29, 15] == 255).all()  # the circle's lower boundary (ground truth) in white
    np.testing.assert_allclose(drawn[20, 20], blend(100, META['palette'][0], 0.5), atol=1)
    np.testing.assert_allclose(drawn[45, 40], blend(100, META['palette'][2], 0.5), atol=1)


def test_mismatched_map_and_registry():
    vis = make_visualizer()
    with pytest.raises(ValueError, match='label map is'):
        vis.draw_sem_seg(np.zeros((H, W, 3), np.uint8), np.zeros((H // 2, W), np.int64))
    with DefaultScope.overwrite_default_scope('mmext'):
        built = VISUALIZERS.build(dict(type='SegVisualizer', name=f'test_seg_vis_{next(_names)}'))
    assert type(built) is SegVisualizer
