"""Tests of tools/analysis/demo_report.py: curves, prediction grid, and the whole CLI."""
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location('demo_report',
                                                  REPO / 'tools' / 'analysis' / 'demo_report.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_scalars(run_dir: Path, epochs: int = 3, iters_per_epoch: int = 5) -> Path:
    """A scalars.json shaped like mmengine's LoggerHook output."""
    path = run_dir / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    lines = []
    for epoch in range(1, epochs + 1):
        for i in range(1, iters_per_epoch + 1):
            it = (epoch - 1) * iters_per_epoch + i
            loss_cls, loss_bbox = 1.0 / it, 0.5 / it
            lines.append(
                dict(
                    lr=0.01,
                    data_time=0.01,
                    loss=loss_cls + loss_bbox,
                    loss_cls=loss_cls,
                    loss_bbox=loss_bbox,
                    time=0.1,
                    epoch=epoch,
                    iter=it,
                    memory=100,
                    step=it))
        lines.append({
            'coco/bbox_mAP': 0.1 * epoch,
            'coco/bbox_mAP_50': 0.2 * epoch,
            'coco/bbox_mAP_s': -1.0,
            'data_time': 0.01,
            'time': 0.05,
            'step': epoch
        })
    path.write_text('\n'.join(json.dumps(line) for line in lines) + '\n')
    return path


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.size[0] > 100 and img.size[1] > 100


def test_find_scalars_file_picks_newest_run(report, tmp_path: Path) -> None:
    old = _write_scalars(tmp_path / '20240101_120000')
    new = _write_scalars(tmp_path / '20240102_080000')
    (tmp_path / '20240103_000000').mkdir()  # newest run, but it logged nothing yet
    os.utime(old.parents[1], (2e9, 2e9))  # mtime must not override the timestamp order
    assert report.find_scalars_file(tmp_path) == new
    assert report.find_scalars_file(new.parents[1]) == new
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        report.find_scalars_file(tmp_path / '20240103_000000')


def test_load_scalars_splits_train_and_val(report, tmp_path: Path) -> None:
    train, val = report.load_scalars(_write_scalars(tmp_path / 'run'))
    assert len(train) == 15 and len(val) == 3
    assert val[-1]['coco/bbox_mAP'] == pytest.approx(0.3)
    bad = tmp_path / 'bad.json'
    bad.write_text('{"loss": 1}\nnot json\n')
    with pytest.raises(ValueError, match='bad.json:2'):
        report.load_scalars(bad)


def test_plot_curves_writes_png(report, tmp_path: Path) -> None:
    out = report.plot_curves(_write_scalars(tmp_path / 'run'), tmp_path / 'out' / 'curves.png')
    _assert_png(out)


def test_plot_curves_without_validation(report, tmp_path: Path) -> None:
    path = tmp_path / 'scalars.json'
    path.write_text(json.dumps(dict(loss=1.0, loss_cls=0.7, iter=1, step=1)) + '\n')
    _assert_png(report.plot_curves(path, tmp_path / 'curves.png'))


def test_draw_prediction_grid(report, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = [
        dict(
            image=rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
            title=f'{i}.png',
            gt_bboxes=np.array([[4, 4, 30, 30]], dtype=np.float32),
            gt_labels=np.array([i % 4]),
            pred_bboxes=np.array([[5, 5, 31, 29], [40, 40, 60, 60]], dtype=np.float32),
            pred_labels=np.array([i % 4, 1]),
            pred_scores=np.array([0.9, 0.1])) for i in range(5)
    ]
    samples.append(
        dict(
            image=np.zeros((64, 64, 3), np.uint8),
            gt_bboxes=np.zeros((0, 4)),
            gt_labels=np.zeros(0),
            pred_bboxes=np.zeros((0, 4)),
            pred_labels=np.zeros(0),
            pred_scores=np.zeros(0)))
    out = report.draw_prediction_grid(samples, ('circle', 'square', 'triangle', 'cross'),
                                      tmp_path / 'predictions.png')
    _assert_png(out)
    with pytest.raises(ValueError, match='no images'):
        report.draw_prediction_grid([], (), tmp_path / 'empty.png')


TINY_FCOS_CONFIG = """
default_scope = 'mmext'
shapes_cfg = dict(num_train=2, num_val=5, img_size=64, seed=0)
model = dict(
    type='mmdet.FCOS',
    data_preprocessor=dict(type='mmdet.DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='mmdet.ResNet', depth=18, base_channels=8, out_indices=(1, 2, 3),
                  norm_cfg=dict(type='BN'), norm_eval=False, init_cfg=None),
    neck=dict(type='mmdet.FPN', in_channels=[16, 32, 64], out_channels=16, start_level=0,
              add_extra_convs='on_output', num_outs=3, relu_before_extra_convs=True),
    bbox_head=dict(
        type='mmdet.FCOSHead', num_classes=4, in_channels=16, stacked_convs=1,
        feat_channels=16, strides=[8, 16, 32], norm_cfg=None,
        bbox_coder=dict(type='mmdet.DistancePointBBoxCoder'),
        loss_cls=dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(type='mmdet.IoULoss', loss_weight=1.0),
        loss_centerness=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True,
                             loss_weight=1.0)),
    test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0,
                  nms=dict(type='nms', iou_threshold=0.5), max_per_img=5))
val_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='ShapesCocoDataset', data_root=r'{data_root}', shapes_cfg=shapes_cfg,
        ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=[
            dict(type='mmdet.LoadImageFromFile'),
            dict(type='mmdet.Resize', scale=(64, 64), keep_ratio=True),
            dict(type='mmdet.LoadAnnotations', with_bbox=True),
            dict(type='mmdet.PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
        ]))
"""


def test_cli_with_random_tiny_detector(report, tmp_path: Path, capsys) -> None:
    """The whole tool on a randomly initialised FCOS (no training needed)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    config = tmp_path / 'tiny_fcos.py'
    config.write_text(TINY_FCOS_CONFIG.replace('{data_root}', str(tmp_path / 'shapes')))
    with DefaultScope.overwrite_default_scope('mmext'):
        torch.manual_seed(0)
        model = MODELS.build(Config.fromfile(str(config)).model)
    checkpoint = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    work_dir = tmp_path / 'work_dir'
    _write_scalars(work_dir / '20240101_000000')

    # score_thr 0 so that the untrained model's low-confidence boxes are drawn too.
    written = report.main([
        str(config),
        str(checkpoint), '--work-dir',
        str(work_dir), '--num-images', '3', '--out-dir',
        str(tmp_path / 'report'), '--score-thr', '0'
    ])
    assert written['predictions'] == tmp_path / 'report' / 'predictions.png'
    for path in written.values():
        _assert_png(path)
    out = capsys.readouterr().out
    assert 'predictions.png' in out and 'curves.png' in out

    samples, meta = report.run_inference(str(config), str(checkpoint), num_images=2)
    assert len(samples) == 2 and meta['classes'][0] == 'circle'
    assert samples[0]['image'].shape == (64, 64, 3)
    assert 0 < len(samples[0]['pred_scores']) <= 5
    assert samples[0]['pred_bboxes'].shape == (len(samples[0]['pred_scores']), 4)


def test_prediction_panels_are_drawn_by_det_visualizer(report):
    """The report's boxes come from mmext.DetVisualizer (overlay layout): predictions above the
    threshold solid in their class colour, lower ones not drawn, ground truth dashed."""
    from mmengine.structures import BaseDataElement, InstanceData

    from mmext.visualization import DetVisualizer

    palette = [(220, 20, 60), (0, 130, 200)]
    image = np.zeros((64, 64, 3), np.uint8)
    sample = dict(
        image=image,
        gt_bboxes=np.array([[4, 4, 30, 30]], np.float32),
        gt_labels=np.array([1]),
        pred_bboxes=np.array([[34, 34, 60, 60], [36, 6, 60, 28]], np.float32),
        pred_labels=np.array([0, 1]),
        pred_scores=np.array([0.9, 0.1]))
    (panel, ) = report.draw_prediction_panels([sample], ('circle', 'square'), 0.3, palette)
    assert panel.shape == (64, 64, 3)
    np.testing.assert_allclose(panel[47, 34], [0.9 * c for c in palette[0]], atol=3)
    assert (panel[8:27, 38:60] == 0).all()  # the 0.1-score prediction is not drawn
    assert panel[4:31, 4].any()  # the ground truth's left edge (dashed)

    # exactly what the visualizer draws for the same sample
    vis = DetVisualizer(name='test_demo_report_panels', layout='overlay', palette=palette)
    vis.dataset_meta = dict(classes=('circle', 'square'))
    expected = vis.draw_datasample(
        image,
        BaseDataElement(
            gt_instances=InstanceData(bboxes=sample['gt_bboxes'], labels=sample['gt_labels']),
            pred_instances=InstanceData(
                bboxes=sample['pred_bboxes'],
                labels=sample['pred_labels'],
                scores=sample['pred_scores'])))
    np.testing.assert_array_equal(panel, expected)
