"""Load a crop of an image file: the tile (or region) that a data info's ``crop`` names.

mmcv's ``LoadImageFromFile`` decodes the whole file for every sample.  Tiles of a large image
(:class:`mmext.datasets.TiledDataset`) would then decode a 15 MB PNG for each 400x400 tile;
:class:`LoadImageCrop` keeps the last decoded images of each worker in a small cache and copies
the crop out of them.
"""
from collections import OrderedDict
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio

from mmext.registry import TRANSFORMS

__all__ = ['LoadImageCrop']


@TRANSFORMS.register_module()
class LoadImageCrop(BaseTransform):
    """Load ``results['img_path']`` and cut out ``results['crop']`` (the whole image without one).

    Required keys: ``img_path``; optional ``crop`` ``(x1, y1, x2, y2)`` in the file's pixels
    (``x2``/``y2`` exclusive), and ``width``/``height`` (checked against the crop's size).

    Added keys: ``img`` ``(h, w, 3)`` uint8 (or float32), ``img_shape``, ``ori_shape`` (both
    ``(h, w)`` of the crop), as mmcv's ``LoadImageFromFile``; boxes in the data info are in the
    crop's coordinates.

    Args:
        to_float32: Return a float32 image (as ``LoadImageFromFile``). Defaults to False.
        color_type: ``mmcv.imfrombytes`` flag. Defaults to ``'color'`` (BGR).
        imdecode_backend: ``mmcv.imfrombytes`` backend. Defaults to ``'cv2'``.
        cache_size: Decoded images kept per process (least recently used goes first); 0 turns
            the cache off. Defaults to 4.
        backend_args: ``mmengine.fileio`` backend arguments.
    """

    def __init__(self,
                 to_float32: bool = False,
                 color_type: str = 'color',
                 imdecode_backend: str = 'cv2',
                 cache_size: int = 4,
                 backend_args: Optional[dict] = None) -> None:
        if cache_size < 0:
            raise ValueError(f'cache_size must be >= 0, got {cache_size}')
        self.to_float32 = to_float32
        self.color_type = color_type
        self.imdecode_backend = imdecode_backend
        self.cache_size = cache_size
        self.backend_args = backend_args.copy() if backend_args else None
        self._cache: 'OrderedDict[str, np.ndarray]' = OrderedDict()

    def _image(self, path: str) -> np.ndarray:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        img = mmcv.imfrombytes(
            fileio.get(path, backend_args=self.backend_args),
            flag=self.color_type,
            backend=self.imdecode_backend)
        if img is None:
            raise ValueError(f'LoadImageCrop: could not decode {path}')
        if self.cache_size:
            self._cache[path] = img
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return img

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        img = self._image(path)
        crop = results.get('crop')
        if crop is not None:
            x1, y1, x2, y2 = (int(v) for v in crop)
            h, w = img.shape[:2]
            if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
                raise ValueError(f'LoadImageCrop: crop {tuple(crop)} is not inside {path} '
                                 f'({w}x{h})')
            img = img[y1:y2, x1:x2]
        size = (results.get('width', img.shape[1]), results.get('height', img.shape[0]))
        if size != (img.shape[1], img.shape[0]):
            raise ValueError(f'LoadImageCrop: {path} (crop {crop}) is {img.shape[1]}x'
                             f'{img.shape[0]}, but the data info says {size[0]}x{size[1]}')
        # a copy: later transforms may change the image in place, and the cache must not change
        img = img.astype(np.float32) if self.to_float32 else img.copy()
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(to_float32={self.to_float32}, '
                f"color_type='{self.color_type}', imdecode_backend='{self.imdecode_backend}', "
                f'cache_size={self.cache_size}, backend_args={self.backend_args})')
