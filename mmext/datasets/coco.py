"""mmdet's CocoDataset with the checks that turn bad annotation files into clear errors.

mmdet's ``CocoDataset`` fails obscurely or silently on a few common mistakes:

* an empty file -> a bare ``JSONDecodeError: Expecting value``, without the file name;
* a file without images -> ``need at least one array to concatenate`` from numpy;
* ``metainfo.classes`` that do not match the file's category names -> every annotation of those
  classes is dropped and training runs on background only;
* boxes of zero or negative size, or entirely outside their image -> dropped without a word.

:class:`CheckedCocoDataset` raises a ``ValueError`` that names the file and the problem for the
first three, and logs how many annotations were dropped, and why, for the last.
"""
import json
import os.path as osp
from collections import Counter
from typing import List

from mmdet.datasets import CocoDataset
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from mmext.registry import DATASETS

__all__ = ['CheckedCocoDataset']


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """``mmdet.CocoDataset`` that validates its annotation file (same arguments)."""

    def load_data_list(self) -> List[dict]:
        path = self.ann_file
        if osp.isfile(path) and osp.getsize(path) == 0:
            raise ValueError(f'{path}: the annotation file is empty (0 bytes)')
        self._dropped: Counter = Counter()
        try:
            data_list = super().load_data_list()
        except json.JSONDecodeError as err:
            raise ValueError(f'{path}: not valid JSON (line {err.lineno}, column {err.colno}: '
                             f'{err.msg})') from err
        self._check_classes()
        if not data_list:
            raise ValueError(f'{path}: holds no images, so there is nothing to train or '
                             'evaluate on')
        self._report_dropped(sum(len(d['instances']) for d in data_list))
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
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False) or ann['category_id'] not in self.cat_ids:
                continue  # not meant as a box of our classes: skipping it loses nothing
            x, y, w, h = ann['bbox']
            if not (w >= 1 and h >= 1 and ann.get('area', 1) > 0):  # NaN fails too
                self._dropped['smaller than 1 px or zero area'] += 1
            elif x + w <= 0 or y + h <= 0 or x >= img['width'] or y >= img['height']:
                self._dropped['entirely outside the image'] += 1
        return info

    def _report_dropped(self, kept: int) -> None:
        if not self._dropped:
            return
        why = ', '.join(f'{n} {reason}' for reason, n in self._dropped.items())
        print_log(
            f'{self.ann_file}: {sum(self._dropped.values())} annotation(s) dropped ({why}); '
            f'{kept} kept',
            logger='current',
            level=30)
