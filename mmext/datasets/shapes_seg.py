"""A small, deterministic, on-disk semantic/instance segmentation dataset of coloured shapes.

The segmentation twin of :mod:`mmext.datasets.shapes`: the same backgrounds, shape outlines and
colouring (its :class:`~mmext.datasets.shapes.ShapesDetectionGenerator` methods are reused), but
every painted pixel is recorded, so the dataset carries exact per-pixel labels.
:func:`ensure_shapes_seg_dataset` writes, in mmseg's layout::

    <root>/img_dir/{train,val}/000000.png   RGB images
    <root>/ann_dir/{train,val}/000000.png   per-pixel class maps (8-bit grey PNG)
    <root>/inst_dir/{train,val}/000000.png  per-pixel instance ids (8-bit grey PNG)
    <root>/meta.json                        generator version + parameters ("complete" mark)

the first time it is called, and does nothing afterwards while the parameters stay the same.

Label semantics of ``ann_dir``: ``0`` is background and ``k >= 1`` is ``SHAPES_CLASSES[k - 1]``
(the visible part of the shape; later shapes cover earlier ones).  There are no ignored pixels in
the files.  Two ways to read them (both with mmseg's ``LoadAnnotations``):

* ``reduce_zero_label=False`` (:data:`SHAPES_SEG_METAINFO`, the demo's choice): 5 classes,
  background is class 0 and is learnt and scored like any other;
* ``reduce_zero_label=True`` (:data:`SHAPES_SEG_METAINFO_NO_BG`, ADE20K's convention): background
  becomes 255 (ignored in the loss and in ``IoUMetric``) and the shapes are classes 0..3.

``inst_dir`` holds ``0`` for background and ``i >= 1`` for the ``i``-th visible shape of the image
(its class is the ``ann_dir`` value under it); shapes hidden entirely by later ones get no id.

Everything is drawn from ``numpy.random.Generator`` streams seeded by ``(seed, split, index)``
(a different stream family from the detection set), so the files are byte-identical across runs.
"""
from functools import partial
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
from mmseg.datasets import BaseSegDataset
from PIL import Image

from mmext.registry import DATASETS
from mmext.utils.progress import track

from .generated_dir import META_FILE, ensure_generated
from .shapes import (SHAPES_CLASSES, SHAPES_PALETTE, ShapesDetectionGenerator, check_shapes_cfg,
                     shapes_cfg_keys)

__all__ = [
    'SHAPES_SEG_CLASSES', 'SHAPES_SEG_METAINFO', 'SHAPES_SEG_METAINFO_NO_BG',
    'ShapesSegmentationGenerator', 'ensure_shapes_seg_dataset', 'ShapesSegDataset'
]

#: Classes of the label maps read with ``reduce_zero_label=False``.
SHAPES_SEG_CLASSES: Tuple[str, ...] = ('background', ) + tuple(SHAPES_CLASSES)
SHAPES_SEG_METAINFO: Dict[str, Any] = dict(
    classes=SHAPES_SEG_CLASSES, palette=[(0, 0, 0)] + list(SHAPES_PALETTE))
#: Classes when read with ``reduce_zero_label=True`` (background ignored).
SHAPES_SEG_METAINFO_NO_BG: Dict[str, Any] = dict(
    classes=tuple(SHAPES_CLASSES), palette=list(SHAPES_PALETTE))

#: Bump whenever the rendered content changes, so cached datasets are regenerated.
SEG_GENERATOR_VERSION = 1
_SPLITS = ('train', 'val')
_DIRS = ('img_dir', 'ann_dir', 'inst_dir')
_OWNED_ENTRIES = set(_DIRS) | {META_FILE}
_STREAM = 7  # keeps these images' random streams apart from the detection set's


class ShapesSegmentationGenerator(ShapesDetectionGenerator):
    """Renders shapes images with exact class and instance maps.

    Same arguments as :class:`~mmext.datasets.shapes.ShapesDetectionGenerator`
    (``min_visible`` is unused: every visible pixel is labelled); ``max_objects`` is capped at
    254 so instance ids fit a byte.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.max_objects > 254:
            raise ValueError(f'max_objects must be <= 254 for 8-bit instance maps, got '
                             f'{self.max_objects}')

    def render_seg(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render one image; returns ``(image HxWx3 uint8, classes HxW uint8, instances HxW
        uint8)`` with the label semantics of the module docstring."""
        image, owner, shapes = self.paint(rng)
        size = self.img_size
        classes = np.zeros((size, size), dtype=np.uint8)
        instances = np.zeros((size, size), dtype=np.uint8)
        next_id = 1
        for k, (label, _, _) in enumerate(shapes):
            visible = owner == k
            if visible.any():
                classes[visible] = label + 1
                instances[visible] = next_id
                next_id += 1
        return image, classes, instances

    def write_seg_split(self, root: Union[str, Path], split: str, num_images: int,
                        seed: int) -> Dict[str, int]:
        """Write one split's three PNGs per image; returns pixel counts per class id."""
        if split not in _SPLITS:
            raise ValueError(f'split must be one of {_SPLITS}, got {split!r}')
        dirs = [Path(root) / d / split for d in _DIRS]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        counts = np.zeros(len(SHAPES_SEG_CLASSES), dtype=np.int64)
        for index in track(range(num_images), f'shapes_seg: {split} images'):
            rng = np.random.default_rng([seed, _STREAM, _SPLITS.index(split), index])
            image, classes, instances = self.render_seg(rng)
            name = f'{index:06d}.png'
            Image.fromarray(image, mode='RGB').save(dirs[0] / name, format='PNG')
            Image.fromarray(classes, mode='L').save(dirs[1] / name, format='PNG')
            Image.fromarray(instances, mode='L').save(dirs[2] / name, format='PNG')
            counts += np.bincount(classes.ravel(), minlength=len(counts))
        return {c: int(n) for c, n in zip(SHAPES_SEG_CLASSES, counts)}


def _seg_files_complete(root: Path, num_images: Dict[str, int]) -> bool:
    """Whether ``root`` holds the three PNGs of every image of both splits."""
    return all(
        sum(1 for _ in (root / d / split).glob('*.png')) == num_images[split] for split in _SPLITS
        for d in _DIRS)


def ensure_shapes_seg_dataset(root: Union[str, Path] = 'data/shapes_seg',
                              num_train: int = 400,
                              num_val: int = 100,
                              img_size: int = 64,
                              seed: int = 0,
                              force: bool = False,
                              **generator_kwargs: Any) -> Path:
    """Make sure ``root`` holds the shapes segmentation dataset for these parameters.

    A complete dataset (same version and parameters in ``meta.json``, all files present) is left
    alone; otherwise it is rendered into a temporary sibling and renamed into place (atomic for
    readers; concurrent writers are serialised by a lock file).  An existing ``root`` holding
    anything this function does not write raises :class:`FileExistsError`.

    Args:
        root: Dataset directory.
        num_train, num_val: Images per split.
        img_size: Side of the square images.
        seed: Seed of every random choice.
        force: Regenerate even when complete.
        **generator_kwargs: ``max_objects``, ``min_object_size``, ``max_object_size``,
            ``empty_prob`` of the generator.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f'num_train and num_val must be >= 0, got {num_train}, {num_val}')
    num_images = dict(train=int(num_train), val=int(num_val))
    seed = int(seed)
    generator = ShapesSegmentationGenerator(img_size=img_size, **generator_kwargs)
    wanted = dict(
        version=SEG_GENERATOR_VERSION,
        kind='segmentation',
        classes=list(SHAPES_SEG_CLASSES),
        params=dict(
            generator.params(), num_train=num_images['train'], num_val=num_images['val'],
            seed=seed))

    def write(tmp: Path) -> Dict[str, Any]:
        return dict(pixel_counts={
            split: generator.write_seg_split(tmp, split, n, seed)
            for split, n in num_images.items()
        })

    return ensure_generated(
        Path(root),
        wanted,
        files_complete=partial(_seg_files_complete, num_images=num_images),
        write=write,
        owned=_OWNED_ENTRIES,
        what=f'the shapes segmentation dataset ({num_train} train + {num_val} val images, '
        f'{img_size} px, seed {seed})',
        force=force)


# min_visible is unused here: every visible pixel is labelled
_SEG_KEYS = shapes_cfg_keys(
    ensure_shapes_seg_dataset, ShapesDetectionGenerator, unused=('min_visible', ))


@DATASETS.register_module()
class ShapesSegDataset(BaseSegDataset):
    """mmseg's ``BaseSegDataset`` over the shapes segmentation dataset, generated on first use.

    Example (see ``configs/_base_/datasets/shapes_seg.py``)::

        dataset=dict(type='mmext.ShapesSegDataset', data_root='data/shapes_seg',
                     shapes_cfg=dict(num_train=400, num_val=100, img_size=64),
                     data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                     pipeline=[...])

    ``reduce_zero_label=False`` (default) gives 5 classes with background as class 0; with
    ``reduce_zero_label=True`` background is ignored and the 4 shapes are classes 0..3 (pass
    ``metainfo=SHAPES_SEG_METAINFO_NO_BG``, as ADE20K-style configs do).

    Args:
        data_root: Dataset directory (generated if needed).
        shapes_cfg: Keyword arguments of :func:`ensure_shapes_seg_dataset` except ``root``.
        reduce_zero_label: mmseg's flag (see the module docstring).
        **kwargs: Passed to ``BaseSegDataset``.
    """

    METAINFO = SHAPES_SEG_METAINFO

    def __init__(self,
                 data_root: str = 'data/shapes_seg',
                 shapes_cfg: Optional[Dict[str, Any]] = None,
                 reduce_zero_label: bool = False,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 metainfo: Optional[dict] = None,
                 **kwargs: Any) -> None:
        shapes_cfg = check_shapes_cfg('ShapesSegDataset', shapes_cfg, data_root, _SEG_KEYS)
        if reduce_zero_label:
            if metainfo is None:
                metainfo = SHAPES_SEG_METAINFO_NO_BG
            elif tuple(metainfo.get('classes', ())) != tuple(SHAPES_CLASSES):
                raise ValueError(f'ShapesSegDataset(reduce_zero_label=True) has the classes '
                                 f'{SHAPES_CLASSES} (background ignored); metainfo gives '
                                 f'{metainfo.get("classes")}')
        ensure_shapes_seg_dataset(data_root, **shapes_cfg)
        super().__init__(
            data_root=data_root,
            reduce_zero_label=reduce_zero_label,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            metainfo=metainfo,
            **kwargs)

    def get_label_map(self, new_classes=None) -> Optional[dict]:
        """No remapping under ``reduce_zero_label``: shifting the file's ids by one already gives
        the shape-only classes (mmseg would otherwise map them a second time)."""
        if self.reduce_zero_label:
            return None
        return super().get_label_map(new_classes)
