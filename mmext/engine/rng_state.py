"""The random streams of a training run, as a checkpoint-safe value (issue #21, exact resume).

A resumed run draws the same dropout masks, negative samples and augmentations as the
uninterrupted one only if every stream it draws from continues where it stopped.  These are:

* the global streams: Python's ``random``, numpy's legacy ``np.random``, torch's CPU generator and
  every CUDA device's generator;
* *owned* generators: ``random.Random``, ``np.random.Generator``/``RandomState`` and
  ``torch.Generator`` objects stored as attributes of the train dataset (or of the datasets it
  wraps), of any submodule of the model, and the train dataloader's ``generator``
  (e.g. :class:`mmext.datasets.DigitsCaptionDataset` draws its captions from its own ``_rng``).

:func:`capture_rng_state` returns them as tensors, lists, dicts and plain numbers only, so a
checkpoint holding them still loads with ``torch.load(weights_only=True)`` and no allow-list entry;
:func:`restore_rng_state` puts them back.  :func:`preserved_rng_state` runs a block (validation)
without moving any of them.
"""
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

__all__ = ['capture_rng_state', 'restore_rng_state', 'preserved_rng_state', 'owned_generators']

#: format version of the captured value
RNG_STATE_VERSION = 1
_GENERATOR_TYPES = (random.Random, np.random.Generator, np.random.RandomState, torch.Generator)


def _dataset_roots(dataset: Any, prefix: str = 'dataset') -> Iterator[Tuple[str, Any]]:
    """The dataset and the datasets it wraps (``.dataset``, ``.datasets``), with their names."""
    yield prefix, dataset
    inner = getattr(dataset, 'dataset', None)
    if inner is not None and inner is not dataset:
        yield from _dataset_roots(inner, f'{prefix}.dataset')
    for i, part in enumerate(getattr(dataset, 'datasets', None) or ()):
        yield from _dataset_roots(part, f'{prefix}.datasets.{i}')


def owned_generators(model: Optional[nn.Module] = None, dataloader: Any = None) -> Dict[str, Any]:
    """Generator objects owned by the model's submodules, the dataloader and its dataset.

    Returns:
        ``{'model.<module>.<attr>' | 'dataset[...].<attr>' | 'dataloader.generator': generator}``
    """
    found: Dict[str, Any] = {}
    if model is not None:
        for name, module in model.named_modules():
            for attr, value in vars(module).items():
                if isinstance(value, _GENERATOR_TYPES):
                    found['.'.join(p for p in ('model', name, attr) if p)] = value
    if dataloader is not None:
        if isinstance(getattr(dataloader, 'generator', None), torch.Generator):
            found['dataloader.generator'] = dataloader.generator
        dataset = getattr(dataloader, 'dataset', None)
        if dataset is not None:
            for prefix, part in _dataset_roots(dataset):
                for attr, value in vars(part).items():
                    if isinstance(value, _GENERATOR_TYPES):
                        found[f'{prefix}.{attr}'] = value
    return found


def _to_plain(value: Any) -> Any:
    """numpy arrays -> ``{'ndarray': tensor, 'dtype': str}``, recursively; the rest unchanged."""
    if isinstance(value, np.ndarray):
        return dict(ndarray=torch.from_numpy(value.astype(np.int64)), dtype=str(value.dtype))
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {'ndarray', 'dtype'}:
            return value['ndarray'].numpy().astype(value['dtype'])
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def _generator_state(gen: Any) -> Dict[str, Any]:
    if isinstance(gen, torch.Generator):
        return dict(kind='torch', state=gen.get_state())
    if isinstance(gen, np.random.Generator):
        return dict(kind='numpy', state=_to_plain(gen.bit_generator.state))
    if isinstance(gen, np.random.RandomState):
        return dict(kind='numpy_legacy', state=_to_plain(gen.get_state(legacy=False)))
    version, internal, gauss = gen.getstate()
    return dict(kind='python', state=[version, list(internal), gauss])


def _set_generator_state(gen: Any, saved: Dict[str, Any]) -> None:
    kind, state = saved['kind'], saved['state']
    if kind == 'torch':
        gen.set_state(state)
    elif kind == 'numpy':
        gen.bit_generator.state = _from_plain(state)
    elif kind == 'numpy_legacy':
        gen.set_state(_from_plain(state))
    else:
        gen.setstate((state[0], tuple(state[1]), state[2]))


def capture_rng_state(model: Optional[nn.Module] = None, dataloader: Any = None) -> Dict[str, Any]:
    """Every global stream and every owned generator (see module doc), checkpoint-safe.

    Returns:
        dict with ``version``, ``python``, ``numpy``, ``torch`` (uint8 tensor), ``cuda`` (one uint8
        tensor per device, empty without CUDA) and ``owned`` (per generator name).
    """
    version, internal, gauss = random.getstate()
    return dict(
        version=RNG_STATE_VERSION,
        python=[version, list(internal), gauss],
        numpy=_to_plain(np.random.get_state(legacy=False)),
        torch=torch.get_rng_state(),
        cuda=[s.cpu() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        owned={
            name: _generator_state(gen)
            for name, gen in owned_generators(model, dataloader).items()
        })


def restore_rng_state(state: Dict[str, Any],
                      model: Optional[nn.Module] = None,
                      dataloader: Any = None) -> List[str]:
    """Put back what :func:`capture_rng_state` returned.

    Returns:
        The names of the streams that could not be restored: owned generators the run no longer
        has, or that the state lacks, and ``cuda`` when the device count differs.
    """
    if state.get('version') != RNG_STATE_VERSION:
        raise ValueError(f'unknown random-state format {state.get("version")!r}')
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_from_plain(state['numpy']))
    torch.set_rng_state(state['torch'])
    missed: List[str] = []
    if torch.cuda.is_available():
        if len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])
        else:
            missed.append('cuda')
    owned = owned_generators(model, dataloader)
    saved = state.get('owned', {})
    for name, gen in owned.items():
        if name in saved:
            _set_generator_state(gen, saved[name])
        else:
            missed.append(name)
    missed += sorted(set(saved) - set(owned))
    return missed


@contextmanager
def preserved_rng_state(model: Optional[nn.Module] = None,
                        dataloader: Any = None) -> Iterator[None]:
    """Run the block, then put every stream back as it was before it."""
    state = capture_rng_state(model, dataloader)
    try:
        yield
    finally:
        restore_rng_state(state, model, dataloader)
