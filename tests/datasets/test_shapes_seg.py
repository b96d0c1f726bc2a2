"""The shapes segmentation dataset: generation, label semantics, mmseg reading and scoring."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.structures import SegDataSample
from PIL import Image

from mmext.datasets.shapes_seg import (SHAPES_SEG_CLASSES, ShapesSegDataset,
                                       ShapesSegmentationGenerator, ensure_shapes_seg_dataset)
from mmext.registry import DATASETS

SMALL = dict(num_train=12, num_val=4, img_size=48, seed=0)


def _files(root: Path):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


@pytest.fixture(scope='module')
def small(tmp_path_factory) -> Path:
    return ensure_shapes_seg_dataset(tmp_path_factory.mktemp('seg') / 'small', **SMALL)


def test_layout_and_meta(small):
    assert sorted(p.name
                  for p in small.iterdir()) == ['ann_dir', 'img_dir', 'inst_dir', 'meta.json']
    for d in ('img_dir', 'ann_dir', 'inst_dir'):
        assert len(list((small / d / 'train').glob('*.png'))) == 12
        assert len(list((small / d / 'val').glob('*.png'))) == 4
    meta = json.loads((small / 'meta.json').read_text())
    assert meta['classes'] == list(SHAPES_SEG_CLASSES)
    total = sum(meta['pixel_counts']['train'].values())
    assert total == 12 * 48 * 48


def test_deterministic_and_cached(small, tmp_path):
    again = ensure_shapes_seg_dataset(tmp_path / 'again', **SMALL)
    a, b = _files(small), _files(again)
    assert a == b  # byte-identical on a fresh run
    mtimes = {p: p.stat().st_mtime_ns for p in again.rglob('*')}
    ensure_shapes_seg_dataset(again, **SMALL)  # complete: nothing rewritten
    assert mtimes == {p: p.stat().st_mtime_ns for p in again.rglob('*')}


def test_label_maps_match_the_painted_shapes(small):
    gen = ShapesSegmentationGenerator(img_size=48)
    rng = np.random.default_rng([0, 7, 0, 3])  # (seed, stream, split, index) of train/000003
    image, classes, instances = gen.render_seg(rng)
    assert np.array_equal(np.asarray(Image.open(small / 'ann_dir/train/000003.png')), classes)
    assert np.array_equal(np.asarray(Image.open(small / 'img_dir/train/000003.png')), image)
    assert classes.max() <= len(SHAPES_SEG_CLASSES) - 1
    # instance ids are 1..n, each instance has one class, background has instance 0
    ids = np.unique(instances)
    assert ids[0] == 0 and np.array_equal(ids, np.arange(len(ids)))
    for i in ids[1:]:
        assert len(np.unique(classes[instances == i])) == 1
    assert np.array_equal(instances == 0, classes == 0)


def test_every_class_occurs(tmp_path):
    root = ensure_shapes_seg_dataset(tmp_path / 'stats', num_train=30, num_val=2, img_size=48)
    counts = json.loads((root / 'meta.json').read_text())['pixel_counts']['train']
    assert all(counts[c] > 0 for c in SHAPES_SEG_CLASSES)


def test_refuses_foreign_directory(tmp_path):
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'mine.txt').write_text('keep')
    with pytest.raises(FileExistsError, match='mine.txt'):
        ensure_shapes_seg_dataset(tmp_path / 'x', **SMALL)


@pytest.mark.parametrize('reduce', [False, True])
def test_mmseg_dataset_reads_labels(small, reduce):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='mmseg.LoadAnnotations'),
        dict(type='mmseg.PackSegInputs')
    ]
    ds = DATASETS.build(
        dict(
            type='mmext.ShapesSegDataset',
            data_root=str(small),
            shapes_cfg=SMALL,
            reduce_zero_label=reduce,
            pipeline=pipeline,
            data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train')))
    assert isinstance(ds, ShapesSegDataset) and len(ds) == 12
    raw = np.asarray(Image.open(small / 'ann_dir/train/000003.png')).astype(np.int64)
    got = ds[3]['data_samples'].gt_sem_seg.data[0].numpy()
    if reduce:  # ADE20K convention: background ignored, shapes 0..3
        assert len(ds.metainfo['classes']) == 4
        assert np.array_equal(got, np.where(raw == 0, 255, raw - 1))
    else:
        assert len(ds.metainfo['classes']) == 5
        assert np.array_equal(got, raw)


def test_iou_metric_scores_the_labels(small):
    """A perfect prediction scores mIoU 100 with mmseg's IoUMetric; a constant one does not."""
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=SHAPES_SEG_CLASSES)
    samples = []
    for i in range(4):
        lab = torch.from_numpy(
            np.asarray(Image.open(small / f'ann_dir/val/{i:06d}.png')).astype(np.int64))[None]
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=lab)
        s.pred_sem_seg = PixelData(data=lab.clone())
        s.set_metainfo(dict(img_path=f'{i}.png'))
        samples.append(s.to_dict())
    metric.process([], samples)
    assert metric.compute_metrics(metric.results)['mIoU'] == pytest.approx(100.0)


def test_bad_config_keys(small):
    with pytest.raises(ValueError, match='unknown shapes_cfg'):
        ShapesSegDataset(data_root=str(small), shapes_cfg=dict(num_images=3))
    with pytest.raises(ValueError, match='reduce_zero_label=True'):
        ShapesSegDataset(
            data_root=str(small),
            shapes_cfg=SMALL,
            reduce_zero_label=True,
            metainfo=dict(classes=SHAPES_SEG_CLASSES))


def test_shapes_cfg_checks_are_shared_with_the_detection_dataset(tmp_path):
    """Both shapes datasets check ``shapes_cfg`` with one helper: the keys of their ``ensure``
    function and generator (the segmentation set has no use for ``min_visible``), and the same
    errors, raised before anything is generated."""
    from mmext.datasets import shapes, shapes_seg
    from mmext.datasets.shapes import ShapesCocoDataset
    assert shapes_seg._SEG_KEYS == {
        'num_train', 'num_val', 'img_size', 'seed', 'force', 'max_objects', 'min_object_size',
        'max_object_size', 'empty_prob'
    }
    assert shapes._ENSURE_KEYS == shapes_seg._SEG_KEYS | {'min_visible'}
    for cls in (ShapesSegDataset, ShapesCocoDataset):
        name = cls.__name__
        with pytest.raises(ValueError, match=rf"{name}: unknown shapes_cfg key\(s\) \['bad'\]"):
            cls(data_root=str(tmp_path / name), shapes_cfg=dict(bad=1))
        with pytest.raises(ValueError, match=f'{name} needs a data_root'):
            cls(data_root='', shapes_cfg=None)
    with pytest.raises(ValueError, match=r"unknown shapes_cfg key\(s\) \['min_visible'\]"):
        ShapesSegDataset(data_root=str(tmp_path / 'seg'), shapes_cfg=dict(min_visible=0.5))
    assert not any(tmp_path.iterdir())


def test_generation_reports_progress(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('MMEXT_PROGRESS_DELAY', '0')
    monkeypatch.delenv('MMEXT_PROGRESS', raising=False)
    ensure_shapes_seg_dataset(tmp_path / 'seg', num_train=6, num_val=2, img_size=32)
    err = capsys.readouterr().err.splitlines()
    for split, n in (('train', 6), ('val', 2)):
        lines = [line for line in err if line.startswith(f'shapes_seg: {split} images:')]
        assert lines[0].startswith(f'shapes_seg: {split} images:   0% (0/{n})')
        assert lines[-1].startswith(f'shapes_seg: {split} images: 100% ({n}/{n}), done in ')
