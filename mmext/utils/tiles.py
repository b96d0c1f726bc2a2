"""Tile grids over large images and boxes clipped to a tile (numpy only; lean core).

Shared by the tiling dataset wrapper (:class:`mmext.datasets.TiledDataset`, training on tiles) and
the sliding-window detector (:class:`mmext.models.detectors.SlidingWindowDetector`, inference on a
whole image), so that both cut an image the same way.

Conventions: boxes and windows are ``(x1, y1, x2, y2)`` in pixels, ``x2``/``y2`` exclusive (a
window ``(0, 0, 400, 400)`` covers pixel columns 0..399), as mmdet's boxes.
"""
from typing import List, Sequence, Tuple, Union

import numpy as np

__all__ = [
    'TileSize', 'to_tile_size', 'axis_starts', 'tile_windows', 'tile_cores', 'clip_to_window',
    'crop_instances'
]

#: A square tile side in pixels, or ``(width, height)``.
TileSize = Union[int, Sequence[int]]


def to_tile_size(tile_size: TileSize) -> Tuple[int, int]:
    """``tile_size`` as ``(width, height)``, checked to be positive integers."""
    if isinstance(tile_size, (int, np.integer)):
        size = (int(tile_size), int(tile_size))
    else:
        size = tuple(int(s) for s in tile_size)
        if len(size) != 2 or any(s != t for s, t in zip(size, tile_size)):
            raise ValueError(f'tile_size must be an int or (width, height), got {tile_size!r}')
    if min(size) < 1:
        raise ValueError(f'tile_size must be positive, got {tile_size!r}')
    return size  # type: ignore[return-value]


def axis_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of tiles of ``tile`` px along an axis of ``length`` px.

    Tiles step by ``tile - overlap`` from 0; the last one is moved back to end at ``length`` (it
    then overlaps its neighbour by more than ``overlap``), so every tile is whole.  An axis no
    longer than a tile has one tile, starting at 0 (and as long as the axis).

    Example: ``axis_starts(1000, 400, 100) == [0, 300, 600]``.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f'overlap must be in [0, tile size {tile}), got {overlap}')
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def _checked(width: int, height: int, tile_size: TileSize, overlap: int) -> Tuple[int, int]:
    """The tile size actually used, ``(min(tile_w, width), min(tile_h, height))``, after checking
    the image size and that ``overlap`` is below the requested tile size."""
    tw, th = to_tile_size(tile_size)
    if width < 1 or height < 1:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    if not 0 <= overlap < min(tw, th):
        raise ValueError(f'overlap must be in [0, {min(tw, th)}) for tiles of {tw}x{th} px, '
                         f'got {overlap}')
    return min(tw, width), min(th, height)


def tile_windows(width: int, height: int, tile_size: TileSize, overlap: int) -> np.ndarray:
    """The tiles covering a ``width`` x ``height`` image, row by row.

    Args:
        width, height: Image size in pixels.
        tile_size: Tile side, or ``(width, height)``; an image side shorter than the tile gives
            tiles as long as that side.
        overlap: Pixels shared by neighbouring tiles (at least; see :func:`axis_starts`).

    Returns:
        np.ndarray: ``(N, 4)`` int64 windows ``(x1, y1, x2, y2)``, ``N = nx * ny``, in row-major
        order (``x`` fastest).
    """
    tw, th = _checked(width, height, tile_size, overlap)
    xs = axis_starts(width, tw, min(overlap, tw - 1))
    ys = axis_starts(height, th, min(overlap, th - 1))
    windows = [(x, y, x + tw, y + th) for y in ys for x in xs]
    return np.asarray(windows, dtype=np.int64).reshape(-1, 4)


def _axis_cores(starts: List[int], tile: int) -> List[Tuple[float, float]]:
    """The part of an axis each tile owns: overlaps are cut at their middle; the first and last
    cores extend to -inf/+inf so that every point belongs to exactly one core."""
    bounds = [-np.inf]
    for left, right in zip(starts[:-1], starts[1:]):
        bounds.append((right + left + tile) / 2)  # middle of [right, left + tile)
    bounds.append(np.inf)
    return list(zip(bounds[:-1], bounds[1:]))


def tile_cores(width: int, height: int, tile_size: TileSize, overlap: int) -> np.ndarray:
    """For each window of :func:`tile_windows`, the region it *owns*.

    The overlap of two neighbouring tiles is split at its middle, so the cores partition the
    plane (half-open intervals ``[x1, x2)``; the outer ones are unbounded).  A point of the image
    lies in exactly one core, and the core of a tile lies inside the tile shrunk by half the
    overlap on each inner side: an object whose centre is in a tile's core and whose half-size is
    at most half the overlap lies whole inside that tile.

    Returns:
        np.ndarray: ``(N, 4)`` float64 ``(x1, y1, x2, y2)``, in the order of
        :func:`tile_windows`.
    """
    tw, th = _checked(width, height, tile_size, overlap)
    xs = _axis_cores(axis_starts(width, tw, min(overlap, tw - 1)), tw)
    ys = _axis_cores(axis_starts(height, th, min(overlap, th - 1)), th)
    cores = [(x1, y1, x2, y2) for y1, y2 in ys for x1, x2 in xs]
    return np.asarray(cores, dtype=np.float64).reshape(-1, 4)


def clip_to_window(boxes: np.ndarray, window: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to ``window`` and the fraction of each box's area that stays visible.

    Args:
        boxes: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``.
        window: ``(x1, y1, x2, y2)``.

    Returns:
        tuple: ``(clipped, visible)``: ``(N, 4)`` boxes in the window's coordinates (shifted by
        its top-left corner; a box outside it collapses to zero size) and ``(N, )`` visible
        fractions in ``[0, 1]`` (area of the clipped box over area of the box; 0 for a box of
        zero area).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    wx1, wy1, wx2, wy2 = (float(v) for v in window)
    x1 = np.clip(boxes[:, 0], wx1, wx2)
    y1 = np.clip(boxes[:, 1], wy1, wy2)
    x2 = np.clip(boxes[:, 2], wx1, wx2)
    y2 = np.clip(boxes[:, 3], wy1, wy2)
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    inside = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    visible = np.divide(inside, area, out=np.zeros_like(area), where=area > 0)
    clipped = np.stack([x1 - wx1, y1 - wy1, x2 - wx1, y2 - wy1], axis=1)
    return clipped, visible


def crop_instances(instances: Sequence[dict],
                   window: Sequence[float],
                   min_visible: float = 0.5,
                   partial: str = 'drop') -> List[dict]:
    """mmdet-style instances (``bbox``, ``bbox_label``, ``ignore_flag``) of an image, as seen
    through ``window``: boxes clipped to it and shifted to its coordinates.

    Args:
        instances: The image's instances; each ``bbox`` is ``[x1, y1, x2, y2]``.
        window: ``(x1, y1, x2, y2)`` in the image's coordinates.
        min_visible: Least fraction of a box's area inside the window for it to be kept as an
            object (``(0, 1]``). A box with no area inside is always left out.
        partial: What becomes of a box with some area inside but less than ``min_visible``:
            ``'drop'`` leaves it out; ``'ignore'`` keeps it (clipped) with ``ignore_flag=1``, so
            that heads which honour ignored boxes neither reward nor punish a detection there.

    Returns:
        list[dict]: Copies of the kept instances (other keys unchanged), in their order, with
        ``bbox`` clipped and shifted and ``visible_fraction`` added.
    """
    if not 0 < min_visible <= 1:
        raise ValueError(f'min_visible must be in (0, 1], got {min_visible}')
    if partial not in ('drop', 'ignore'):
        raise ValueError(f"partial must be 'drop' or 'ignore', got {partial!r}")
    if not instances:
        return []
    clipped, visible = clip_to_window(np.array([i['bbox'] for i in instances]), window)
    out = []
    for inst, box, vis in zip(instances, clipped, visible):
        if vis <= 0 or (vis < min_visible and partial == 'drop'):
            continue
        new = dict(inst, bbox=[float(v) for v in box], visible_fraction=float(vis))
        if vis < min_visible:
            new['ignore_flag'] = 1
        out.append(new)
    return out
