"""scikit-learn's bundled handwritten digits as a small, real, download-free classification set.

The data are the 1,797 8x8 images of the UCI "Optical Recognition of Handwritten Digits" test
set (Alpaydin & Kaynak, 1998) that ship inside scikit-learn (:func:`sklearn.datasets.load_digits`
reads a CSV from the installed package; nothing is downloaded).  This module turns them into

* :func:`load_digits_arrays` -- plain numpy arrays of one split, and
* :class:`DigitsDataset` -- an mmengine ``BaseDataset`` whose samples feed mmpretrain's
  ``PackInputs`` directly (no ``LoadImageFromFile`` in the pipeline).

Stable API (other components build on it; keep it unchanged):

``load_digits_arrays(split, image_size=32, val_fraction=0.2, seed=0) -> (images, labels)``
    ``split`` is ``'train'`` or ``'val'``; ``images`` is a ``uint8`` array ``(N, S, S)`` with
    ``S = image_size`` and values in 0..255 (the original 0..16 grey levels times 255/16, then
    resized with bilinear interpolation, half-pixel centres, i.e. ``align_corners=False``),
    ``labels`` is ``int64`` ``(N,)`` in 0..9.

``DigitsDataset(split='train', image_size=32, val_fraction=0.2, seed=0, channels=1, ...)``
    Each ``data_list`` entry is ``dict(img=<uint8 (S, S) or (S, S, 3)>, gt_label=<int>,
    img_shape=(S, S), ori_shape=(S, S), sample_idx=<int>)``; ``metainfo['classes']`` is
    ``('0', ..., '9')``.  ``channels=3`` repeats the grey channel (for RGB backbones).

The split is held out and stratified: within every class the images are shuffled with a
``numpy.random.default_rng(seed)`` stream and the first ``round(val_fraction * n_class)`` go to
``'val'``, the rest to ``'train'``.  Both splits are returned in the original dataset order, so
the same arguments give identical arrays on every run and machine, the two splits never share an
image, and their union is the whole set.  With the defaults: 1,438 train and 359 val images.
"""
import functools
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dataset import BaseDataset

from mmext.registry import DATASETS

__all__ = [
    'DIGITS_CLASSES', 'DIGITS_METAINFO', 'load_digits_arrays', 'digits_split_indices',
    'DigitsDataset'
]

#: Class names: the digit each label stands for.
DIGITS_CLASSES: Tuple[str, ...] = tuple(str(d) for d in range(10))
DIGITS_METAINFO: Dict[str, Any] = dict(classes=DIGITS_CLASSES)

_SPLITS = ('train', 'val')
_MAX_GREY = 16.0  # load_digits stores 17 grey levels, 0..16


@functools.lru_cache(maxsize=1)
def _raw_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The full set as ``float32 (1797, 8, 8)`` in 0..16 and ``int64 (1797,)``; read once."""
    from sklearn.datasets import load_digits  # import here: sklearn is slow to import
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)  # cached: callers get copies
    labels.setflags(write=False)
    return images, labels


def _check_args(split: str, image_size: int, val_fraction: float) -> None:
    if split not in _SPLITS:
        raise ValueError(f"digits split must be one of {_SPLITS}, got {split!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < 1:
        raise ValueError(f'digits image_size must be a positive int, got {image_size!r}')
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f'digits val_fraction must be in (0, 1), got {val_fraction!r}')


def digits_split_indices(split: str, val_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Indices (into ``load_digits()``, ascending) of the images in ``split``."""
    _check_args(split, 1, val_fraction)
    _, labels = _raw_digits()
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    for cls in range(len(DIGITS_CLASSES)):  # stratified: the same fraction of every class
        members = np.flatnonzero(labels == cls)
        num_val = int(round(val_fraction * len(members)))
        is_val[rng.permutation(members)[:num_val]] = True
    return np.flatnonzero(is_val if split == 'val' else ~is_val)


def load_digits_arrays(split: str,
                       image_size: int = 32,
                       val_fraction: float = 0.2,
                       seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """One split of the digits as ``(uint8 (N, S, S) images in 0..255, int64 (N,) labels)``.

    Args:
        split: ``'train'`` or ``'val'`` (the held-out part).
        image_size: Side ``S`` of the returned square images (the originals are 8x8).
        val_fraction: Fraction of every class held out for ``'val'``.
        seed: Seed of the split's shuffle.
    """
    _check_args(split, image_size, val_fraction)
    raw, labels = _raw_digits()
    idx = digits_split_indices(split, val_fraction, seed)
    images = torch.from_numpy(raw[idx] * (255.0 / _MAX_GREY))[:, None]
    if image_size != raw.shape[-1]:
        # Bilinear (smooth) rather than nearest, so strokes do not become 8x8 blocks;
        # antialias only matters (and is only used) when shrinking.
        images = F.interpolate(
            images,
            size=(image_size, image_size),
            mode='bilinear',
            align_corners=False,
            antialias=image_size < raw.shape[-1])
    images = images[:, 0].round_().clamp_(0, 255).to(torch.uint8).numpy()
    return images, labels[idx].copy()


@DATASETS.register_module()
class DigitsDataset(BaseDataset):
    """The scikit-learn digits as an mmpretrain-style classification dataset (in memory).

    Args:
        split: ``'train'`` or ``'val'``; see :func:`load_digits_arrays`.
        image_size: Side of the square images.
        val_fraction: Fraction of every class held out for ``'val'``.
        seed: Seed of the stratified split.
        channels: 1 (grey, ``img`` is ``(S, S)``) or 3 (grey repeated, ``img`` is
            ``(S, S, 3)``).
        pipeline: Transforms applied to each sample, e.g.
            ``[dict(type='mmpretrain.PackInputs')]``; no image loading is needed.
        **kwargs: Further :class:`mmengine.dataset.BaseDataset` arguments (``metainfo``,
            ``test_mode``, ``indices``, ``lazy_init``, ``serialize_data``, ...).
    """

    METAINFO = DIGITS_METAINFO

    def __init__(self,
                 split: str = 'train',
                 image_size: int = 32,
                 val_fraction: float = 0.2,
                 seed: int = 0,
                 channels: int = 1,
                 pipeline: Sequence[Union[dict, Any]] = (),
                 **kwargs: Any) -> None:
        _check_args(split, image_size, val_fraction)
        if channels not in (1, 3):
            raise ValueError(f'DigitsDataset channels must be 1 or 3, got {channels!r}')
        for key in ('ann_file', 'data_root', 'data_prefix'):
            if kwargs.get(key):  # an on-disk config copied over by mistake
                raise ValueError(f'DigitsDataset reads scikit-learn\'s bundled data and takes no '
                                 f'{key} (got {kwargs[key]!r})')
            kwargs.pop(key, None)
        self.split = split
        self.image_size = int(image_size)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.channels = int(channels)
        super().__init__(pipeline=list(pipeline), **kwargs)

    def load_data_list(self) -> List[dict]:
        images, labels = load_digits_arrays(self.split, self.image_size, self.val_fraction,
                                            self.seed)
        if self.channels == 3:
            images = np.repeat(images[..., None], 3, axis=-1)
        shape = (self.image_size, self.image_size)
        return [
            dict(
                img=np.ascontiguousarray(img),
                gt_label=int(label),
                img_shape=shape,
                ori_shape=shape,
                sample_idx=i) for i, (img, label) in enumerate(zip(images, labels))
        ]

    def get_cat_ids(self, idx: int) -> List[int]:
        """The label of sample ``idx`` (used by class-balanced wrappers)."""
        return [int(self.get_data_info(idx)['gt_label'])]

    def get_gt_labels(self) -> np.ndarray:
        """All labels, in sample order (mmpretrain datasets expose the same method)."""
        return np.array([self.get_data_info(i)['gt_label'] for i in range(len(self))],
                        dtype=np.int64)

    def extra_repr(self) -> Optional[str]:
        return (f'split={self.split}, image_size={self.image_size}, channels={self.channels}, '
                f'val_fraction={self.val_fraction}, seed={self.seed}')

    def __repr__(self) -> str:
        head = f'{type(self).__name__}({self.extra_repr()}'
        if self._fully_initialized:
            head += f', num_samples={len(self)}'
        return head + ')'
