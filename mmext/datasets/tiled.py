"""A dataset wrapper that cuts large images into fixed-size, overlapping tiles (training on tiles).

Aerial and microscopy images are far larger than what a detector takes in one step, and their
objects are small: a detector is trained on tiles and applied to a whole image by a sliding
window (:class:`mmext.models.detectors.SlidingWindowDetector`, same tile grid).
:class:`TiledDataset` turns each image of a detection dataset (mmdet's data list format) into
the tiles of :func:`mmext.utils.tiles.tile_windows`:

* each tile is a data info of its own, with ``crop=(x1, y1, x2, y2)`` (in the file's pixels),
  ``width``/``height`` of the tile and its instances: boxes clipped to the tile and shifted to
  its coordinates, kept when at least ``min_visible`` of their area is inside (below that they
  are dropped, or kept as ignored with ``partial='ignore'``);
* tiles without any (non-ignored) box are kept at ``empty_tile_rate``: that fraction of them,
  chosen once with ``seed``, so the same arguments always give the same tiles;
* the pipeline starts with ``mmext.LoadImageCrop`` (checked), which decodes each image once per
  worker and cuts the tile out of it.

An image whose data info already has a ``crop`` (a region of a larger file, as the train and val
parts of :class:`mmext.datasets.NeonTreesDataset`) is tiled inside that region only.
"""
import copy
from typing import Any, List, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmext.registry import DATASETS
from mmext.utils.tiles import TileSize, clip_to_window, crop_instances, tile_windows, to_tile_size

__all__ = ['TiledDataset', 'check_crop_pipeline']

# info keys that describe the source image as a whole; a tile sets its own
_IMAGE_KEYS = ('instances', 'sample_idx', 'crop', 'width', 'height', 'img_id')


def check_crop_pipeline(pipeline: Any, owner: str) -> None:
    """Refuse a pipeline that would load the whole file where data infos name a crop of it.

    ``LoadImageFromFile`` ignores ``crop``: the image would be the whole file and the boxes,
    given in the crop's coordinates, would land on the wrong trees without any error.
    """
    names = [type(t).__name__ for t in getattr(pipeline, 'transforms', [])]
    if 'LoadImageFromFile' in names:
        raise ValueError(
            f"{owner}: the data infos are crops of larger images (key 'crop'), but the pipeline "
            'starts with LoadImageFromFile, which loads the whole file (the boxes would not fit '
            "it): use dict(type='mmext.LoadImageCrop') instead")


def _has_object(instances: Sequence[dict]) -> bool:
    return any(not inst.get('ignore_flag', 0) for inst in instances)


@DATASETS.register_module()
class TiledDataset(BaseDataset):
    """The tiles of every image of ``dataset``, each a data info of its own.

    Args:
        dataset: The dataset of whole images (config or instance), in mmdet's data list format
            (``img_path``, ``width``, ``height``, ``instances`` with ``bbox`` ``[x1, y1, x2,
            y2]``); its own pipeline is not used.
        tile_size: Tile side in pixels, or ``(width, height)``. An image side shorter than the
            tile gives tiles as long as that side.
        overlap: Pixels shared by neighbouring tiles (at least; the last tile of a row or column
            is moved back to end at the image border, so every tile is whole). Use the size of
            the largest objects, so that each is whole in at least one tile.
        min_visible: Least fraction of a box's area inside a tile for it to be an object of that
            tile, in ``(0, 1]``. Defaults to 0.5.
        partial: ``'drop'`` (default) or ``'ignore'``: what becomes of a box cut by the tile
            edge below ``min_visible`` (``'ignore'`` keeps it with ``ignore_flag=1``).
        empty_tile_rate: Fraction of the tiles without any box that are kept, in ``[0, 1]``
            (1: all, the default; 0: none). The kept ones are chosen once, with ``seed``.
        seed: Seed of that choice.
        pipeline: Transforms of a tile; start with ``dict(type='mmext.LoadImageCrop')``.
        test_mode, lazy_init, serialize_data, max_refetch: As ``mmengine.BaseDataset``.

    ``metainfo`` is the wrapped dataset's, plus ``tiling``: counts of source images, tiles, tiles
    without boxes (and how many of them were kept) and boxes per tile (``kept``: at least
    ``min_visible`` inside; ``cut``: less, dropped or ignored as ``partial`` says; a box in the
    overlap of two tiles counts in each).
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 tile_size: TileSize = 400,
                 overlap: int = 0,
                 min_visible: float = 0.5,
                 partial: str = 'drop',
                 empty_tile_rate: float = 1.0,
                 seed: int = 0,
                 pipeline: Sequence[Union[dict, Any]] = (),
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 serialize_data: bool = True,
                 max_refetch: int = 1000) -> None:
        self.tile_size = to_tile_size(tile_size)
        if not 0 <= overlap < min(self.tile_size):
            raise ValueError(f'overlap must be in [0, {min(self.tile_size)}), got {overlap}')
        if not 0 <= empty_tile_rate <= 1:
            raise ValueError(f'empty_tile_rate must be in [0, 1], got {empty_tile_rate}')
        crop_instances([], (0, 0, 1, 1), min_visible, partial)  # checks both arguments
        self.overlap = overlap
        self.min_visible = min_visible
        self.partial = partial
        self.empty_tile_rate = empty_tile_rate
        self.seed = seed
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        super().__init__(
            ann_file='',
            metainfo=copy.deepcopy(dict(self.dataset.metainfo)),
            pipeline=list(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            serialize_data=serialize_data,
            max_refetch=max_refetch)

    def load_data_list(self) -> List[dict]:
        check_crop_pipeline(self.pipeline, type(self).__name__)
        self.dataset.full_init()
        tiles: List[dict] = []
        boxes = dict(kept=0, cut=0)
        for idx in range(len(self.dataset)):
            info = self.dataset.get_data_info(idx)
            tiles += self._tiles_of(info, idx, boxes)
        empty = [i for i, t in enumerate(tiles) if not _has_object(t['instances'])]
        n_keep = int(round(self.empty_tile_rate * len(empty)))
        rng = np.random.default_rng(self.seed)
        kept_empty = set(rng.choice(len(empty), size=n_keep, replace=False).tolist())
        dropped = {t for k, t in enumerate(empty) if k not in kept_empty}
        data_list = [t for i, t in enumerate(tiles) if i not in dropped]
        for img_id, tile in enumerate(data_list):
            tile['img_id'] = img_id
        self._metainfo['tiling'] = dict(
            images=len(self.dataset),
            tiles=len(tiles),
            empty_tiles=len(empty),
            empty_tiles_kept=n_keep,
            boxes=boxes)
        print_log(
            f'TiledDataset: {len(self.dataset)} image(s) -> {len(tiles)} tiles of '
            f'{self.tile_size[0]}x{self.tile_size[1]} (overlap {self.overlap}); '
            f'{len(empty)} without boxes, {n_keep} of them kept; {len(data_list)} tiles',
            logger='current')
        return data_list

    def _tiles_of(self, info: dict, source_idx: int, boxes: dict) -> List[dict]:
        """The tiles of one source image (``boxes`` accumulates the box counts)."""
        if 'width' not in info or 'height' not in info:
            raise KeyError(f"TiledDataset: the data info of {info.get('img_path')} has no "
                           "'width'/'height'; the wrapped dataset must give the image size")
        width, height = int(info['width']), int(info['height'])
        ox, oy = info.get('crop', (0, 0, width, height))[:2]
        base = {k: v for k, v in info.items() if k not in _IMAGE_KEYS}
        instances = info.get('instances', [])
        bboxes = np.array([i['bbox'] for i in instances], dtype=np.float64).reshape(-1, 4)
        tiles = []
        for win in tile_windows(width, height, self.tile_size, self.overlap):
            x1, y1, x2, y2 = (int(v) for v in win)
            visible = clip_to_window(bboxes, (x1, y1, x2, y2))[1]
            boxes['kept'] += int((visible >= self.min_visible).sum())
            boxes['cut'] += int(((visible > 0) & (visible < self.min_visible)).sum())
            tiles.append(
                dict(
                    base,
                    source_idx=source_idx,
                    source_img_id=info.get('img_id'),
                    tile=(x1, y1, x2, y2),
                    crop=(ox + x1, oy + y1, ox + x2, oy + y2),
                    width=x2 - x1,
                    height=y2 - y1,
                    instances=crop_instances(instances, (x1, y1, x2, y2), self.min_visible,
                                             self.partial)))
        return tiles

    def get_cat_ids(self, idx: int) -> List[int]:
        """Labels of the (non-ignored) boxes of tile ``idx`` (for class-aware samplers)."""
        return [
            i['bbox_label'] for i in self.get_data_info(idx)['instances']
            if not i.get('ignore_flag', 0)
        ]
