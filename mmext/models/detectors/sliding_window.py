"""Sliding-window inference: any mmdet-style detector applied to an image of any size, by tiles.

A detector trained on tiles (:class:`mmext.datasets.TiledDataset`) sees a whole aerial image as
the same tiles (:func:`mmext.utils.tiles.tile_windows`: fixed size, overlapping).  Per image:

1. the image is cut into tiles of ``tile_size`` overlapping by ``overlap`` pixels; they go
   through the detector ``batch_tiles`` at a time (``progress=True`` draws mmengine's progress
   bar);
2. each tile's boxes are shifted back to the image's coordinates;
3. with ``center_in_core`` (default), a tile keeps only the boxes whose centre lies in its
   *core*, the part of the tile nearer its own centre than a neighbour's
   (:func:`mmext.utils.tiles.tile_cores`).  An object cut by a tile edge is then taken from the
   neighbour that sees it whole, provided the overlap is at least the object's size: without
   this, the cut (smaller) box and the whole one often overlap too little for NMS to merge them,
   and the object is counted twice;
4. what is left is merged across tiles by ``merge``: class-wise NMS (default) or weighted box
   fusion (:func:`mmext.models.utils.box_merging.merge_detections`); then rescaled to the
   original image (``rescale``) and cut to the ``max_per_img`` best.

An image that fits in one tile goes through the detector once, unchanged: the result is the
detector's own.

The wrapper has no parameters of its own, and its state dict is the detector's (no
``detector.`` prefix, both ways), so a checkpoint of the plain detector, trained on tiles, loads
into the wrapper for ``tools/test.py`` and the other way round.  ``loss`` is the detector's
(train on tiles with the same config, test on whole images).
"""
import sys
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from mmdet.structures import DetDataSample, OptSampleList, SampleList
from mmengine.structures import InstanceData
from mmengine.utils import ProgressBar
from torch import Tensor

from mmext.models.utils.box_merging import merge_detections
from mmext.registry import MODELS, build_with_fallback
from mmext.utils.tiles import TileSize, tile_cores, tile_windows, to_tile_size

__all__ = ['SlidingWindowDetector']

_PREFIX = 'detector.'

# (windows (K, 4) int64) -> (tiles (K, C, h, w) normalised and padded, their data samples)
BatchMaker = Callable[[np.ndarray], Tuple[Tensor, List[DetDataSample]]]


@MODELS.register_module()
class SlidingWindowDetector(BaseDetector):
    """Apply ``detector`` to overlapping tiles of each image and merge the detections.

    Args:
        detector: The detector (config, e.g. ``dict(type='mmdet.FCOS', ...)``, or module) that
            sees one tile at a time; unscoped types that mmext lacks are mmdet's.
        tile_size: Tile side in pixels, or ``(width, height)``: the size the detector was
            trained on (:class:`mmext.datasets.TiledDataset`).
        overlap: Pixels shared by neighbouring tiles; at least the size of the largest objects,
            so that each is whole in some tile.
        merge: How detections of neighbouring tiles are merged: ``dict(type='nms',
            iou_threshold=0.5)`` (default), ``dict(type='wbf', iou_threshold=0.55,
            conf_type='avg')`` or ``dict(type='none')``.
        center_in_core: Keep a tile's box only when its centre is in the tile's core (see the
            module docstring). Defaults to True.
        max_per_img: Keep at most this many detections per image (the best scored); None
            (default): all. A large crop holds hundreds of trees: mind COCO's ``maxDets``.
        batch_tiles: Tiles per forward pass of the detector. Defaults to 4.
        progress: Draw a progress bar over the tiles of each batch of images. Defaults to False
            (``tools/test.py`` logs its own progress).
        data_preprocessor: Defaults to the detector's own (shared, not copied).
        init_cfg: Initialisation config of the wrapper (the detector has its own).
    """

    def __init__(self,
                 detector: Union[dict, nn.Module],
                 tile_size: TileSize = 800,
                 overlap: int = 100,
                 merge: Optional[dict] = None,
                 center_in_core: bool = True,
                 max_per_img: Optional[int] = None,
                 batch_tiles: int = 4,
                 progress: bool = False,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if not isinstance(detector, nn.Module):
            detector = build_with_fallback(MODELS, dict(detector))
        if data_preprocessor is None:
            data_preprocessor = getattr(detector, 'data_preprocessor', None)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.detector = detector
        self.tile_size = to_tile_size(tile_size)
        if not 0 <= overlap < min(self.tile_size):
            raise ValueError(f'overlap must be in [0, {min(self.tile_size)}), got {overlap}')
        if batch_tiles < 1:
            raise ValueError(f'batch_tiles must be >= 1, got {batch_tiles}')
        self.overlap = overlap
        self.merge = dict(merge) if merge is not None else dict(type='nms', iou_threshold=0.5)
        merge_detections(
            torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long),
            self.merge)  # fails now on a bad merge config, not after the tiles
        self.center_in_core = center_in_core
        self.max_per_img = max_per_img
        self.batch_tiles = batch_tiles
        self.progress = progress
        # one state dict for the detector and the wrapper (see the module docstring)
        self.register_state_dict_post_hook(_strip_detector_prefix)
        self.register_load_state_dict_pre_hook(_add_detector_prefix)

    # Training and the plain forward are the detector's (training runs on tiles).
    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Union[dict, tuple]:
        return self.detector.loss(batch_inputs, batch_data_samples)

    def _forward(self, batch_inputs: Tensor, batch_data_samples: OptSampleList = None):
        return self.detector._forward(batch_inputs, batch_data_samples)

    def extract_feat(self, batch_inputs: Tensor):
        return self.detector.extract_feat(batch_inputs)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detect in each image by tiles.

        Args:
            batch_inputs: ``(B, C, H, W)`` images, normalised and padded by the data
                preprocessor; image ``i`` fills ``[:, :h_i, :w_i]`` (its ``img_shape``).
            batch_data_samples: Their data samples (``img_shape``, ``scale_factor``).
            rescale: Return boxes in the original image's pixels (divide by ``scale_factor``).

        Returns:
            list[DetDataSample]: The data samples with ``pred_instances`` (``bboxes (N, 4)``,
            ``scores (N, )``, ``labels (N, )``), by decreasing score.
        """
        shapes = [tuple(s.img_shape[:2]) for s in batch_data_samples]
        bar = self._progress_bar(shapes)
        for img, sample in zip(batch_inputs, batch_data_samples):
            h, w = sample.img_shape[:2]

            def make_batch(windows: np.ndarray, img=img, sample=sample):
                crops, samples = [], []
                for x1, y1, x2, y2 in windows.tolist():
                    crops.append(img[:, y1:y2, x1:x2])
                    samples.append(self._tile_sample(sample, (x1, y1, x2, y2)))
                return self._pad_stack(crops, samples)

            result = self._detect(w, h, make_batch, bar)
            if rescale and 'scale_factor' in sample:
                result.bboxes = result.bboxes / result.bboxes.new_tensor(
                    sample.scale_factor).repeat(2)
            sample.pred_instances = result
        return batch_data_samples

    def predict_image(self, img: Tensor, data_sample: DetDataSample) -> DetDataSample:
        """Detect in one raw image (not preprocessed), preprocessing a batch of tiles at a time.

        The whole image is never normalised at once, so the memory needed is that of the raw
        image plus ``batch_tiles`` tiles: images far larger than what ``predict`` can take.

        Args:
            img: ``(C, H, W)`` raw image (as ``PackDetInputs`` gives it, e.g. uint8 BGR).
            data_sample: Its data sample (``img_shape``, ``ori_shape``, ``img_path``...).

        Returns:
            DetDataSample: ``data_sample`` with ``pred_instances`` in the image's pixels.
        """
        h, w = img.shape[-2:]
        data_sample.set_metainfo(dict(img_shape=(h, w)))
        bar = self._progress_bar([(h, w)])

        def make_batch(windows: np.ndarray):
            crops, samples = [], []
            for x1, y1, x2, y2 in windows.tolist():
                crops.append(img[:, y1:y2, x1:x2])
                samples.append(self._tile_sample(data_sample, (x1, y1, x2, y2)))
            data = self.data_preprocessor(dict(inputs=crops, data_samples=samples), False)
            return data['inputs'], data['data_samples']

        data_sample.pred_instances = self._detect(w, h, make_batch, bar)
        return data_sample

    def _progress_bar(self, shapes: Sequence[Tuple[int, int]]) -> Optional[ProgressBar]:
        if not self.progress:
            return None
        total = sum(len(tile_windows(w, h, self.tile_size, self.overlap)) for h, w in shapes)
        return ProgressBar(total, file=sys.stdout)  # today's stdout, not the one at import

    def _tile_sample(self, sample: DetDataSample, window: Sequence[int]) -> DetDataSample:
        """A data sample for one tile: the image's metainfo, with the tile's shapes."""
        x1, y1, x2, y2 = window
        meta = dict(sample.metainfo)
        meta.update(
            img_shape=(y2 - y1, x2 - x1),
            ori_shape=(y2 - y1, x2 - x1),
            scale_factor=(1., 1.),
            tile=tuple(window))
        return DetDataSample(metainfo=meta)

    def _pad_stack(self, crops: List[Tensor],
                   samples: List[DetDataSample]) -> Tuple[Tensor, List[DetDataSample]]:
        """Normalised ``(C, h, w)`` crops padded as the data preprocessor pads (to a multiple of
        its ``pad_size_divisor``, with its ``pad_value``) and stacked to ``(K, C, H, W)``; their
        samples get ``pad_shape`` and ``batch_input_shape``."""
        divisor = int(getattr(self.data_preprocessor, 'pad_size_divisor', 1) or 1)
        value = float(getattr(self.data_preprocessor, 'pad_value', 0))
        h = max(c.shape[-2] for c in crops)
        w = max(c.shape[-1] for c in crops)
        ph, pw = -(-h // divisor) * divisor, -(-w // divisor) * divisor
        tiles = torch.stack(
            [F.pad(c, (0, pw - c.shape[-1], 0, ph - c.shape[-2]), value=value) for c in crops])
        for s in samples:
            s.set_metainfo(dict(pad_shape=(ph, pw), batch_input_shape=(ph, pw)))
        return tiles, samples

    def _detect(self, width: int, height: int, make_batch: BatchMaker,
                bar: Optional[ProgressBar]) -> InstanceData:
        """Run the detector over the tiles of a ``width`` x ``height`` image and merge."""
        windows = tile_windows(width, height, self.tile_size, self.overlap)
        cores = tile_cores(width, height, self.tile_size, self.overlap)
        parts: List[InstanceData] = []
        for start in range(0, len(windows), self.batch_tiles):
            chunk = windows[start:start + self.batch_tiles]
            tiles, samples = make_batch(chunk)
            preds = self.detector.predict(tiles, samples, rescale=False)
            for window, core, pred in zip(chunk, cores[start:start + len(chunk)], preds):
                parts.append(
                    self._shift_and_own(pred.pred_instances, window, core,
                                        len(windows) > 1))
            if bar is not None:
                bar.update(len(chunk))
        if len(parts) == 1:  # one tile: the detector's own result
            result = parts[0]
        else:
            merged = InstanceData.cat(parts)
            bboxes, scores, labels = merge_detections(merged.bboxes, merged.scores, merged.labels,
                                                      self.merge)
            result = InstanceData(bboxes=bboxes, scores=scores, labels=labels)
        if self.max_per_img is not None and len(result) > self.max_per_img:
            result = result[:self.max_per_img]
        return result

    def _shift_and_own(self, pred: InstanceData, window: np.ndarray, core: np.ndarray,
                       filter_core: bool) -> InstanceData:
        """A tile's ``bboxes``/``scores``/``labels`` in image pixels, keeping the boxes whose
        centre is in the tile's core (when ``filter_core`` and ``center_in_core``)."""
        bboxes = pred.bboxes
        bboxes = bboxes.tensor if hasattr(bboxes, 'tensor') else bboxes  # mmdet BaseBoxes
        shift = bboxes.new_tensor([window[0], window[1], window[0], window[1]])
        out = InstanceData(bboxes=bboxes + shift, scores=pred.scores, labels=pred.labels)
        if filter_core and self.center_in_core and len(out):
            cx = (out.bboxes[:, 0] + out.bboxes[:, 2]) / 2
            cy = (out.bboxes[:, 1] + out.bboxes[:, 3]) / 2
            x1, y1, x2, y2 = (float(v) for v in core)
            out = out[(cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)]
        return out


def _strip_detector_prefix(module: nn.Module, state_dict: dict, prefix: str,
                           local_metadata: dict) -> None:
    """State-dict post hook: ``<prefix>detector.x`` -> ``<prefix>x`` (keys and metadata)."""
    inner = prefix + _PREFIX
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        for key in [k for k in metadata if k == inner[:-1] or k.startswith(inner)]:
            value = metadata.pop(key)
            if key != inner[:-1]:
                metadata[prefix + key[len(inner):]] = value


def _add_detector_prefix(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict,
                         strict: bool, missing_keys: list, unexpected_keys: list,
                         error_msgs: list) -> None:
    """Load pre-hook: a state dict of the bare detector (``<prefix>x``) -> ``<prefix>detector.x``.

    A state dict that already has ``detector.`` keys is left as it is."""
    inner = prefix + _PREFIX
    keys = [k for k in state_dict if k.startswith(prefix)]
    if any(k.startswith(inner) for k in keys):
        return
    for key in keys:
        state_dict[inner + key[len(prefix):]] = state_dict.pop(key)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        for key in [k for k in metadata if k.startswith(prefix) and k != prefix[:-1]]:
            metadata[inner + key[len(prefix):]] = metadata[key]
