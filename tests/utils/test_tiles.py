"""Tile grids, tile cores and boxes clipped to a window (mmext.utils.tiles)."""
import numpy as np
import pytest

from mmext.utils.tiles import axis_starts, clip_to_window, crop_instances, tile_cores, tile_windows


@pytest.mark.parametrize('length,tile,overlap', [(1000, 400, 100), (1249, 400, 100),
                                                 (2472, 400, 64), (400, 400, 50), (401, 400, 0),
                                                 (90, 400, 100)])
def test_axis_covers_whole_tiles_with_the_overlap(length, tile, overlap):
    starts = axis_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length  # from border to border
    assert starts == sorted(set(starts))
    gaps = np.diff(starts)
    assert np.all(gaps <= size - overlap) and np.all(gaps > 0)  # overlap at least `overlap`
    assert np.all(gaps[:-1] == tile - overlap)  # a regular step, except for the last tile


def test_windows_row_major_and_inside():
    win = tile_windows(1000, 500, 400, 100)
    assert win.tolist() == [[0, 0, 400, 400], [300, 0, 700, 400], [600, 0, 1000, 400],
                            [0, 100, 400, 500], [300, 100, 700, 500], [600, 100, 1000, 500]]
    # a side shorter than the tile: tiles as long as that side; rectangular tiles
    assert tile_windows(300, 1000, (400, 600), 100).tolist() == [[0, 0, 300, 600],
                                                                 [0, 400, 300, 1000]]


@pytest.mark.parametrize(
    'bad', [dict(overlap=400),
            dict(overlap=-1),
            dict(tile_size=0),
            dict(tile_size=(400, 300, 2))])
def test_windows_reject_bad_arguments(bad):
    kwargs = dict(width=1000, height=800, tile_size=400, overlap=100)
    kwargs.update(bad)
    with pytest.raises(ValueError):
        tile_windows(**kwargs)


def test_cores_partition_the_image():
    """Every pixel centre lies in exactly one core, and that core's tile contains it with at
    least half the overlap of margin towards inner tile edges."""
    width, height, tile, overlap = 1000, 700, 400, 100
    win = tile_windows(width, height, tile, overlap)
    cores = tile_cores(width, height, tile, overlap)
    ys, xs = np.mgrid[0:height:7, 0:width:7] + 0.5
    pts = np.stack([xs.ravel(), ys.ravel()], 1)
    inside = ((pts[:, None, 0] >= cores[None, :, 0]) & (pts[:, None, 0] < cores[None, :, 2]) &
              (pts[:, None, 1] >= cores[None, :, 1]) & (pts[:, None, 1] < cores[None, :, 3]))
    assert np.all(inside.sum(1) == 1)
    owner = inside.argmax(1)
    w = win[owner]
    margin = np.minimum.reduce([
        np.where(w[:, 0] > 0, pts[:, 0] - w[:, 0], np.inf),
        np.where(w[:, 2] < width, w[:, 2] - pts[:, 0], np.inf),
        np.where(w[:, 1] > 0, pts[:, 1] - w[:, 1], np.inf),
        np.where(w[:, 3] < height, w[:, 3] - pts[:, 1], np.inf)
    ])
    assert margin.min() >= overlap / 2


def test_clip_to_window_shifts_and_measures_visibility():
    boxes = np.array([[10, 10, 30, 30], [90, 10, 110, 30], [200, 200, 220, 220], [5, 5, 5, 9]])
    clipped, visible = clip_to_window(boxes, (0, 0, 100, 100))
    assert clipped[0].tolist() == [10, 10, 30, 30] and visible[0] == 1
    assert clipped[1].tolist() == [90, 10, 100, 30] and visible[1] == pytest.approx(0.5)
    assert visible[2] == 0 and visible[3] == 0  # outside; zero area
    clipped, _ = clip_to_window(boxes[:1], (5, 8, 100, 100))
    assert clipped[0].tolist() == [5, 2, 25, 22]


def test_crop_instances_threshold_and_partial():
    instances = [
        dict(bbox=[10, 10, 30, 30], bbox_label=0, ignore_flag=0),  # whole
        dict(bbox=[80, 10, 120, 30], bbox_label=1, ignore_flag=0),  # half inside
        dict(bbox=[95, 10, 125, 30], bbox_label=0, ignore_flag=0),  # a sixth inside
        dict(bbox=[150, 10, 170, 30], bbox_label=0, ignore_flag=0),  # outside
        dict(bbox=[40, 40, 60, 60], bbox_label=1, ignore_flag=1),  # difficult, stays ignored
    ]
    window = (0, 0, 100, 100)
    kept = crop_instances(instances, window, min_visible=0.5)
    assert [i['bbox'] for i in kept] == [[10, 10, 30, 30], [80, 10, 100, 30], [40, 40, 60, 60]]
    assert [i['ignore_flag'] for i in kept] == [0, 0, 1]
    assert kept[1]['visible_fraction'] == pytest.approx(0.5)
    assert [i['bbox_label'] for i in crop_instances(instances, window, 0.6)] == [0, 1]
    with_ignored = crop_instances(instances, window, 0.6, partial='ignore')
    assert [(i['bbox'], i['ignore_flag']) for i in with_ignored] == [([10, 10, 30, 30], 0),
                                                                     ([80, 10, 100, 30], 1),
                                                                     ([95, 10, 100, 30], 1),
                                                                     ([40, 40, 60, 60], 1)]
    assert instances[1]['bbox'] == [80, 10, 120, 30]  # inputs are not changed
    with pytest.raises(ValueError, match='min_visible'):
        crop_instances(instances, window, 0)
    with pytest.raises(ValueError, match='partial'):
        crop_instances(instances, window, 0.5, partial='keep')
