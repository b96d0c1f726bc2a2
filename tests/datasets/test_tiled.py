"""TiledDataset: tiles with overlap, boxes clipped by visible fraction, seeded empty-tile rate;
LoadImageCrop: the tile's pixels, decoded once per image."""
import copy

import mmcv
import numpy as np
import pytest
from mmengine.dataset import BaseDataset
from PIL import Image

import mmext.datasets.transforms  # noqa: F401  (registers LoadImageCrop)
from mmext.datasets.tiled import TiledDataset
from mmext.datasets.transforms import LoadImageCrop


class ListDataset(BaseDataset):
    """Whole images given as mmdet data infos."""

    def __init__(self, infos, **kwargs):
        self._infos = infos
        super().__init__(metainfo=dict(classes=('a', 'b')), pipeline=[], **kwargs)

    def load_data_list(self):
        return copy.deepcopy(self._infos)


def box(x1, y1, x2, y2, label=0, ignore=0):
    return dict(bbox=[x1, y1, x2, y2], bbox_label=label, ignore_flag=ignore)


def image(instances, width=1000, height=500, path='img.png', **extra):
    return dict(img_path=path, width=width, height=height, instances=instances, **extra)


def tiles_of(ds):
    return [ds.get_data_info(i) for i in range(len(ds))]


def test_tiles_clip_boxes_by_visible_fraction():
    src = ListDataset([
        image([
            box(10, 10, 50, 50),  # tile 0 only
            box(380, 10, 420, 50, label=1),  # straddles x=400: half in tile 0, whole in tile 1
            box(320, 120, 340, 140),  # in the overlap of tiles 0 and 1, whole in both
            box(690, 200, 730, 240),  # 1/4 in tile 1 (x < 700), whole in tile 2
        ])
    ])
    ds = TiledDataset(src, tile_size=400, overlap=100, min_visible=0.5)
    tiles = tiles_of(ds)
    assert [t['tile'] for t in tiles] == [(0, 0, 400, 400), (300, 0, 700, 400), (600, 0, 1000, 400),
                                          (0, 100, 400, 500), (300, 100, 700, 500),
                                          (600, 100, 1000, 500)]
    assert all((t['width'], t['height']) == (400, 400) for t in tiles)
    assert [t['img_id'] for t in tiles] == list(range(6))
    by_tile = {t['tile']: [(i['bbox'], i['bbox_label']) for i in t['instances']] for t in tiles}
    assert by_tile[(0, 0, 400, 400)] == [([10, 10, 50, 50], 0), ([380, 10, 400, 50], 1),
                                         ([320, 120, 340, 140], 0)]
    assert by_tile[(300, 0, 700, 400)] == [([80, 10, 120, 50], 1), ([20, 120, 40, 140], 0)]
    assert by_tile[(600, 0, 1000, 400)] == [([90, 200, 130, 240], 0)]
    assert by_tile[(0, 100, 400, 500)] == [([320, 20, 340, 40], 0)]
    strict = TiledDataset(src, tile_size=400, overlap=100, min_visible=0.6)
    assert [(i['bbox'], i['bbox_label'])
            for i in strict.get_data_info(0)['instances']] == [([10, 10, 50, 50], 0),
                                                               ([320, 120, 340, 140], 0)]
    ignored = TiledDataset(src, tile_size=400, overlap=100, min_visible=0.6, partial='ignore')
    t1 = {t['tile']: t for t in tiles_of(ignored)}[(300, 0, 700, 400)]
    assert [(i['bbox'], i['ignore_flag']) for i in t1['instances']] == [([80, 10, 120, 50], 0),
                                                                        ([20, 120, 40, 140], 0),
                                                                        ([390, 200, 400, 240], 1)]
    counts = ds.metainfo['tiling']
    assert counts['images'] == 1 and counts['tiles'] == 6 and counts['empty_tiles'] == 0
    # boxes at least half inside, per tile: 3 + 2 + 1 + 1 + 1 + 1; cut below: the box at
    # x 690-730 in the two tiles that end at x=700
    assert counts['boxes'] == dict(kept=9, cut=2)


def test_region_of_a_larger_file_is_tiled_inside_it():
    """A data info with ``crop`` (a region): tiles inside the region, ``crop`` in file pixels."""
    src = ListDataset([image([box(5, 5, 25, 25)], width=300, height=200, crop=(100, 50, 400, 250))])
    tiles = tiles_of(TiledDataset(src, tile_size=200, overlap=50))
    assert [t['crop'] for t in tiles] == [(100, 50, 300, 250), (200, 50, 400, 250)]
    assert [t['tile'] for t in tiles] == [(0, 0, 200, 200), (100, 0, 300, 200)]
    assert tiles[0]['instances'][0]['bbox'] == [5, 5, 25, 25]


def test_empty_tile_rate_is_seeded():
    """A 2000 x 2000 image in 100 tiles of 200 px, one of them with a box."""
    src = ListDataset([image([box(450, 450, 480, 480)], width=2000, height=2000)])

    def kept(rate, seed=0):
        ds = TiledDataset(src, tile_size=200, overlap=0, empty_tile_rate=rate, seed=seed)
        return [t['tile'] for t in tiles_of(ds)], ds.metainfo['tiling']

    all_tiles, counts = kept(1.0)
    assert len(all_tiles) == 100 and counts['empty_tiles'] == 99
    only_boxes, _ = kept(0.0)
    assert only_boxes == [(400, 400, 600, 600)]
    quarter, counts = kept(0.25)
    assert len(quarter) == 1 + 25 and counts['empty_tiles_kept'] == 25  # round(0.25 * 99)
    assert (400, 400, 600, 600) in quarter
    assert quarter == sorted(quarter, key=all_tiles.index)  # in grid order
    assert kept(0.25)[0] == quarter  # the same seed, the same tiles
    assert kept(0.25, seed=1)[0] != quarter
    with pytest.raises(ValueError, match='empty_tile_rate'):
        kept(1.5)


def test_bad_arguments_and_pipeline():
    src = ListDataset([image([])])
    with pytest.raises(ValueError, match='overlap'):
        TiledDataset(src, tile_size=400, overlap=400)
    with pytest.raises(ValueError, match='min_visible'):
        TiledDataset(src, min_visible=1.5)
    with pytest.raises(ValueError, match='LoadImageFromFile, which loads the whole file'):
        TiledDataset(src, pipeline=[dict(type='mmdet.LoadImageFromFile')])
    no_size = ListDataset([dict(img_path='x.png', instances=[])])
    with pytest.raises(KeyError, match="has no 'width'/'height'"):
        TiledDataset(no_size)


def test_tiles_load_their_pixels_and_boxes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    path = str(tmp_path / 'big.png')
    Image.fromarray(rgb).save(path)
    decoded = []
    imfrombytes = mmcv.imfrombytes
    monkeypatch.setattr(mmcv, 'imfrombytes',
                        lambda *a, **k: decoded.append(1) or imfrombytes(*a, **k))
    src = ListDataset([image([box(100, 40, 140, 90, label=1)], 300, 200, path)])
    ds = TiledDataset(
        src,
        tile_size=128,
        overlap=28,
        pipeline=[
            dict(type='mmext.LoadImageCrop'),
            dict(type='mmdet.LoadAnnotations', with_bbox=True),
            dict(
                type='mmdet.PackDetInputs',
                meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'crop'))
        ])
    bgr = rgb[..., ::-1]
    seen_box = 0
    for i in range(len(ds)):
        out = ds[i]
        x1, y1, x2, y2 = out['data_samples'].crop
        assert np.array_equal(out['inputs'].permute(1, 2, 0).numpy(), bgr[y1:y2, x1:x2])
        assert out['data_samples'].img_shape == (y2 - y1, x2 - x1)
        gt = out['data_samples'].gt_instances
        if len(gt):
            seen_box += 1
            clipped = [max(100, x1), max(40, y1), min(140, x2), min(90, y2)]
            assert gt.bboxes.tensor[0].tolist() == [
                clipped[0] - x1, clipped[1] - y1, clipped[2] - x1, clipped[3] - y1
            ]
            assert gt.labels.tolist() == [1]
    assert seen_box >= 1 and len(ds) == 6
    assert len(decoded) == 1  # one decode for the six tiles


def test_load_image_crop_checks(tmp_path):
    path = str(tmp_path / 'a.png')
    Image.new('RGB', (50, 40)).save(path)
    load = LoadImageCrop()
    whole = load(dict(img_path=path))
    assert whole['img'].shape == (40, 50, 3) and whole['ori_shape'] == (40, 50)
    out = load(dict(img_path=path, crop=(10, 5, 30, 25), width=20, height=20))
    assert out['img'].shape == (20, 20, 3)
    out['img'][:] = 255  # later transforms may write into the image: the cache must not change
    assert load(dict(img_path=path))['img'].max() == 0
    with pytest.raises(ValueError, match=r'crop \(10, 5, 60, 25\) is not inside'):
        load(dict(img_path=path, crop=(10, 5, 60, 25)))
    with pytest.raises(ValueError, match='is 20x20, but the data info says 21x20'):
        load(dict(img_path=path, crop=(10, 5, 30, 25), width=21, height=20))
