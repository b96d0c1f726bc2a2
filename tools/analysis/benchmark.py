"""Inference speed of a trained model on this machine: images/s (sequences/s for recommenders).

    python tools/analysis/benchmark.py CONFIG CHECKPOINT [--num-iters 50] [--warmup 5] \
        [--threads N] [--log-interval 10] [--device cpu] [--cfg-options k=v ...]

Builds the model (with the checkpoint's weights) and the config's test dataloader, then times
``model.test_step(batch)`` batch after batch: data preprocessing, forward and post-processing,
as ``tools/test.py`` runs them, under ``torch.no_grad``.  Loading the batch is timed apart (data
time) and is not part of the speed.  The first ``--warmup`` iterations are run but not counted;
the loader starts over when it runs out before ``warmup + num_iters`` iterations.

Each iteration's wall time and this process's CPU time (all its threads together) are kept: on
a shared machine the wall time also holds the time the process waited for a core, the CPU time
does not, so the two side by side say how much of a slow run is contention.  Medians are the
figures to compare; a CPU/wall ratio near the thread count means the threads were busy.
"""
import sys  # isort:skip
from pathlib import Path  # isort:skip

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # tools/: the shared modules
    sys.path.append(str(Path(__file__).resolve().parents[1]))
import process_defaults  # noqa: F401 isort:skip  (first: OpenMP reads its env when torch loads)
import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch
from build_from_config import build_model, build_test_dataloader, config_scope, load_config
from mmengine.config import DictAction

import mmext  # noqa: F401  (registry nodes, safe checkpoint loading)


@dataclass
class Benchmark:
    unit: str  # 'images' or 'sequences'
    threads: int
    warmup: int
    samples: List[int]  # per counted iteration
    wall: List[float]  # seconds per counted iteration
    cpu: List[float]
    data: List[float]  # loading time, not counted in the speed

    @property
    def throughput(self) -> float:
        """Samples per second over the counted iterations (total samples / total wall time)."""
        return sum(self.samples) / sum(self.wall)

    @property
    def median_throughput(self) -> float:
        """The median iteration's samples per second."""
        return statistics.median(n / t for n, t in zip(self.samples, self.wall))


def count_samples(data: Any) -> Tuple[int, str]:
    """``(samples in the batch, their unit)`` of a collated batch."""
    inputs = data.get('inputs') if isinstance(data, dict) else None
    if isinstance(inputs, torch.Tensor):
        return inputs.size(0), 'images'
    if isinstance(inputs, (list, tuple)) and inputs:
        return len(inputs), 'images'
    if isinstance(inputs, dict):
        if isinstance(inputs.get('seq'), torch.Tensor):
            return inputs['seq'].size(0), 'sequences'
        first = next((v for v in inputs.values() if isinstance(v, torch.Tensor)), None)
        if first is not None and first.dim():
            return first.size(0), 'samples'
    raise ValueError(f'cannot tell the batch size of a batch with inputs {type(inputs)}')


def _batches(loader: Any) -> Iterator[Tuple[Any, float]]:
    """``(batch, seconds it took to load)`` forever, starting the loader over when it ends."""
    while True:
        it = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            yield batch, time.perf_counter() - start


def _sync(device: str) -> None:
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def run_benchmark(model: torch.nn.Module,
                  loader: Any,
                  num_iters: int = 50,
                  warmup: int = 5,
                  log_interval: int = 10,
                  device: str = 'cpu') -> Benchmark:
    """Time ``model.test_step`` on ``warmup + num_iters`` batches of ``loader``."""
    if num_iters < 1 or warmup < 0:
        raise ValueError(f'num_iters={num_iters} must be >= 1 and warmup={warmup} >= 0')
    result = Benchmark('samples', torch.get_num_threads(), warmup, [], [], [], [])
    total = warmup + num_iters
    batches = _batches(loader)
    for i in range(1, total + 1):
        data, data_time = next(batches)
        n, result.unit = count_samples(data)
        _sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            model.test_step(data)
        _sync(device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if i > warmup:
            result.samples.append(n)
            result.wall.append(wall)
            result.cpu.append(cpu)
            result.data.append(data_time)
        if log_interval and (i % log_interval == 0 or i == total):
            if i <= warmup:
                print(f'iter {i}/{total} (warm-up): {wall:.4f} s', flush=True)
            else:
                print(
                    f'iter {i}/{total}: median so far {statistics.median(result.wall):.4f} s/iter '
                    f'wall, {statistics.median(result.cpu):.4f} s/iter CPU, '
                    f'{result.median_throughput:.1f} {result.unit}/s',
                    flush=True)
    return result


def format_benchmark(b: Benchmark) -> str:
    rows = [('wall', b.wall), ('CPU (process)', b.cpu), ('data loading', b.data)]
    ratio = statistics.median(c / w for c, w in zip(b.cpu, b.wall))
    lines = [
        f'{len(b.wall)} iterations counted after {b.warmup} warm-up, {sum(b.samples)} '
        f'{b.unit}, torch threads: {b.threads}', f"{'s/iter':<16}{'median':>10}{'mean':>10}"
    ]
    lines += [
        f'{name:<16}{statistics.median(v):>10.4f}{statistics.fmean(v):>10.4f}' for name, v in rows
    ]
    lines += [
        f'CPU/wall: {ratio:.2f} (median; about the number of busy threads)',
        f'{b.unit}/s: {b.median_throughput:.2f} (median iteration), {b.throughput:.2f} '
        '(all counted iterations); data loading not included'
    ]
    return '\n'.join(lines)


def benchmark(config: str,
              checkpoint: str,
              num_iters: int = 50,
              warmup: int = 5,
              threads: Optional[int] = None,
              log_interval: int = 10,
              device: str = 'cpu',
              cfg_options: Optional[dict] = None) -> Benchmark:
    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        cfg = load_config(config, cfg_options)
        with config_scope(cfg):
            model = build_model(cfg, checkpoint, device)
            loader = build_test_dataloader(cfg)
            print(
                f'{config}: {type(model).__name__} on {device}, {len(loader)} test batches of '
                f'{loader.batch_size}, {warmup} warm-up + {num_iters} timed iterations',
                flush=True)
            return run_benchmark(model, loader, num_iters, warmup, log_interval, device)
    finally:
        torch.set_num_threads(threads_before)  # callers in the same process keep theirs


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Inference speed of a trained model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--num-iters', type=int, default=50, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=5, help='iterations run but not timed')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s choice)')
    parser.add_argument(
        '--log-interval', type=int, default=10, help='a progress line every N iterations')
    parser.add_argument('--device', default='cpu', help="e.g. 'cpu' or 'cuda:0'")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, as for tools/train.py')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Benchmark:
    args = parse_args(argv)
    result = benchmark(args.config, args.checkpoint, args.num_iters, args.warmup, args.threads,
                       args.log_interval, args.device, args.cfg_options)
    print(format_benchmark(result))
    return result


if __name__ == '__main__':
    main()
