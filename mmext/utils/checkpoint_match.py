"""Refusing a checkpoint that does not fit the model (``load_from`` of another model).

mmengine loads whatever keys happen to match and only warns "do not match exactly", so a
checkpoint of another model "loads" and a run evaluates or fine-tunes an untrained model.  The
rule here looks at the **checkpoint's** tensors: the fraction of them that the model takes (same
key, same shape) must be at least ``min_match``.  Counting the checkpoint's keys, not the
model's, keeps the usual partial loads working: a pretrained backbone or a classifier loaded into
a detector fits almost entirely, although it covers only part of the detector.  A checkpoint of
another model fits (close to) nothing.
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ['CheckpointMismatchError', 'CheckpointFit', 'DEFAULT_LOAD_MIN_MATCH', 'check_fit']

# Default of the ``load_min_match`` config key (mmext.Runner).
DEFAULT_LOAD_MIN_MATCH = 0.5
_SHOWN = 5  # keys named per category in the error


class CheckpointMismatchError(RuntimeError):
    """Too few of a checkpoint's tensors fit the model it is loaded into."""


class CheckpointFit:
    """How a state dict fits a model's state dict: matched, missing, unexpected, mis-shaped."""

    def __init__(self, model_state: Mapping, ckpt_state: Mapping) -> None:
        self.total = len(ckpt_state)
        self.unexpected = [k for k in ckpt_state if k not in model_state]
        # BN's num_batches_tracked is absent from old checkpoints; mmengine ignores it too
        self.missing = [
            k for k in model_state if k not in ckpt_state and 'num_batches_tracked' not in k
        ]
        self.mismatched: List[Tuple[str, tuple, tuple]] = []
        self.matched = 0
        for key, value in ckpt_state.items():
            if key not in model_state:
                continue
            ckpt_shape, model_shape = _shape(value), _shape(model_state[key])
            if ckpt_shape == model_shape:
                self.matched += 1
            else:
                self.mismatched.append((key, ckpt_shape, model_shape))

    @property
    def fraction(self) -> float:
        return self.matched / self.total if self.total else 0.0

    def describe(self) -> str:
        parts = []
        for what, keys in (('unexpected in the checkpoint', self.unexpected),
                           ('missing from the checkpoint', self.missing)):
            if keys:
                parts.append(f'{what} ({len(keys)}): {_first(keys)}')
        if self.mismatched:
            shapes = [f'{k}: checkpoint {c} vs model {m}' for k, c, m in self.mismatched]
            parts.append(f'shape mismatches ({len(shapes)}): {_first(shapes)}')
        return '; '.join(parts)


def _shape(value) -> Optional[tuple]:
    shape = getattr(value, 'shape', None)
    return None if shape is None else tuple(shape)


def _first(items: List[str]) -> str:
    more = f', ... (+{len(items) - _SHOWN} more)' if len(items) > _SHOWN else ''
    return ', '.join(items[:_SHOWN]) + more


def check_fit(model_state: Dict,
              ckpt_state: Dict,
              min_match: float,
              filename: str,
              model_name: str,
              exact_keys: Sequence[str] = ()) -> CheckpointFit:
    """Raise :class:`CheckpointMismatchError` unless ``min_match`` of ``ckpt_state`` fits.

    Args:
        model_state (dict): the model's ``state_dict()`` (key -> tensor).
        ckpt_state (dict): the checkpoint's state dict, keys already revised (``module.``
            stripped) as they will be loaded.
        min_match (float): the least fraction of the checkpoint's tensors that must fit
            (same key and shape); 0 turns the check off.
        filename (str): named in the error.
        model_name (str): named in the error.
        exact_keys (Sequence[str]): keys whose shape must equal the model's whenever both hold
            them (a recommender's tables indexed by item id: rows of another item set would
            silently mean other items); also off with ``min_match=0``.

    Returns:
        CheckpointFit: the comparison, for logging.
    """
    fit = CheckpointFit(model_state, ckpt_state)
    id_tables = [(k, c, m) for k, c, m in fit.mismatched if k in set(exact_keys)]
    if min_match > 0 and id_tables:
        key, ckpt_shape, model_shape = id_tables[0]
        raise CheckpointMismatchError(
            f'Refusing to load {filename}: {key} has {ckpt_shape[0]} rows in the checkpoint and '
            f'{model_shape[0]} in {model_name}, which indexes it by item id: the checkpoint was '
            'trained on another item set, and its rows would stand for other items here. Train '
            'on the same dataset (model.dataset=\'train_dataloader\' takes the item count from '
            'it), or set load_min_match=0 to load the other tensors anyway.')
    if min_match > 0 and (fit.matched == 0 or fit.fraction < min_match):
        raise CheckpointMismatchError(
            f'Refusing to load {filename}: {fit.matched} of its {fit.total} tensors '
            f'({fit.fraction:.0%}) fit {model_name} (same key and shape), less than '
            f'load_min_match={min_match:g}. Is it a checkpoint of another model? '
            f'{fit.describe()}. To load what fits anyway, set load_min_match=0 in the config '
            '(--cfg-options load_min_match=0).')
    return fit
