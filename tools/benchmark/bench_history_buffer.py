"""Time one log update of mmengine's ``HistoryBuffer`` against mmext's ``GrowingHistoryBuffer``
at several history lengths, as the message hub does it every iteration.

mmengine's buffer appends with ``np.append``, a copy of the whole history, so the cost of an
update grows with the number of iterations logged so far; ours grows its array by doubling.  A
Runner logs about four scalars per training iteration (``time``, ``data_time``, the learning
rate and each loss), so the per-iteration cost is about four updates.

    .venv/bin/python tools/benchmark/bench_history_buffer.py [--lengths 10 15000 60000 200000]
"""
import argparse
import statistics
import time
from typing import Optional, Sequence

from mmengine.logging import HistoryBuffer

from mmext.engine.history_buffer import GrowingHistoryBuffer


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--lengths', type=int, nargs='+', default=[10, 3000, 15000, 60000, 200000])
    p.add_argument('--updates', type=int, default=500, help='updates per timed call')
    p.add_argument('--repeats', type=int, default=7)
    return p.parse_args(argv)


def per_update(cls, length: int, updates: int) -> float:
    """CPU seconds per update of a fresh ``cls`` buffer holding ``length`` entries."""
    buf = cls([1.0] * length, [1] * length)
    t = time.process_time()
    for _ in range(updates):
        buf.update(0.5)
    elapsed = time.process_time() - t
    assert len(buf.data[0]) == min(length + updates, buf.max_length)
    return elapsed / updates


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    impls = {'mmengine': HistoryBuffer, 'mmext': GrowingHistoryBuffer}
    print(f'{"history length":>14} | {"mmengine µs/update":>18} | {"mmext µs/update":>15} | ratio')
    print('-' * 64)
    for length in args.lengths:
        samples = {name: [] for name in impls}
        for _ in range(args.repeats):  # alternating, so load drift hits both alike
            for name, cls in impls.items():
                samples[name].append(per_update(cls, length, args.updates))
        med = {name: statistics.median(s) * 1e6 for name, s in samples.items()}
        print(f'{length:>14} | {med["mmengine"]:>18.2f} | {med["mmext"]:>15.2f} | '
              f'{med["mmengine"] / med["mmext"]:.1f}x')


if __name__ == '__main__':
    main()
