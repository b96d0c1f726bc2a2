"""Tests of the synthetic shapes dataset: generator, caching, and mmdet compatibility."""
import importlib.util
import json
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from mmext.datasets.shapes import (SHAPES_CLASSES, SHAPES_METAINFO, ShapesDetectionGenerator,
                                   ensure_shapes_dataset)

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(num_train=20, num_val=8, img_size=64, seed=0)


def _files(root: Path) -> Dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


def _mtimes(root: Path) -> Dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob('*')}


def _load(root: Path, split: str = 'train') -> dict:
    return json.loads((root / 'annotations' / f'instances_{split}.json').read_text())


@pytest.fixture(scope='module')
def small(tmp_path_factory) -> Path:
    return ensure_shapes_dataset(tmp_path_factory.mktemp('shapes') / 'small', **SMALL)


@pytest.fixture(scope='module')
def stats_set(tmp_path_factory) -> Path:
    """Large enough (still < 1 s) for the statistical checks."""
    return ensure_shapes_dataset(
        tmp_path_factory.mktemp('shapes') / 'stats', num_train=80, num_val=4, img_size=96, seed=3)


def test_layout(small: Path) -> None:
    assert sorted(p.name for p in small.iterdir()) == ['annotations', 'meta.json', 'train', 'val']
    assert len(list((small / 'train').glob('*.png'))) == 20
    assert len(list((small / 'val').glob('*.png'))) == 8
    meta = json.loads((small / 'meta.json').read_text())
    assert meta['params']['num_train'] == 20 and meta['classes'] == list(SHAPES_CLASSES)
    from PIL import Image
    with Image.open(small / 'train' / '000000.png') as img:
        assert img.mode == 'RGB' and img.size == (64, 64)


def test_deterministic(small: Path, tmp_path: Path) -> None:
    again = ensure_shapes_dataset(tmp_path / 'again', **SMALL)
    assert _files(again) == _files(small)
    other = ensure_shapes_dataset(tmp_path / 'other', **dict(SMALL, seed=1))
    assert _load(other) != _load(small)


def test_prefix_stable(small: Path, tmp_path: Path) -> None:
    """Each image has its own random stream: a smaller set is a prefix of a larger one."""
    fewer = ensure_shapes_dataset(tmp_path / 'fewer', **dict(SMALL, num_train=5))
    for i in range(5):
        name = f'train/{i:06d}.png'
        assert (fewer / name).read_bytes() == (small / name).read_bytes()


def test_annotation_sanity(stats_set: Path) -> None:
    coco = _load(stats_set)
    size = 96
    assert [c['name'] for c in coco['categories']] == list(SHAPES_CLASSES)
    assert [c['id'] for c in coco['categories']] == [1, 2, 3, 4]
    ids = [a['id'] for a in coco['annotations']]
    assert len(set(ids)) == len(ids) and min(ids) >= 1
    image_ids = {img['id'] for img in coco['images']}
    assert min(image_ids) >= 1
    for img in coco['images']:
        assert (img['width'], img['height']) == (size, size)
        assert (stats_set / 'train' / img['file_name']).is_file()
    by_image = {i: [] for i in image_ids}
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        assert all(isinstance(v, float) for v in ann['bbox'])
        assert x >= 0 and y >= 0 and x + w <= size and y + h <= size
        assert w >= 1 and h >= 1 and 0 < ann['area'] <= w * h
        assert ann['iscrowd'] == 0 and ann['image_id'] in image_ids
        assert 1 <= ann['category_id'] <= len(SHAPES_CLASSES)
        polygon = ann['segmentation'][0]
        assert len(polygon) >= 6 and len(polygon) % 2 == 0
        by_image[ann['image_id']].append(ann['bbox'])

    empty = sum(1 for boxes in by_image.values() if not boxes)
    assert 1 <= empty <= len(image_ids) // 4
    assert set(Counter(a['category_id'] for a in coco['annotations'])) == {1, 2, 3, 4}
    sides = np.array([max(a['bbox'][2:]) for a in coco['annotations']])
    assert sides.min() <= 12 and sides.max() >= size / 3  # small and large shapes

    def overlap(a, b) -> bool:
        return (min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0])
                and min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1]))

    assert any(overlap(a, b) for boxes in by_image.values() for a, b in combinations(boxes, 2))


def test_hidden_objects_are_dropped() -> None:
    """min_visible removes some occluded shapes; with 0 every painted shape is annotated."""
    counts = {}
    for min_visible in (0.0, 0.3):
        gen = ShapesDetectionGenerator(img_size=64, max_objects=8, min_visible=min_visible)
        counts[min_visible] = sum(
            len(gen.render(np.random.default_rng([0, 0, i]))[1]) for i in range(40))
    assert counts[0.0] > counts[0.3] > 0


def test_idempotent(small: Path) -> None:
    before = _mtimes(small)
    assert ensure_shapes_dataset(small, **SMALL) == small
    assert _mtimes(small) == before


def test_regenerates_without_meta(tmp_path: Path) -> None:
    root = ensure_shapes_dataset(tmp_path / 'ds', **SMALL)
    reference = _files(root)
    (root / 'meta.json').unlink()  # as if the run had stopped before finishing
    (root / 'train' / '000003.png').unlink()
    ensure_shapes_dataset(root, **SMALL)
    assert _files(root) == reference


def test_regenerates_on_new_params(small: Path, tmp_path: Path) -> None:
    root = ensure_shapes_dataset(tmp_path / 'ds', **SMALL)
    ensure_shapes_dataset(root, **dict(SMALL, num_val=3))
    assert len(list((root / 'val').glob('*.png'))) == 3
    assert json.loads((root / 'meta.json').read_text())['params']['num_val'] == 3


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch) -> None:

    def boom(self, root, *args):
        (Path(root) / 'train').mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(ShapesDetectionGenerator, 'write_dataset', boom)
    with pytest.raises(KeyboardInterrupt):
        ensure_shapes_dataset(tmp_path / 'ds', **SMALL)
    assert not (tmp_path / 'ds').exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith('.lock')] == []


def test_refuses_foreign_directory(tmp_path: Path) -> None:
    root = tmp_path / 'ds'
    root.mkdir()
    (root / 'precious.txt').write_text('not ours')
    with pytest.raises(FileExistsError, match='precious.txt'):
        ensure_shapes_dataset(root, **SMALL)
    assert (root / 'precious.txt').exists()


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='max_object_size'):
        ensure_shapes_dataset(tmp_path / 'ds', img_size=32, max_object_size=40)
    with pytest.raises(ValueError, match='empty_prob'):
        ShapesDetectionGenerator(empty_prob=1.5)


def test_cli(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location(
        'make_shapes_dataset', REPO / 'tools' / 'misc' / 'make_shapes_dataset.py')
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    root = cli.main([
        '--out',
        str(tmp_path / 'cli'), '--num-train', '3', '--num-val', '2', '--img-size', '32', '--seed',
        '5'
    ])
    assert len(_load(root, 'val')['images']) == 2
    assert 'train: 3 images' in capsys.readouterr().out


# ----------------------------------------------------------------------------- mmdet
def test_mmdet_coco_dataset_reads_it(small: Path) -> None:
    from mmdet.datasets import CocoDataset
    coco = _load(small)
    dataset = CocoDataset(
        data_root=str(small),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=SHAPES_METAINFO,
        test_mode=True,
        pipeline=[])
    assert len(dataset) == 20
    assert dataset.metainfo['classes'] == SHAPES_CLASSES
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        anns = [a for a in coco['annotations'] if a['image_id'] == info['img_id']]
        assert Path(info['img_path']) == small / 'train' / f'{idx:06d}.png'
        assert [ins['bbox'] for ins in info['instances']] == [[
            a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2], a['bbox'][1] + a['bbox'][3]
        ] for a in anns]
        assert [ins['bbox_label']
                for ins in info['instances']] == [a['category_id'] - 1 for a in anns]

    train = CocoDataset(
        data_root=str(small),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=SHAPES_METAINFO,
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=[])
    non_empty = len({a['image_id'] for a in coco['annotations']})
    assert len(train) == non_empty < 20


def test_shapes_coco_dataset_generates_and_loads(tmp_path: Path) -> None:
    from mmengine.registry import DefaultScope

    from mmext.registry import DATASETS
    pipeline = [
        dict(type='mmdet.LoadImageFromFile'),
        dict(type='mmdet.LoadAnnotations', with_bbox=True),
        dict(type='mmdet.PackDetInputs')
    ]
    cfg = dict(
        type='ShapesCocoDataset',
        data_root=str(tmp_path / 'auto'),
        shapes_cfg=dict(num_train=6, num_val=3, img_size=64),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=pipeline)
    with DefaultScope.overwrite_default_scope('mmext'):
        dataset = DATASETS.build(cfg)
        assert len(dataset) == 3
        assert dataset.metainfo['classes'] == SHAPES_CLASSES
        sample = dataset[0]
    assert tuple(sample['inputs'].shape) == (3, 64, 64)
    gt = sample['data_samples'].gt_instances
    expected = dataset.get_data_info(0)['instances']
    assert gt.bboxes.tensor.tolist() == [ins['bbox'] for ins in expected]

    with pytest.raises(ValueError, match='num_images'):
        DATASETS.build(dict(cfg, shapes_cfg=dict(num_images=3)))


def test_coco_metric_scores_ground_truth_perfectly(small: Path) -> None:
    import torch
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric

    ann_file = small / 'annotations' / 'instances_val.json'
    dataset = CocoDataset(
        data_root=str(small),
        ann_file=str(ann_file),
        data_prefix=dict(img='val/'),
        metainfo=SHAPES_METAINFO,
        test_mode=True,
        pipeline=[])
    metric = CocoMetric(ann_file=str(ann_file), metric='bbox')
    metric.dataset_meta = dataset.metainfo
    samples = []
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        boxes = torch.tensor([ins['bbox'] for ins in info['instances']],
                             dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([ins['bbox_label'] for ins in info['instances']], dtype=torch.int64)
        samples.append(
            dict(
                img_id=info['img_id'],
                ori_shape=(info['height'], info['width']),
                pred_instances=dict(bboxes=boxes, labels=labels, scores=torch.ones(len(labels)))))
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/bbox_mAP_50'] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- progress
def _split_lines(err: str, desc: str) -> list:
    return [line for line in err.splitlines() if line.startswith(desc)]


def test_generation_reports_progress(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv('MMEXT_PROGRESS_DELAY', '0')  # report even this quick job
    monkeypatch.delenv('MMEXT_PROGRESS', raising=False)
    ensure_shapes_dataset(tmp_path / 'ds', num_train=25, num_val=3, img_size=32)
    err = capsys.readouterr().err
    train = _split_lines(err, 'shapes: train images:')
    assert train[0].startswith('shapes: train images:   0% (0/25)')
    assert train[-1].startswith('shapes: train images: 100% (25/25), done in ')
    assert len(train) <= 11  # not one line per image: one per 10 %
    assert _split_lines(
        err, 'shapes: val images:')[-1].startswith('shapes: val images: 100% (3/3), done in ')
    # a complete dataset is not generated again: nothing to report
    ensure_shapes_dataset(tmp_path / 'ds', num_train=25, num_val=3, img_size=32)
    assert capsys.readouterr().err == ''


def test_generation_is_silent_off_rank_0(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv('MMEXT_PROGRESS_DELAY', '0')
    monkeypatch.setenv('RANK', '1')
    ensure_shapes_dataset(tmp_path / 'ds', num_train=4, num_val=2, img_size=32)
    assert capsys.readouterr().err == ''


def test_process_waiting_for_another_ones_generation_says_so(tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    import fcntl
    import threading
    import time
    monkeypatch.setenv('MMEXT_PROGRESS_DELAY', '0')
    monkeypatch.delenv('MMEXT_PROGRESS', raising=False)
    kwargs = dict(num_train=2, num_val=1, img_size=32)
    worker = threading.Thread(target=ensure_shapes_dataset, args=(tmp_path / 'ds', ), kwargs=kwargs)
    with open(tmp_path / '.ds.lock', 'w') as lock:  # "another process" holds the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive()  # it waits
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(60)
    assert not worker.is_alive()
    waiting = _split_lines(capsys.readouterr().err, 'Waiting for another process to finish '
                           'generating the shapes dataset')
    assert len(waiting) == 2 and waiting[0].endswith(f'in {tmp_path / "ds"}...')
    assert ': done in ' in waiting[1]
