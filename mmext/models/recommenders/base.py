"""The contract shared by mmext's sequential recommenders (:class:`GRU4Rec`, :class:`SASRec`).

**Calling.**  As any mmengine ``BaseModel``: ``forward(inputs, data_samples=None, mode)``, which
the Runner reaches as ``model(**batch, mode=...)`` with the batch that the dataset's collate
function builds, ``{'inputs': {name: batched tensor, ...}}``.  ``inputs`` holds everything a
step needs, the targets included (a recommender's "annotation" is just the next item id, so
there is nothing to put in ``data_samples``, which is accepted and ignored).  Keys each model
reads: :attr:`BaseRecommender.required_inputs` and the model's docstring.

* ``mode='loss'``: :meth:`loss` returns a dict of losses (``{'loss': scalar}``);
* ``mode='predict'``: :meth:`predict` returns one dict per evaluated event,
  ``{'scores', 'target', 'exclude'[, 'invalid']}``, for :class:`mmext.RankingMetric`;
* ``mode='tensor'``: :meth:`_forward` returns the network's raw output (per model).

**Options shared by name.**

* ``num_items`` / ``dataset``: the item count ``n`` (ids ``1..n``, 0 = padding).  Give
  ``num_items``, or leave it ``None`` and give ``dataset`` (a config or a built dataset): the
  count is read from ``dataset.metainfo['num_items']`` (:func:`num_items_from_dataset`), as both
  recsys datasets record it there.  In configs, ``dataset='train_dataloader'`` makes
  :class:`mmext.Runner` pass the train dataloader's dataset as the run has it (after
  ``--cfg-options``); a copy such as ``{{_base_.train_dataset}}`` would keep the base file's;
* ``loss``: the training objective, by one vocabulary: ``'ce'`` (softmax cross-entropy),
  ``'bce'``, ``'bpr-max'``, ``'top1-max'`` (each model accepts its subset);
* ``num_negatives``: negatives the model samples for the loss.

Renamed options keep working for a while with a ``DeprecationWarning``
(:func:`renamed_option`); options that never existed under a name users expect (RecBole's
``loss_type``) raise an error naming the option to use (:func:`reject_options`).
"""
import warnings
from abc import abstractmethod
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from mmengine.model import BaseModel
from torch import Tensor

from mmext.registry import DATASETS

__all__ = [
    'BaseRecommender', 'check_item_ids', 'num_items_from_dataset', 'renamed_option',
    'reject_options'
]

_MODES = ('loss', 'predict', 'tensor')


def num_items_from_dataset(owner: str, num_items: Optional[int],
                           dataset: Union[dict, Any, None]) -> Tuple[Optional[int], Any]:
    """``(num_items, built dataset or None)``: the item count of ``dataset`` when given (its
    ``metainfo['num_items']``), checked against an explicit ``num_items``."""
    if dataset is None:
        return num_items, None
    if isinstance(dataset, str):  # 'train_dataloader': mmext's Runner puts the dataset there
        raise ValueError(f'{owner}: dataset={dataset!r} is resolved by mmext.Runner (the '
                         'config\'s train_dataloader.dataset); outside a Runner give num_items '
                         'or a dataset config / instance')
    ds = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
    count = ds.metainfo['num_items']
    if num_items is not None and num_items != count:
        raise ValueError(f'{owner}: num_items={num_items} but the dataset has {count} items; '
                         'drop num_items to take it from the dataset')
    return count, ds


def check_item_ids(owner: str,
                   name: str,
                   ids: Tensor,
                   low: int,
                   high: int,
                   mask: Optional[Tensor] = None) -> None:
    """Raise unless every id of ``ids`` (where ``mask`` is True) lies in ``[low, high]``.

    One vectorised min/max per call (one host sync); the offending id and its position
    (an index into ``ids``) are looked up only on failure, so the error names the id, where it
    is and the valid range instead of a bare ``IndexError`` from an embedding lookup.
    """
    if ids.numel() == 0:
        return
    if mask is not None:
        ids = torch.where(mask, ids, ids.new_tensor(low))  # masked-out entries always pass
    lo, hi = torch.aminmax(ids)
    if int(lo) >= low and int(hi) <= high:
        return
    where = torch.nonzero((ids < low) | (ids > high))[0]
    value = int(ids[tuple(where.tolist())])
    position = tuple(where.tolist()) if ids.dim() > 1 else int(where[0])
    note = ' (0 = padding is not valid here)' if low == 1 else ''
    raise ValueError(f'{owner}: {name}: item id {value} at position {position} (shape '
                     f'{tuple(ids.shape)}); item ids must be in [{low}, {high}]{note}')


def renamed_option(owner: str, kwargs: Dict[str, Any], old: str, new: str, value: Any,
                   default: Any) -> Any:
    """The value of option ``new``, taking its deprecated name ``old`` out of ``kwargs``.

    ``old`` alone: its value, with a ``DeprecationWarning``.  Both given (``new`` not at its
    ``default``, e.g. a config inheriting ``old`` that sets ``new``): ``ValueError``.
    """
    if old not in kwargs:
        return value
    old_value = kwargs.pop(old)
    if value != default:
        raise ValueError(f'{owner}: got both {old}={old_value!r} and {new}={value!r}; {old} is '
                         f'the deprecated name of {new}: keep only {new}')
    warnings.warn(
        f'{owner}: option {old!r} is deprecated, use {new!r}', DeprecationWarning, stacklevel=3)
    return old_value


def reject_options(owner: str, kwargs: Dict[str, Any], use_instead: Dict[str, str]) -> None:
    """Raise for any option left in ``kwargs``, naming the option to use where one is known."""
    for key in kwargs:
        if key in use_instead:
            raise TypeError(f'{owner}: there is no option {key!r}; use {use_instead[key]!r}')
    if kwargs:
        raise TypeError(f'{owner}: unexpected options {sorted(kwargs)}')


class BaseRecommender(BaseModel):
    """``forward`` of the shared contract (see the module docstring); subclasses implement
    :meth:`loss`, :meth:`predict` and :meth:`_forward` on the ``inputs`` dict."""

    #: keys every ``inputs`` dict must hold
    required_inputs: Tuple[str, ...] = ()
    #: the collate function that builds the model's batches (named in errors)
    collate_fn: str = ''

    def forward(self,
                inputs: Dict[str, Union[Tensor, List[Tensor]]],
                data_samples: Optional[list] = None,
                mode: str = 'tensor') -> Union[Tensor, Dict[str, Tensor], List[dict]]:
        name = type(self).__name__
        if not isinstance(inputs, dict) or any(k not in inputs for k in self.required_inputs):
            keys = ', '.join(f'"{k}"' for k in self.required_inputs)
            raise ValueError(f'{name}: inputs must be a dict with at least {keys} (build '
                             f"batches with collate_fn=dict(type='{self.collate_fn}'))")
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        if mode == 'tensor':
            return self._forward(inputs)
        raise ValueError(f'{name}: mode={mode!r}: expected one of {_MODES}')

    def item_id_tables(self) -> Tuple[str, ...]:
        """State-dict keys of the tables indexed by item id (``num_items + 1`` rows, 0 the
        padding): ``mmext.Runner`` refuses a checkpoint whose rows there differ in number, since
        they would stand for other items."""
        rows = getattr(self, 'num_items', -2) + 1
        return tuple(k for k, v in self.state_dict().items() if v.dim() and v.size(0) == rows)

    @abstractmethod
    def loss(self, inputs: Dict[str, Any]) -> Dict[str, Tensor]:
        """Training losses of one batch, ``{'loss': scalar}``."""

    @abstractmethod
    def predict(self, inputs: Dict[str, Any]) -> List[dict]:
        """Scores over all items for :class:`mmext.RankingMetric`, one dict per scored event."""

    @abstractmethod
    def _forward(self, inputs: Dict[str, Any]) -> Tensor:
        """The raw output (GRU4Rec: scores over all items; SASRec: hidden states)."""
