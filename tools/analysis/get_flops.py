"""FLOPs and parameters of a config's model, counted by mmengine's analysis module.

    python tools/analysis/get_flops.py CONFIG [--shape H [W]] [--batch-size 1] \
        [--max-depth 3] [--cfg-options k=v ...]

What is traced is the model's ``mode='tensor'`` forward (no post-processing, no loss):

* image models (detectors, segmentors, classifiers): one image, a dummy ``(1, C, H, W)`` at
  ``--shape`` (padded to the data preprocessor's ``pad_size_divisor``; C from its ``mean``), or
  without ``--shape`` the first sample of the config's test set after its pipeline and the data
  preprocessor (the input the model really gets);
* recommenders: ``--batch-size`` sequences of the model's ``max_len`` item ids (SASRec: the
  hidden states of every position; scoring against all items in ``predict`` is not in it), or
  one step of ``--batch-size`` events for GRU4Rec.

mmengine (a port of fvcore) counts one multiply-add as one FLOP, for convolutions, linear
layers, matmul / einsum / bmm, normalisation layers, upsampling, adaptive average pooling and
grid sampling; to these rules this tool adds one for ``scaled_dot_product_attention`` (its two
matrix products, ``L * S * (E + Ev)`` multiply-adds per batch element and head for ``L`` queries
and ``S`` keys of widths ``E`` and ``Ev``), which mmengine leaves out.  Operators that move data
(reshape, cat, indexing, ...) and ``relu`` it skips silently; the others it meets without a rule
(additions, multiplications, pooling, embedding lookups, softmax, ...) are *not counted*: they
are listed after the table with the number of calls, and so are the modules that hold
parameters but were not called by the traced forward.
"""
import sys  # isort:skip
from pathlib import Path  # isort:skip

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # tools/: the shared modules
    sys.path.append(str(Path(__file__).resolve().parents[1]))
import process_defaults  # noqa: F401 isort:skip  (first: OpenMP reads its env when torch loads)
import argparse
import math
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Counter, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from build_from_config import build_model, build_test_dataloader, config_scope, load_config
from mmengine.analysis import ActivationAnalyzer, FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.analysis.print_helper import complexity_stats_table
from mmengine.config import DictAction

import mmext  # noqa: F401  (registry nodes, safe checkpoint loading)


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``aten::scaled_dot_product_attention``: ``q @ k^T`` and ``attn @ v``.

    ``q``: ``(..., L, E)``, ``k``: ``(..., S, E)``, ``v``: ``(..., S, Ev)``.  The softmax and the
    scaling are element-wise and, as elsewhere in mmengine's count, not counted.
    """
    q, k, v = (get_shape(x) for x in inputs[:3])
    *batch, length, width = q
    return math.prod(batch) * length * k[-2] * (width + v[-1])


#: FLOP rules added to mmengine's
EXTRA_FLOP_RULES = {'aten::scaled_dot_product_attention': sdpa_flop_jit}


@dataclass
class Complexity:
    flops: int
    activations: int
    params: int
    input_desc: str  # what was traced
    table: str  # mmengine's per-module table
    not_counted: Counter[str]  # operator -> occurrences mmengine met but did not count
    uncalled: List[str]  # outermost modules with parameters that the traced forward did not call


def _data_sample_type(model: nn.Module) -> Optional[type]:
    """The data-sample class of mmdet / mmseg models (their forward reads image shapes from
    it); ``None`` for others."""
    try:
        from mmdet.models.detectors import BaseDetector
        from mmdet.structures import DetDataSample
        if isinstance(model, BaseDetector):
            return DetDataSample
    except ImportError:
        pass
    try:
        from mmseg.models.segmentors import BaseSegmentor
        from mmseg.structures import SegDataSample
        if isinstance(model, BaseSegmentor):
            return SegDataSample
    except ImportError:
        pass
    return None


def dummy_image_input(model: nn.Module, shape: Sequence[int]) -> Tuple[torch.Tensor, Any, str]:
    """A random ``(1, C, H, W)`` batch at ``shape`` (H or H W) and matching data samples."""
    if len(shape) not in (1, 2):
        raise ValueError(f'--shape takes H or H W, got {list(shape)}')
    h, w = (shape[0], shape[0]) if len(shape) == 1 else shape
    preprocessor = getattr(model, 'data_preprocessor', None)
    divisor = getattr(preprocessor, 'pad_size_divisor', 1) or 1
    h, w = (math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor)
    mean = getattr(preprocessor, 'mean', None)
    channels = mean.numel() if isinstance(mean, torch.Tensor) else 3
    device = next(model.parameters()).device
    inputs = torch.randn(1, channels, h, w, device=device)
    sample_type = _data_sample_type(model)
    samples = None
    if sample_type is not None:
        meta = dict(
            img_shape=(h, w),
            ori_shape=(h, w),
            pad_shape=(h, w),
            batch_input_shape=(h, w),
            scale_factor=(1.0, 1.0))
        samples = [sample_type(metainfo=meta)]
    return inputs, samples, f'a dummy image batch {tuple(inputs.shape)}'


def real_image_input(model: nn.Module, cfg: Any) -> Tuple[torch.Tensor, Any, str]:
    """The first test sample after the pipeline and the model's data preprocessor."""
    loader = build_test_dataloader(cfg)
    dataset = loader.dataset
    if len(dataset) == 0:
        raise ValueError('the test dataset is empty: pass --shape')
    data = model.data_preprocessor(loader.collate_fn([dataset[0]]), False)
    inputs = data['inputs']
    return inputs, data.get('data_samples'), (f'the first test image, {tuple(inputs.shape)} '
                                              'after the pipeline and data preprocessor')


def recommender_input(model: nn.Module, batch_size: int) -> Tuple[Callable, torch.Tensor, str]:
    """``(forward taking one tensor, that tensor, description)`` for a recommender."""
    num_items = int(model.num_items)
    device = next(model.parameters()).device
    required = tuple(getattr(model, 'required_inputs', ()))
    if 'seq' in required:
        length = int(model.max_len)
        seq = torch.randint(1, num_items + 1, (batch_size, length), device=device)
        return (lambda seq: model._forward({'seq': seq}), seq,
                f'{batch_size} sequence(s) of max_len={length} item ids')
    if 'item' in required:
        items = torch.randint(1, num_items + 1, (batch_size, ), device=device)
        return (lambda item: model._forward({'item': item}), items,
                f'one step of {batch_size} event(s) (scores over {num_items} items)')
    raise ValueError(f'{type(model).__name__}: inputs {required} are not supported')


def _wide(fn: Callable, columns: int = 160) -> Callable:
    """``fn`` run with a ``columns``-wide rich console (the table's module names are cut at
    the console's width, 80 without a terminal)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        before = os.environ.get('COLUMNS')
        os.environ['COLUMNS'] = str(max(columns, int(before or 0)))
        try:
            return fn(*args, **kwargs)
        finally:
            if before is None:
                del os.environ['COLUMNS']
            else:
                os.environ['COLUMNS'] = before

    return wrapped


def _outermost(names: Iterable[str]) -> List[str]:
    """``names`` without those inside another of them, sorted."""
    names = sorted(set(names))
    return [n for n in names if not any(n.startswith(f'{o}.') for o in names)]


def analyze(model: nn.Module,
            forward: Callable,
            inputs: Tuple[Any, ...],
            input_desc: str,
            max_depth: int = 3) -> Complexity:
    """Trace ``forward(*inputs)`` as ``model``'s forward with mmengine's analyzers.

    mmengine's ``get_model_complexity_info`` builds the same two analyzers; they are built here
    directly to read the operators they did not count instead of letting them log warnings.
    """
    model.forward = forward  # traced through model.__call__: module names stay the model's
    try:
        flop = FlopAnalyzer(model, inputs).set_op_handle(**EXTRA_FLOP_RULES)
        act = ActivationAnalyzer(model, inputs)
        for analyzer in (flop, act):
            analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops, activations = flop.total(), act.total()
        table = _wide(complexity_stats_table)(
            flops=flop, activations=act, max_depth=max_depth, show_param_shapes=True)
        not_counted = flop.unsupported_ops()
        holders = {
            name
            for name, module in model.named_modules()
            if any(True for _ in module.parameters(recurse=False))
        }
        uncalled = _outermost(m for m in flop.uncalled_modules() if m in holders)
    finally:
        del model.forward
    # some rules give float counts (bilinear upsampling)
    return Complexity(
        int(round(flops)), int(round(activations)),
        parameter_count(model)[''], input_desc, table, not_counted, uncalled)


def get_flops(config: str,
              shape: Optional[Sequence[int]] = None,
              batch_size: int = 1,
              max_depth: int = 3,
              cfg_options: Optional[dict] = None) -> Complexity:
    from mmext.models.recommenders.base import BaseRecommender

    cfg = load_config(config, cfg_options)
    with config_scope(cfg), torch.no_grad():
        model = build_model(cfg)
        if isinstance(model, BaseRecommender):
            forward, tensor, desc = recommender_input(model, batch_size)
            return analyze(model, forward, (tensor, ), desc, max_depth)
        if shape:
            inputs, samples, desc = dummy_image_input(model, shape)
        else:
            inputs, samples, desc = real_image_input(model, cfg)
        forward = partial(type(model).forward, model, data_samples=samples, mode='tensor')
        return analyze(model, forward, (inputs, ), desc, max_depth)


def _si(x: float) -> str:
    """``1234567`` -> ``'1.23M'``: the units of mmengine's table."""
    for unit, scale in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if abs(x) >= scale:
            return f'{x / scale:.3g}{unit}'
    return str(x)


def format_complexity(c: Complexity) -> str:
    lines = [
        c.table.rstrip(), '', f'Input: {c.input_desc}', f'FLOPs: {_si(c.flops)} ({c.flops:,})',
        f'Activations: {_si(c.activations)}', f'Parameters: {_si(c.params)} ({c.params:,})'
    ]
    if c.not_counted:
        ops = ', '.join(f'{op} ({n})' for op, n in sorted(c.not_counted.items()))
        lines.append(f'Not counted (operators without a FLOP rule, with their calls): {ops}')
    if c.uncalled:
        lines.append(
            'Modules with parameters that the traced forward never called: '
            f"{', '.join(c.uncalled)}. Their parameters are in the count; where the forward "
            'uses their weights directly (nn.MultiheadAttention\'s out_proj, fused projections) '
            'those FLOPs count toward the calling module, otherwise the module did not run in '
            "mode='tensor'.")
    lines.append('One multiply-add counts as one FLOP.')
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='FLOPs and parameters of a config\'s model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='image models: H [W] of a dummy input (default: the first test image)')
    parser.add_argument(
        '--batch-size', type=int, default=1, help='recommenders: sequences (or events) traced')
    parser.add_argument('--max-depth', type=int, default=3, help='module depth of the table')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, as for tools/train.py')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Complexity:
    args = parse_args(argv)
    result = get_flops(args.config, args.shape, args.batch_size, args.max_depth, args.cfg_options)
    print(format_complexity(result))
    return result


if __name__ == '__main__':
    main()
