"""mmext.DetVisualizer: pixels where the boxes and masks are, names and colours from
dataset_meta, the score threshold, the layouts, and the ways out (file, backends)."""
import itertools
import json

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement, InstanceData

from mmext.registry import VISUALIZERS
from mmext.visualization import DetVisualizer, default_palette

META = dict(classes=('circle', 'square'), palette=[(220, 20, 60), (0, 130, 200)])
H = W = 96
GAP = 4
_names = itertools.count()


def make_visualizer(**kwargs) -> DetVisualizer:
    vis = DetVisualizer(name=f'test_det_vis_{next(_names)}', **kwargs)
    vis.dataset_meta = kwargs.pop('meta', META)
    return vis


def sample(gt_boxes=(), gt_labels=(), pred_boxes=(), pred_labels=(), scores=(), masks=None):
    gt = InstanceData(
        bboxes=torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(gt_labels, dtype=torch.int64))
    pred = InstanceData(
        bboxes=torch.tensor(pred_boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(pred_labels, dtype=torch.int64),
        scores=torch.tensor(scores, dtype=torch.float32))
    if masks is not None:
        pred.masks = torch.as_tensor(masks)
    return BaseDataElement(gt_instances=gt, pred_instances=pred)


def blank(value: int = 0) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def edge_colour(colour, alpha=0.9, background=0):
    """What a box line of ``alpha`` over a uniform background gives, per channel."""
    return np.array([alpha * c + (1 - alpha) * background for c in colour])


def test_side_by_side_draws_boxes_at_their_edges():
    vis = make_visualizer()
    box = [20, 30, 70, 80]
    drawn = vis.draw_datasample(blank(), sample([box], [1], [box], [0], [0.9]))
    assert drawn.shape == (H, 2 * W + GAP, 3)
    mid = 55  # a row through the middle of the box's left and right edges
    # ground truth (left panel): square's colour on the four edges
    for y, x in ((mid, 20), (mid, 70), (30, 66), (80, 45)):  # top edge right of the label
        np.testing.assert_allclose(drawn[y, x], edge_colour(META['palette'][1]), atol=3)
    # prediction (right panel, after the gap): circle's colour
    for y, x in ((mid, 20), (mid, 70), (30, 66), (80, 45)):  # top edge right of the label
        np.testing.assert_allclose(drawn[y, W + GAP + x], edge_colour(META['palette'][0]), atol=3)
    # nothing inside the box (below the label) nor outside it; the gap is white
    for x0 in (0, W + GAP):
        assert (drawn[45:75, x0 + 25:x0 + 65] == 0).all()
        assert (drawn[:, x0:x0 + 16] == 0).all() and (drawn[88:, x0:x0 + W] == 0).all()
    assert (drawn[:, W:W + GAP] == 255).all()


def test_score_threshold_is_respected():
    box = [[20, 30, 70, 80]]
    low = sample(pred_boxes=box, pred_labels=[0], scores=[0.2])
    vis = make_visualizer(score_thr=0.3)
    assert (vis.draw_datasample(blank(), low, draw_gt=False) == 0).all()
    drawn = vis.draw_datasample(blank(), low, draw_gt=False, pred_score_thr=0.1)
    np.testing.assert_allclose(drawn[55, 20], edge_colour(META['palette'][0]), atol=3)
    # exclusive: a score equal to the threshold is not drawn
    at_thr = sample(pred_boxes=box, pred_labels=[0], scores=[0.3])
    assert (vis.draw_datasample(blank(), at_thr, draw_gt=False) == 0).all()


def test_palette_and_class_names_come_from_dataset_meta():
    box = [[10, 40, 90, 90]]
    vis = make_visualizer()
    vis.dataset_meta = dict(
        classes=('a', 'a_much_longer_class_name'), palette=[(255, 0, 0), (0, 255, 0)])
    short = vis.draw_datasample(blank(), sample(box, [0]), draw_pred=False)
    long = vis.draw_datasample(blank(), sample(box, [1]), draw_pred=False)
    np.testing.assert_allclose(short[65, 10], edge_colour((255, 0, 0)), atol=3)
    np.testing.assert_allclose(long[65, 10], edge_colour((0, 255, 0)), atol=3)

    # the label's coloured box at the top-left corner is as wide as the class name is long
    def label_width(drawn):
        row = drawn[44, 12:]  # inside the label, below the box's top edge
        return int((row.max(axis=1) > 40).sum())

    assert label_width(long) > 3 * label_width(short) > 0
    # the config's palette argument wins over dataset_meta's
    vis_override = make_visualizer(palette=[(0, 0, 255), (255, 255, 0)])
    drawn = vis_override.draw_datasample(blank(), sample(box, [0]), draw_pred=False)
    np.testing.assert_allclose(drawn[65, 10], edge_colour((0, 0, 255)), atol=3)


def test_default_palette_without_meta_palette():
    vis = make_visualizer()
    vis.dataset_meta = dict(classes=('a', 'b', 'c'))
    drawn = vis.draw_datasample(blank(), sample([[10, 40, 90, 90]], [2]), draw_pred=False)
    np.testing.assert_allclose(drawn[65, 10], edge_colour(default_palette(3)[2]), atol=3)
    # a label past the palette's end still gets a colour, the same every time
    assert vis.style.colour(7) == default_palette(8)[7]
    assert vis.style.name(7) == '7'


def test_masks_are_filled_in_the_class_colour():
    mask = np.zeros((1, H, W), bool)
    mask[0, 40:60, 30:50] = True
    vis = make_visualizer(mask_alpha=0.5)
    drawn = vis.draw_datasample(
        blank(100),
        sample(pred_boxes=[[25, 35, 55, 65]], pred_labels=[1], scores=[0.9], masks=mask),
        draw_gt=False)
    expected = 0.5 * np.array(META['palette'][1]) + 0.5 * 100
    np.testing.assert_allclose(drawn[50, 40], expected, atol=2)
    assert (drawn[70:, :] == 100).all()  # outside the mask and the box
    with pytest.raises(ValueError, match='masks must be in the coordinates'):
        vis.draw_datasample(
            blank(),
            sample(
                pred_boxes=[[1, 1, 5, 5]],
                pred_labels=[0],
                scores=[1.0],
                masks=np.ones((1, 8, 8), bool)))


def test_overlay_draws_both_on_one_image():
    vis = make_visualizer(layout='overlay')
    drawn = vis.draw_datasample(blank(),
                                sample([[10, 10, 40, 40]], [1], [[50, 50, 90, 90]], [0], [0.9]))
    assert drawn.shape == (H, W, 3)
    assert drawn[25, 10].any()  # ground truth (dashed: some pixels of its edge are lit)
    np.testing.assert_allclose(drawn[70, 50], edge_colour(META['palette'][0]), atol=3)


def test_mmdet_structures_are_read_by_duck_typing():
    mmdet_structures = pytest.importorskip('mmdet.structures')
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks

    masks = np.zeros((1, H, W), np.uint8)
    masks[0, 40:60, 30:50] = 1
    data_sample = mmdet_structures.DetDataSample()
    data_sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.tensor([[25., 35., 55., 65.]])),
        labels=torch.tensor([1]),
        masks=BitmapMasks(masks, H, W))
    drawn = make_visualizer(mask_alpha=0.5).draw_datasample(blank(), data_sample)
    assert drawn.shape == (H, W, 3)  # no prediction: one panel
    np.testing.assert_allclose(drawn[50, 25], edge_colour(META['palette'][1]), atol=3)
    np.testing.assert_allclose(drawn[50, 40], 0.5 * np.array(META['palette'][1]), atol=2)


def test_add_datasample_writes_the_file_or_the_backends(tmp_path):
    data_sample = sample([[20, 30, 70, 80]], [1], [[20, 30, 70, 80]], [0], [0.9])
    vis = make_visualizer()
    out_file = tmp_path / 'sub' / 'img.png'
    drawn = vis.add_datasample('img', blank(), data_sample, out_file=str(out_file))
    import cv2
    written = cv2.imread(str(out_file))[..., ::-1]
    np.testing.assert_array_equal(written, drawn)

    with DefaultScope.overwrite_default_scope('mmext'):
        vis = VISUALIZERS.build(
            dict(
                type='DetVisualizer',
                name=f'test_det_vis_{next(_names)}',
                vis_backends=[dict(type='LocalVisBackend')],
                save_dir=str(tmp_path / 'run')))
    assert type(vis) is DetVisualizer
    vis.dataset_meta = META
    vis.add_datasample('val_img', blank(), data_sample, step=7)
    assert (tmp_path / 'run' / 'vis_data' / 'vis_image' / 'val_img_7.png').is_file()


def test_tensorboard_backend_is_selectable(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        pytest.skip('tensorboard is not installed')
    with DefaultScope.overwrite_default_scope('mmext'):
        vis = VISUALIZERS.build(
            dict(
                type='DetVisualizer',
                name=f'test_det_vis_{next(_names)}',
                vis_backends=[dict(type='LocalVisBackend'),
                              dict(type='TensorboardVisBackend')],
                save_dir=str(tmp_path)))
    vis.dataset_meta = META
    vis.add_datasample('val_img', blank(), sample([[20, 30, 70, 80]], [1]), step=3)
    vis.add_scalars(dict(loss=1.0), step=3)
    vis.close()
    events = list((tmp_path / 'vis_data').rglob('events.out.tfevents.*'))
    assert events and events[0].stat().st_size > 0
    line = (tmp_path / 'vis_data' / 'scalars.json').read_text().splitlines()[0]
    assert json.loads(line)['loss'] == 1.0


def test_registered_names_and_bad_arguments():
    with DefaultScope.overwrite_default_scope('mmdet'):
        assert VISUALIZERS.get('mmext.DetVisualizer') is DetVisualizer
    with pytest.raises(ValueError, match='layout'):
        DetVisualizer(name=f'test_det_vis_{next(_names)}', layout='grid')
    with pytest.raises(ValueError, match='mask_alpha'):
        DetVisualizer(name=f'test_det_vis_{next(_names)}', mask_alpha=2)
