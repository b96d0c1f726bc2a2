"""The NEON tree crowns of the deepforest wheel: splits, the spatially disjoint train/val tiles,
loading a region's pixels.  Skipped where the wheel's data is not installed (tools/setup_env.sh
installs it)."""
import importlib.util

import numpy as np
import pytest
from PIL import Image

import mmext.datasets.transforms  # noqa: F401  (registers LoadImageCrop)
from mmext.datasets.neon_trees import (NEON_TREES_FILES, NEON_TREES_SPLITS, NeonTreesDataset,
                                       deepforest_data_dir)
from mmext.datasets.tiled import TiledDataset
from mmext.datasets.transforms import LoadImageCrop


def test_missing_wheel_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps 'deepforest==2\.1\.0'"):
        deepforest_data_dir()


@pytest.fixture(scope='module')
def data_dir():
    try:
        return deepforest_data_dir()
    except FileNotFoundError as err:
        pytest.skip(f'the deepforest data is not installed ({err})')


def infos(ds):
    return [ds.get_data_info(i) for i in range(len(ds))]


def overlap_area(a, b):
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def test_splits(data_dir):
    whole = {d['img_name']: d for d in infos(NeonTreesDataset('yellowstone', pipeline=[]))}
    assert {
        k: len(d['instances'])
        for k, d in whole.items()
    } == {
        '2019_YELL_2_528000_4978000_image_crop2': 574,
        '2019_YELL_2_541000_4977000_image_crop': 279
    }
    val = infos(NeonTreesDataset('val', pipeline=[]))
    assert [d['crop'] for d in val] == [(0, 1854, 2299, 2472), (0, 776, 1249, 1035)]
    assert [(d['width'], d['height']) for d in val] == [(2299, 618), (1249, 259)]
    for d in val:  # boxes in the region's coordinates, inside it
        b = np.array([i['bbox'] for i in d['instances']])
        assert b.min() >= 0 and b[:, 2].max() <= d['width'] and b[:, 3].max() <= d['height']
    other = infos(NeonTreesDataset(('osbs', 'soap'), pipeline=[]))
    assert [len(d['instances']) for d in other] == [61, 37]  # SOAP's Dead/Alive read as Tree
    assert {i['bbox_label'] for d in other for i in d['instances']} == {0}
    soap = NeonTreesDataset(
        'soap', metainfo=dict(classes=('Dead', 'Alive')), name_map={}, pipeline=[])
    labels = [i['bbox_label'] for i in soap.get_data_info(0)['instances']]
    assert (labels.count(0), labels.count(1)) == (28, 9)
    with pytest.raises(ValueError, match='split must be one or more of'):
        NeonTreesDataset('test')
    with pytest.raises(ValueError, match='LoadImageFromFile'):
        NeonTreesDataset('val', pipeline=[dict(type='mmdet.LoadImageFromFile')])


def test_train_and_val_are_spatially_disjoint(data_dir):
    """No training tile overlaps a validation tile, and no tree box reaches into both parts."""
    kwargs = dict(tile_size=400, overlap=100)
    train = infos(TiledDataset(NeonTreesDataset('train', pipeline=[]), **kwargs))
    val = infos(TiledDataset(NeonTreesDataset('val', pipeline=[]), **kwargs))
    assert train and val
    for path in {t['img_path'] for t in val}:
        train_tiles = [t['crop'] for t in train if t['img_path'] == path]
        val_tiles = [t['crop'] for t in val if t['img_path'] == path]
        assert train_tiles and val_tiles
        assert all(overlap_area(a, b) == 0 for a in train_tiles for b in val_tiles), path
    whole = {d['img_path']: d for d in infos(NeonTreesDataset('yellowstone', pipeline=[]))}
    regions = {
        s: {
            NEON_TREES_FILES[k][0]: r
            for k, r in NEON_TREES_SPLITS[s]
        }
        for s in ('train', 'val')
    }
    for path, d in whole.items():
        name = path.split('/')[-1].replace('.png', '.xml')
        tr, va = regions['train'][name], regions['val'][name]
        both = [
            i['bbox'] for i in d['instances']
            if overlap_area(i['bbox'], tr) > 0 and overlap_area(i['bbox'], va) > 0
        ]
        assert both == [], f'{name}: trees in both parts: {both}'


def test_every_training_tree_is_whole_in_some_tile(data_dir):
    """With an overlap of at least the largest box (108 px), each tree of the training part is
    whole in at least one tile; tile boxes lie inside their tiles."""
    regions = NeonTreesDataset('train', pipeline=[])
    tiles = infos(TiledDataset(regions, tile_size=400, overlap=120))
    for idx, region in enumerate(infos(regions)):
        mine = [t for t in tiles if t['source_idx'] == idx]
        for t in mine:
            b = np.array([i['bbox'] for i in t['instances']]).reshape(-1, 4)
            assert b.min(initial=0) >= 0 and np.all(b[:, 2] <= t['width'])
            assert np.all(b[:, 3] <= t['height'])
        for inst in region['instances']:
            if inst.get('visible_fraction', 1) < 1:
                continue  # cut by the region's edge: it cannot be whole in a tile either
            x1, y1, x2, y2 = inst['bbox']
            assert any(t['tile'][0] <= x1 and t['tile'][1] <= y1 and x2 <= t['tile'][2]
                       and y2 <= t['tile'][3] for t in mine), inst


def test_region_pixels(data_dir):
    val = NeonTreesDataset('val', pipeline=[dict(type='mmext.LoadImageCrop')])
    out = val[0]
    file_rgb = np.asarray(Image.open(f'{data_dir}/{NEON_TREES_FILES["yell_large"][0][:-4]}.png'))
    assert out['img'].shape == (618, 2299, 3)
    assert np.array_equal(out['img'], file_rgb[1854:2472, :, ::-1])  # BGR, as mmcv loads
    assert isinstance(val.pipeline.transforms[0], LoadImageCrop)
