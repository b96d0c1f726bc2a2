"""mmdet's CocoDataset with the checks that turn bad annotation files into clear errors.

mmdet's ``CocoDataset`` fails obscurely or silently on a few common mistakes:

* an empty file -> a bare ``JSONDecodeError: Expecting value``, without the file name;
* a file without images -> ``need at least one array to concatenate`` from numpy;
* ``metainfo.classes`` that do not match the file's category names -> every annotation of those
  classes is dropped and training runs on background only;
* a box with a NaN or infinite coordinate -> dropped (or, for an infinite size, kept) without
  a word;
* no image left after ``filter_cfg`` (e.g. a file without annotations under
  ``filter_empty_gt=True``) -> ``need at least one array to concatenate`` again;
* boxes of zero or negative size, or entirely outside their image -> dropped without a word;
* annotations whose ``category_id`` is not among the file's ``categories`` -> dropped without a
  word, and under ``filter_empty_gt=True`` an image holding only such annotations goes too.

:class:`CheckedCocoDataset` raises a ``ValueError`` that names the file (and, for a bad box, the
image) and the problem for the first five, and logs how many annotations, and images, were
dropped, and why, for the last two (``on_unknown_category='error'`` raises for the last).  The
counts are also kept in ``metainfo['annotation_checks']``.
"""
import json
import math
import os.path as osp
from collections import Counter
from typing import Any, List

from mmdet.datasets import CocoDataset
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from mmext.registry import DATASETS

__all__ = ['CheckedCocoDataset']

UNKNOWN_CATEGORY = "with a category_id not in the file's categories"


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """``mmdet.CocoDataset`` that validates its annotation file.

    Args:
        on_unknown_category: What to do with annotations whose ``category_id`` is not one of the
            file's ``categories``: ``'warn'`` (default) drops them, as mmdet does, and logs how
            many there were, their ids and how many images ``filter_empty_gt`` removed because
            of them; ``'error'`` raises a ``ValueError`` with the same counts.
        *args, **kwargs: Passed to ``mmdet.CocoDataset``.
    """

    def __init__(self, *args: Any, on_unknown_category: str = 'warn', **kwargs: Any) -> None:
        if on_unknown_category not in ('warn', 'error'):
            raise ValueError("on_unknown_category must be 'warn' or 'error', "
                             f'got {on_unknown_category!r}')
        self.on_unknown_category = on_unknown_category
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        path = self.ann_file
        if osp.isfile(path) and osp.getsize(path) == 0:
            raise ValueError(f'{path}: the annotation file is empty (0 bytes)')
        self._dropped: Counter = Counter()
        self._unknown_cat_ids: Counter = Counter()
        self._only_unknown_imgs: set = set()  # ids of images whose annotations all have unknown
        # category ids: filter_empty_gt removes them, and we say so
        try:
            data_list = super().load_data_list()
        except json.JSONDecodeError as err:
            raise ValueError(f'{path}: not valid JSON (line {err.lineno}, column {err.colno}: '
                             f'{err.msg})') from err
        self._check_classes()
        if not data_list:
            raise ValueError(f'{path}: holds no images, so there is nothing to train or '
                             'evaluate on')
        kept = sum(len(d['instances']) for d in data_list)
        self._metainfo['annotation_checks'] = dict(
            kept=kept,
            dropped=dict(self._dropped),
            unknown_category_ids=dict(sorted(self._unknown_cat_ids.items())),
            images=len(data_list))
        self._report_dropped(kept)
        if self._unknown_cat_ids and self.on_unknown_category == 'error':
            raise ValueError(f'{path}: {self._unknown_desc()} (on_unknown_category=\'error\')')
        return data_list

    def _check_classes(self) -> None:
        classes = self.metainfo.get('classes') or ()
        if len(self.cat_ids) < len(classes):
            # mmdet has deleted self.coco by now; re-reading is fine on the way to an error
            with get_local_path(self.ann_file, backend_args=self.backend_args) as local, \
                    open(local) as f:
                names = {c['name'] for c in json.load(f).get('categories', [])}
            missing = [c for c in classes if c not in names]
            raise ValueError(
                f'{self.ann_file}: metainfo classes {missing} are not category names of the file '
                f'(it has {sorted(names)}); their annotations would be dropped silently')

    def parse_data_info(self, raw_data_info: dict) -> dict:
        info = super().parse_data_info(raw_data_info)
        img = raw_data_info['raw_img_info']
        file_cats = self.coco.cats  # all categories of the file (cat_ids: those of our classes)
        has_known = has_unknown = False
        for ann in raw_data_info['raw_ann_info']:
            if ann['category_id'] not in file_cats:
                if not ann.get('ignore', False):  # an ignored one is meant to be skipped
                    has_unknown = True
                    self._dropped[UNKNOWN_CATEGORY] += 1
                    self._unknown_cat_ids[ann['category_id']] += 1
                continue
            has_known = True
            if ann.get('ignore', False) or ann['category_id'] not in self.cat_ids:
                continue  # not meant as a box of our classes: skipping it loses nothing
            x, y, w, h = ann['bbox']
            if not all(math.isfinite(v) for v in (x, y, w, h)):
                raise ValueError(
                    f'{self.ann_file}: image {img["file_name"]!r} (id {img["img_id"]}) has a box '
                    f'with a NaN or infinite coordinate: annotation id {ann.get("id")}, bbox '
                    f'{ann["bbox"]} (x, y, w, h)')
            if not (w >= 1 and h >= 1 and ann.get('area', 1) > 0):  # NaN area fails too
                self._dropped['smaller than 1 px or zero area'] += 1
            elif x + w <= 0 or y + h <= 0 or x >= img['width'] or y >= img['height']:
                self._dropped['entirely outside the image'] += 1
        if has_unknown and not has_known:
            self._only_unknown_imgs.add(img['img_id'])
        return info

    def filter_data(self) -> List[dict]:
        """mmdet's filter (``filter_empty_gt``, ``min_size``), refusing to leave no image (mmengine
        would fail with ``need at least one array to concatenate``) and reporting the images that
        only lost their annotations to unknown category ids."""
        before = self.data_list
        data_list = super().filter_data()
        cfg = self.filter_cfg or {}
        filter_empty_gt = bool(cfg.get('filter_empty_gt', False)) and not self.test_mode
        removed_unknown = 0
        if filter_empty_gt and self._only_unknown_imgs:
            left = {d['img_id'] for d in data_list}
            removed_unknown = len(self._only_unknown_imgs - left)
        checks = self._metainfo.setdefault('annotation_checks', {})
        checks.update(images_left=len(data_list), images_removed_unknown_category=removed_unknown)
        if removed_unknown:
            print_log(
                f'{self.ann_file}: filter_empty_gt removed {removed_unknown} image(s) whose '
                'annotations all have a category_id not in the file\'s categories (ids '
                f'{sorted(self._unknown_cat_ids)})',
                logger='current',
                level=30)
        if before and not data_list:
            raise ValueError(f'{self.ann_file}: 0 of {len(before)} images are left after '
                             f'filtering (filter_cfg={dict(cfg)}): {self._why_empty(before)}')
        return data_list

    def _why_empty(self, data_list: List[dict]) -> str:
        """Why every image was filtered out: no annotation of the classes, or too small."""
        cfg = self.filter_cfg or {}
        classes = list(self.metainfo.get('classes') or ())
        with_ann = set()
        for cat_id in self.cat_ids:
            with_ann.update(self.cat_img_map[cat_id])
        reasons = []
        if cfg.get('filter_empty_gt', False):
            no_ann = sum(1 for d in data_list if d['img_id'] not in with_ann)
            unknown = f' ({self._unknown_desc()})' if self._unknown_cat_ids else ''
            reasons.append(f'{no_ann} have no annotation of the classes {classes}{unknown}, '
                           'so filter_empty_gt=True removed them; fix the file, or set '
                           'filter_empty_gt=False to train on them as background images')
        min_size = cfg.get('min_size', 0)
        small = sum(1 for d in data_list if min(d['width'], d['height']) < min_size)
        if small:
            reasons.append(f'{small} are smaller than min_size={min_size}')
        return '; '.join(reasons)

    def _unknown_desc(self) -> str:
        ids = sorted(self._unknown_cat_ids)
        return f'{sum(self._unknown_cat_ids.values())} annotation(s) {UNKNOWN_CATEGORY} (ids {ids})'

    def _report_dropped(self, kept: int) -> None:
        if not self._dropped:
            return
        parts = []
        for reason, n in self._dropped.items():
            ids = f' (ids {sorted(self._unknown_cat_ids)})' if reason == UNKNOWN_CATEGORY else ''
            parts.append(f'{n} {reason}{ids}')
        why = ', '.join(parts)
        print_log(
            f'{self.ann_file}: {sum(self._dropped.values())} annotation(s) dropped ({why}); '
            f'{kept} kept',
            logger='current',
            level=30)
