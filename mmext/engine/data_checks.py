"""mmext.Runner's checks of the model against the data the run actually reads (issue #21).

A config that inherits a demo and points it at your own data can keep a number of the demo's
without any error: mmengine copies a base file's values when it parses it, so a later
``--cfg-options`` or override does not reach every copy.  Two such numbers are checked here,
when each train/val/test loop is built, and a mismatch refuses to run, naming both values, the
data file and the config key to set:

* a recommender's item count.  ``model.dataset='train_dataloader'`` makes the model take it (and
  GRU4Rec its item popularity) from the train dataloader's dataset *as the Runner has it*, i.e.
  after ``--cfg-options`` (a ``{{_base_.train_dataset}}`` copy is frozen when the base file is
  parsed, so ``train_dataloader.dataset.ann_file=OWN.inter`` would not reach it); every loop
  then refuses a dataset whose ``metainfo['num_items']`` differs from the model's ``num_items``;
* a detector's number of classes: ``bbox_head.num_classes`` (or ``roi_head.bbox_head``) must
  equal the number of ``metainfo['classes']`` of every loop's dataset.  Otherwise the extra
  classes of the data train as background, or evaluation fails epochs later with an
  ``IndexError`` in the COCO metric, or tests on the demo's data.
"""
import copy
from typing import Any, Dict, Optional, Tuple, Union

import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from torch.utils.data import DataLoader

__all__ = ['DataChecksMixin', 'TRAIN_DATASET']

#: ``model.dataset`` value meaning "the dataset of ``train_dataloader``"
TRAIN_DATASET = 'train_dataloader'
#: where detectors keep their class count, first match wins
_CLASS_HEADS = ('bbox_head', 'roi_head.bbox_head')


class DataChecksMixin:
    """``build_model`` and :meth:`check_loop_data` for :class:`mmext.engine.Runner`."""

    def build_model(self, model: Union[nn.Module, Dict]) -> nn.Module:
        if isinstance(model, dict) and model.get('dataset') == TRAIN_DATASET:
            model = copy.deepcopy(model)
            model['dataset'] = self._train_dataset_for_model()
        return super().build_model(model)

    def _train_dataset_for_model(self) -> Any:
        """The train dataloader's dataset: built if the Runner got a DataLoader, else its config
        (a deep copy: the model builds its own instance)."""
        loader = self._train_dataloader
        if isinstance(loader, DataLoader):
            return loader.dataset
        if not isinstance(loader, dict) or loader.get('dataset') is None:
            raise ValueError(f"model.dataset='{TRAIN_DATASET}' takes the item count from "
                             'train_dataloader.dataset, but this run has no train_dataloader; '
                             'give the model num_items or a dataset config instead')
        return copy.deepcopy(loader['dataset'])

    def check_loop_data(self, loop: BaseLoop, name: str) -> None:
        """Refuse ``loop`` (built from the config key ``name``) when its dataset does not fit
        the model: another item count or another number of classes."""
        model = self.model.module if is_model_wrapper(self.model) else self.model
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
        meta = getattr(dataset, 'metainfo', None)
        if not isinstance(meta, dict):
            return
        self._check_item_count(model, meta, name)
        self._check_num_classes(model, meta, name, getattr(dataset, 'ann_file', None))

    @staticmethod
    def _data_file(meta: Dict[str, Any]) -> str:
        return str(meta.get('data_file') or meta.get('path') or '<unknown file>')

    def _model_dataset_cfg(self) -> Any:
        return self.cfg.get('model', {}).get('dataset') if self.cfg else None

    def _check_item_count(self, model: nn.Module, meta: Dict[str, Any], name: str) -> None:
        num_items = getattr(model, 'num_items', None)
        if not isinstance(num_items, int) or 'num_items' not in meta \
                or meta['num_items'] == num_items:
            return
        source = self._model_dataset_cfg()
        if source == TRAIN_DATASET:
            train = (self.cfg.get('train_dataloader') or {}).get('dataset') or {}
            train_file = train.get('ann_file') or train.get('data_path') or '<unknown file>'
            where = f'the train dataset, {train_file}'
            fix = (f'point {name}.dataset at the same data as train_dataloader.dataset '
                   f'(e.g. {name}.dataset.ann_file={train_file})')
        else:
            where = (f"the model's dataset ({source.get('ann_file') or source.get('data_path')})"
                     if isinstance(source, dict) else 'the model config')
            fix = f"set model.dataset='{TRAIN_DATASET}' to take the count from the data this " \
                'run reads'
        raise ValueError(f'{type(model).__name__} has num_items={num_items} (from {where}) but '
                         f"the {name} dataset ({self._data_file(meta)}) has {meta['num_items']} "
                         f'items: {fix}')

    @staticmethod
    def _class_head(model: nn.Module) -> Tuple[Optional[str], Optional[int]]:
        for path in _CLASS_HEADS:
            head: Any = model
            for part in path.split('.'):
                head = getattr(head, part, None)
            num_classes = getattr(head, 'num_classes', None)
            if isinstance(num_classes, int):
                return path, num_classes
        return None, None

    def _check_num_classes(self, model: nn.Module, meta: Dict[str, Any], name: str,
                           ann_file: Optional[str]) -> None:
        classes = meta.get('classes')
        path, num_classes = self._class_head(model)
        if path is None or not classes or len(classes) == num_classes:
            return
        shown = ', '.join(repr(c) for c in list(classes)[:6])
        shown += f', ... (+{len(classes) - 6})' if len(classes) > 6 else ''
        where = ann_file or self._data_file(meta)
        raise ValueError(
            f'{type(model).__name__}: model.{path}.num_classes={num_classes}, but the {name} '
            f'dataset ({where}) has {len(classes)} classes ({shown}). Set '
            f'model.{path}.num_classes={len(classes)}, or that dataset\'s metainfo.classes to '
            'the classes the model predicts (an inherited test_dataloader/val_dataloader keeps '
            "the base config's data unless you override it too).")
