"""A small, deterministic, on-disk COCO-format detection dataset of coloured shapes.

mmext's default detection configs train on this dataset so that a fresh checkout can train and
evaluate a detector without downloading anything.  :func:`ensure_shapes_dataset` writes::

    <root>/train/000000.png ...              RGB PNG images
    <root>/val/000000.png ...
    <root>/annotations/instances_train.json  COCO detection annotations
    <root>/annotations/instances_val.json
    <root>/meta.json                         generator version + parameters (the "complete" mark)

the first time it is called and does nothing afterwards while the parameters stay the same.

Content of one image (see :class:`ShapesDetectionGenerator`):

* a varied background: a two-colour linear gradient, low-frequency blotches, sometimes faint
  stripes, and per-pixel noise;
* 0..``max_objects`` shapes of the classes in :data:`SHAPES_CLASSES`, each filled with a colour
  chosen to contrast with the background under it and lightly shaded, at a log-uniform scale
  between ``min_object_size`` px and ``max_object_size`` px (default: half the image);
  ``empty_prob`` of the images (default 8 %) hold no shape at all;
* shapes may overlap: later shapes are painted over earlier ones.  A shape's box is the box of
  the *full* shape (as rendered alone), not of its visible part, and a shape that ends up less
  than ``min_visible`` (default 30 %) visible is still painted but left out of the annotations,
  since a detector cannot be expected to find it.  Every shape lies entirely inside the image.

Everything is drawn from ``numpy.random.Generator`` streams seeded by ``(seed, split, index)``,
so the same parameters give byte-identical files on every run (given the same numpy, Pillow and
zlib), and the first images of a large set equal those of a small one.
"""
import inspect
import json
import math
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from mmext.registry import DATASETS
from mmext.utils.progress import track

from .coco import CheckedCocoDataset
from .generated_dir import META_FILE, ensure_generated

__all__ = [
    'SHAPES_CLASSES', 'SHAPES_PALETTE', 'SHAPES_METAINFO', 'metainfo', 'GENERATOR_VERSION',
    'ShapesDetectionGenerator', 'ensure_shapes_dataset', 'ShapesCocoDataset', 'shapes_cfg_keys',
    'check_shapes_cfg'
]

#: Class names; COCO category ids are their 1-based positions.
SHAPES_CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'cross')
#: One RGB colour per class for visualisers.
SHAPES_PALETTE: List[Tuple[int, int, int]] = [(220, 20, 60), (0, 130, 200), (60, 180, 75),
                                              (245, 130, 48)]
#: Usable as ``metainfo=`` of an mmdet ``CocoDataset`` reading a shapes dataset.
SHAPES_METAINFO: Dict[str, Any] = dict(classes=SHAPES_CLASSES, palette=SHAPES_PALETTE)
metainfo = SHAPES_METAINFO

#: Bump whenever the rendered content changes, so cached datasets are regenerated.
GENERATOR_VERSION = 1

_SPLITS = ('train', 'val')
# What ensure_shapes_dataset may replace in an existing root; anything else makes it refuse.
_OWNED_ENTRIES = {'train', 'val', 'annotations', META_FILE}


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize a ``(g, g, C)`` grid to ``(size, size, C)`` (smooth blotches)."""
    g = grid.shape[0]
    pos = np.linspace(0.0, g - 1.0, size)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, g - 2)
    frac = pos - i0
    rows = grid[i0] * (1 - frac)[:, None, None] + grid[i0 + 1] * frac[:, None, None]
    return rows[:, i0] * (1 - frac)[None, :, None] + rows[:, i0 + 1] * frac[None, :, None]


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


class ShapesDetectionGenerator:
    """Renders images of coloured shapes with their COCO annotations.

    Args:
        img_size: Width and height of every (square) image, in pixels.
        max_objects: Most shapes painted on one non-empty image (at least 1).
        min_object_size: Smallest shape size (the side of its square extent), pixels.
        max_object_size: Largest shape size; ``None`` means half the image.
        empty_prob: Probability that an image holds no shape.
        min_visible: Fraction of a shape's pixels that must stay visible after later shapes
            are painted over it for it to be annotated.
    """

    def __init__(self,
                 img_size: int = 128,
                 max_objects: int = 6,
                 min_object_size: int = 8,
                 max_object_size: Optional[int] = None,
                 empty_prob: float = 0.08,
                 min_visible: float = 0.3) -> None:
        if max_object_size is None:
            max_object_size = img_size // 2
        if img_size < 16:
            raise ValueError(f'img_size must be at least 16 px, got {img_size}')
        if not 4 <= min_object_size <= max_object_size <= img_size - 2:
            raise ValueError('need 4 <= min_object_size <= max_object_size <= img_size - 2, got '
                             f'min_object_size={min_object_size}, '
                             f'max_object_size={max_object_size}, img_size={img_size}')
        if max_objects < 1:
            raise ValueError(f'max_objects must be at least 1, got {max_objects}')
        if not 0.0 <= empty_prob < 1.0:
            raise ValueError(f'empty_prob must be in [0, 1), got {empty_prob}')
        if not 0.0 <= min_visible <= 1.0:
            raise ValueError(f'min_visible must be in [0, 1], got {min_visible}')
        self.img_size = int(img_size)
        self.max_objects = int(max_objects)
        self.min_object_size = int(min_object_size)
        self.max_object_size = int(max_object_size)
        self.empty_prob = float(empty_prob)
        self.min_visible = float(min_visible)

    def params(self) -> Dict[str, Any]:
        """The rendering parameters (stored in ``meta.json`` to recognise a cached dataset)."""
        return dict(
            img_size=self.img_size,
            max_objects=self.max_objects,
            min_object_size=self.min_object_size,
            max_object_size=self.max_object_size,
            empty_prob=self.empty_prob,
            min_visible=self.min_visible)

    # ------------------------------------------------------------------ rendering
    def _background(self, rng: np.random.Generator) -> np.ndarray:
        size = self.img_size
        c0, c1 = rng.uniform(0, 255, size=(2, 3))
        theta = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
        t = math.cos(theta) * xx + math.sin(theta) * yy
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        img = c0 + (c1 - c0) * t[..., None]
        cells = int(rng.integers(3, 9))
        img += _upsample(rng.normal(0, 1, size=(cells, cells, 3)), size) * rng.uniform(10, 40)
        if rng.random() < 0.3:  # faint stripes, so "texture" is not only smooth noise
            phi = rng.uniform(0, math.pi)
            freq = rng.uniform(4, 16)
            stripes = np.sin(2 * math.pi * freq * (math.cos(phi) * xx + math.sin(phi) * yy) +
                             rng.uniform(0, 2 * math.pi))
            img += stripes[..., None] * rng.uniform(5, 20)
        return img

    def _outline(self, rng: np.random.Generator, label: int,
                 size: float) -> Tuple[np.ndarray, bool]:
        """Vertices of a shape centred on the origin, and whether it is a circle."""
        r = size / 2
        name = SHAPES_CLASSES[label]
        if name == 'circle':
            angles = np.linspace(0, 2 * math.pi, 32, endpoint=False)
            return np.stack([np.cos(angles), np.sin(angles)], axis=1) * r, True
        if name == 'square':
            pts = np.array([[-r, -r], [r, -r], [r, r], [-r, r]])
            return _rotate(pts, math.radians(rng.uniform(-15, 15))), False
        if name == 'triangle':
            # Inscribed in the size-circle, any orientation, slightly irregular.
            angles = (
                rng.uniform(0, 2 * math.pi) + np.arange(3) * 2 * math.pi / 3 +
                np.radians(rng.uniform(-10, 10, size=3)))
            return np.stack([np.cos(angles), np.sin(angles)], axis=1) * r, False
        if name == 'cross':
            a = r * rng.uniform(0.25, 0.4)  # half the arm thickness
            pts = np.array([[-a, -r], [a, -r], [a, -a], [r, -a], [r, a], [a, a], [a, r], [-a, r],
                            [-a, a], [-r, a], [-r, -a], [-a, -a]])
            return _rotate(pts, math.radians(rng.uniform(-15, 15))), False
        raise AssertionError(f'no outline for class {name!r}')

    def paint(
        self, rng: np.random.Generator
    ) -> Tuple[np.ndarray, np.ndarray, List[Tuple[int, np.ndarray, np.ndarray]]]:
        """Draw one image and keep what every annotation format needs.

        Returns:
            The ``(H, W, 3)`` uint8 RGB image; the ``(H, W)`` owner map (index of the shape
            seen at each pixel, ``-1`` for background); and per drawn shape, in drawing order,
            ``(label, outline points in pixel coordinates, full mask)`` (the mask may be empty).
        """
        size = self.img_size
        img = self._background(rng)
        owner = np.full((size, size), -1, dtype=np.int64)
        num = 0 if rng.random() < self.empty_prob else int(rng.integers(1, self.max_objects + 1))
        shapes = []
        yy, xx = np.mgrid[0:size, 0:size]
        for k in range(num):
            label = int(rng.integers(len(SHAPES_CLASSES)))
            extent = math.exp(
                rng.uniform(math.log(self.min_object_size), math.log(self.max_object_size)))
            pts, is_circle = self._outline(rng, label, extent)
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            span = float((hi - lo).max())
            if span > size - 2:  # a rotated square near img_size would not fit: shrink it
                pts, extent = pts * ((size - 2) / span), extent * ((size - 2) / span)
                lo, hi = pts.min(axis=0), pts.max(axis=0)
            # Centre chosen so that the whole shape lies inside the image.
            centre = np.array(
                [rng.uniform(-lo[0], size - 1 - hi[0]),
                 rng.uniform(-lo[1], size - 1 - hi[1])])
            pts = pts + centre
            canvas = Image.new('L', (size, size), 0)
            draw = ImageDraw.Draw(canvas)
            if is_circle:
                draw.ellipse([
                    centre[0] - extent / 2, centre[1] - extent / 2, centre[0] + extent / 2,
                    centre[1] + extent / 2
                ],
                             fill=255)
            else:
                draw.polygon([(float(x), float(y)) for x, y in pts], fill=255)
            mask = np.asarray(canvas) > 0
            shapes.append((label, pts, mask))
            if not mask.any():
                continue
            # Colour: the candidate farthest from the background under the shape.
            under = img[mask].mean(axis=0)
            options = rng.uniform(0, 255, size=(8, 3))
            colour = options[np.argmax(np.linalg.norm(options - under, axis=1))]
            # Light linear shading across the shape, so fills are not perfectly flat.
            phi = rng.uniform(0, 2 * math.pi)
            shade = 1 + rng.uniform(0, 0.2) * ((math.cos(phi) * (xx - centre[0]) + math.sin(phi) *
                                                (yy - centre[1])) / max(extent / 2, 1))
            img[mask] = colour * shade[mask][:, None]
            owner[mask] = k
        img += rng.normal(0, rng.uniform(2, 8), size=img.shape)  # sensor-like noise
        return np.clip(np.round(img), 0, 255).astype(np.uint8), owner, shapes

    def render(self, rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
        """Render one image.

        Returns:
            The ``(H, W, 3)`` uint8 RGB image and its objects, each a dict with ``category_id``
            (1-based), ``bbox`` ``[x, y, w, h]`` (pixel-edge convention, of the full shape),
            ``area`` (pixels of the full shape) and ``segmentation`` (one polygon).  Shapes
            covered by later ones beyond ``min_visible`` of their area are left out.
        """
        image, owner, shapes = self.paint(rng)
        visible = np.bincount(owner[owner >= 0], minlength=max(len(shapes), 1))
        objects = []
        for k, (label, pts, mask) in enumerate(shapes):
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            area = float(mask.sum())
            if visible[k] < self.min_visible * area:
                continue
            polygon = [round(float(v) + 0.5, 2) for v in pts.reshape(-1)]  # pixel-edge coords
            objects.append(
                dict(
                    category_id=label + 1,
                    bbox=[float(x0),
                          float(y0),
                          float(xs.max() - x0 + 1),
                          float(ys.max() - y0 + 1)],
                    area=area,
                    segmentation=[polygon]))
        return image, objects

    # ------------------------------------------------------------------ writing
    def write_split(self, root: Union[str, Path], split: str, num_images: int,
                    seed: int) -> Dict[str, Any]:
        """Write ``root/<split>/*.png`` and return the split's COCO dict (not written)."""
        if split not in _SPLITS:
            raise ValueError(f'split must be one of {_SPLITS}, got {split!r}')
        img_dir = Path(root) / split
        img_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for index in track(range(num_images), f'shapes: {split} images'):
            # One independent stream per image: adding images never changes earlier ones.
            rng = np.random.default_rng([seed, _SPLITS.index(split), index])
            image, objects = self.render(rng)
            file_name = f'{index:06d}.png'
            Image.fromarray(image, mode='RGB').save(img_dir / file_name, format='PNG')
            image_id = index + 1  # COCO ids start at 1 (pycocotools treats id 0 as "none")
            images.append(
                dict(id=image_id, file_name=file_name, width=self.img_size, height=self.img_size))
            for obj in objects:
                annotations.append(
                    dict(id=len(annotations) + 1, image_id=image_id, iscrowd=0, **obj))
        categories = [
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(SHAPES_CLASSES)
        ]
        return dict(
            info=dict(
                description=f'mmext shapes dataset ({split})',
                version=str(GENERATOR_VERSION),
                seed=seed),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)

    def write_dataset(self, root: Union[str, Path], num_train: int, num_val: int,
                      seed: int) -> Dict[str, Dict[str, int]]:
        """Write both splits and their annotation files into ``root``; return the counts.

        Not atomic by itself; :func:`ensure_shapes_dataset` calls it on a temporary directory
        and writes ``meta.json`` afterwards.
        """
        root = Path(root)
        (root / 'annotations').mkdir(parents=True, exist_ok=True)
        counts = {}
        for split, num in (('train', num_train), ('val', num_val)):
            coco = self.write_split(root, split, num, seed)
            with open(root / 'annotations' / f'instances_{split}.json', 'w') as f:
                json.dump(coco, f)
            counts[split] = dict(images=len(coco['images']), annotations=len(coco['annotations']))
        return counts


def _files_complete(root: Path, num_images: Dict[str, int]) -> bool:
    """Whether ``root`` holds both annotation files and every image."""
    for split in _SPLITS:
        if not (root / 'annotations' / f'instances_{split}.json').is_file():
            return False
        if sum(1 for _ in (root / split).glob('*.png')) != num_images[split]:
            return False
    return True


def ensure_shapes_dataset(root: Union[str, Path] = 'data/shapes',
                          num_train: int = 800,
                          num_val: int = 200,
                          img_size: int = 128,
                          seed: int = 0,
                          force: bool = False,
                          **generator_kwargs: Any) -> Path:
    """Make sure ``root`` holds the shapes dataset for these parameters; return ``root``.

    A complete dataset (``meta.json`` present with the same version and parameters, all files
    there) is left untouched.  Otherwise the dataset is rendered into a temporary sibling
    directory and renamed into place, so an interrupted run never leaves a half dataset that
    looks complete.  An existing ``root`` is replaced only if it holds nothing but the entries
    this function writes; anything else raises :class:`FileExistsError`.

    Args:
        root: Dataset directory.
        num_train: Number of training images.
        num_val: Number of validation images.
        img_size: Image width and height in pixels.
        seed: Seed of all random choices.
        force: Regenerate even if a complete dataset exists.
        **generator_kwargs: Further :class:`ShapesDetectionGenerator` arguments
            (``max_objects``, ``min_object_size``, ``max_object_size``, ``empty_prob``,
            ``min_visible``).
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f'num_train and num_val must be >= 0, got {num_train}, {num_val}')
    num_train, num_val, seed = int(num_train), int(num_val), int(seed)
    generator = ShapesDetectionGenerator(img_size=img_size, **generator_kwargs)
    wanted = dict(
        version=GENERATOR_VERSION,
        classes=list(SHAPES_CLASSES),
        params=dict(generator.params(), num_train=num_train, num_val=num_val, seed=seed))
    return ensure_generated(
        Path(root),
        wanted,
        files_complete=partial(_files_complete, num_images=dict(train=num_train, val=num_val)),
        write=lambda tmp: dict(counts=generator.write_dataset(tmp, num_train, num_val, seed)),
        owned=_OWNED_ENTRIES,
        what=f'the shapes dataset ({num_train} train + {num_val} val images, {img_size} px, '
        f'seed {seed})',
        force=force)


def shapes_cfg_keys(ensure: Callable[..., Any], generator: type,
                    unused: Iterable[str] = ()) -> FrozenSet[str]:
    """What a dataset's ``shapes_cfg`` may hold: the named keywords of its ``ensure`` function and
    of its generator class, except ``root`` (the dataset's ``data_root``) and ``unused``."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    keys = {
        name
        for fn in (ensure, generator)
        for name, p in inspect.signature(fn).parameters.items() if p.kind in named
    }
    return frozenset(keys - {'root', *unused})


def check_shapes_cfg(dataset: str, shapes_cfg: Optional[Dict[str, Any]], data_root: Any,
                     allowed: FrozenSet[str]) -> Dict[str, Any]:
    """A copy of ``shapes_cfg`` (``None``: empty) once its keys are among ``allowed`` and there is
    a ``data_root`` to generate the dataset in; ``ValueError`` naming ``dataset`` otherwise."""
    shapes_cfg = dict(shapes_cfg or {})
    unknown = sorted(set(shapes_cfg) - allowed)
    if unknown:
        raise ValueError(f'{dataset}: unknown shapes_cfg key(s) {unknown}; allowed: '
                         f'{sorted(allowed)}')
    if not data_root:
        raise ValueError(f'{dataset} needs a data_root to generate the dataset in')
    return shapes_cfg


_ENSURE_KEYS = shapes_cfg_keys(ensure_shapes_dataset, ShapesDetectionGenerator)


@DATASETS.register_module()
class ShapesCocoDataset(CheckedCocoDataset):
    """mmdet's ``CocoDataset`` (with mmext's annotation checks) over the shapes dataset, generated
    on first use.

    The Runner builds dataloaders before any hook runs, so generation happens here, in
    ``__init__``, before the annotation file is read.  Example config::

        shapes_cfg = dict(num_train=800, num_val=200, img_size=128, seed=0)
        train_dataloader = dict(dataset=dict(
            type='ShapesCocoDataset', data_root='data/shapes', shapes_cfg=shapes_cfg,
            ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
            pipeline=train_pipeline))

    Give every ShapesCocoDataset of a config (train, val, test) the *same* ``shapes_cfg``:
    different parameters would regenerate the directory under the other datasets' feet.

    Args:
        data_root: The dataset directory (generated if needed).
        shapes_cfg: Keyword arguments of :func:`ensure_shapes_dataset` (except ``root``);
            ``None`` uses its defaults.
        *args, **kwargs: Passed to ``CocoDataset``.
    """

    METAINFO = dict(classes=SHAPES_CLASSES, palette=SHAPES_PALETTE)

    def __init__(self,
                 *args: Any,
                 data_root: str = 'data/shapes',
                 shapes_cfg: Optional[Dict[str, Any]] = None,
                 **kwargs: Any) -> None:
        shapes_cfg = check_shapes_cfg('ShapesCocoDataset', shapes_cfg, data_root, _ENSURE_KEYS)
        ensure_shapes_dataset(data_root, **shapes_cfg)
        super().__init__(*args, data_root=data_root, **kwargs)
