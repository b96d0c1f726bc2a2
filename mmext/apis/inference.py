"""Detection on an image of any size from Python: ``inference_large_image(model, path)``."""
from typing import Optional, Union

import mmcv
import numpy as np
import torch
import torch.nn as nn
from mmdet.structures import DetDataSample

from mmext.models.detectors.sliding_window import SlidingWindowDetector
from mmext.utils.tiles import TileSize

__all__ = ['inference_large_image']


def inference_large_image(model: nn.Module,
                          image: Union[str, np.ndarray],
                          tile_size: Optional[TileSize] = None,
                          overlap: Optional[int] = None,
                          merge: Optional[dict] = None,
                          batch_tiles: Optional[int] = None,
                          progress: bool = True) -> DetDataSample:
    """Detect objects in a large image by a sliding window, with a progress bar.

    The image is read at its own resolution (no resize: the detector should have been trained on
    tiles of the same ground sample distance), cut into overlapping tiles, each batch of tiles is
    normalised by the model's data preprocessor and detected, and the detections are merged
    (:class:`mmext.models.detectors.SlidingWindowDetector`).  Only the raw image and one batch of
    tiles are in memory at a time.

    Args:
        model: A :class:`SlidingWindowDetector` (its tile size, overlap and merge are the
            defaults here), or any mmdet-style detector, which is then wrapped (``tile_size`` is
            then required). Built e.g. by ``mmdet.apis.init_detector(config, checkpoint)``.
        image: A file path, or an ``(H, W, 3)`` uint8 array in BGR order (as ``mmcv.imread``
            reads it; the data preprocessor's ``bgr_to_rgb`` applies).
        tile_size, overlap, merge, batch_tiles: Override the wrapper's settings.
        progress: Draw mmengine's progress bar over the tiles. Defaults to True.

    Returns:
        DetDataSample: ``pred_instances`` with ``bboxes (N, 4)`` (``x1, y1, x2, y2`` in the
        image's pixels), ``scores (N, )`` and ``labels (N, )``, by decreasing score; metainfo
        ``img_path`` (for a path), ``img_shape`` and ``ori_shape``.
    """
    if isinstance(model, SlidingWindowDetector):
        settings = dict(
            tile_size=model.tile_size,
            overlap=model.overlap,
            merge=model.merge,
            center_in_core=model.center_in_core,
            max_per_img=model.max_per_img,
            batch_tiles=model.batch_tiles)
        detector = model.detector
    else:
        if tile_size is None:
            raise ValueError('inference_large_image: tile_size is required for a detector that '
                             'is not a SlidingWindowDetector')
        settings = dict(overlap=0)
        detector = model
    overrides = dict(tile_size=tile_size, overlap=overlap, merge=merge, batch_tiles=batch_tiles)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    # a wrapper around the same modules (nothing is copied), with these settings
    wrapper = SlidingWindowDetector(
        detector=detector, data_preprocessor=model.data_preprocessor, progress=progress, **settings)

    if isinstance(image, str):
        img_path: Optional[str] = image
        array = mmcv.imread(image)  # BGR, as mmdet's LoadImageFromFile
        if array is None:
            raise FileNotFoundError(f'inference_large_image: cannot read {image}')
    else:
        img_path, array = None, np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f'inference_large_image: expected an (H, W, C) image, got shape '
                         f'{array.shape}')
    h, w = array.shape[:2]
    meta = dict(img_id=0, ori_shape=(h, w), img_shape=(h, w), scale_factor=(1., 1.))
    if img_path is not None:
        meta['img_path'] = img_path
    sample = DetDataSample(metainfo=meta)
    inputs = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return wrapper.predict_image(inputs, sample)
    finally:
        model.train(was_training)
