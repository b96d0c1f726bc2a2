"""The timing protocol every mmext benchmark uses: candidates run alternately.

Alternating (ABAB...) rather than timing one candidate after the other means that drift in the
machine's load affects all candidates alike.  Each call is synchronised on CUDA devices, and
both wall and process-CPU seconds are kept: on a shared machine, CPU time is the steadier of the
two.  The calls report their progress on stderr (:mod:`mmext.utils.progress`): lines are written
between two timed calls; during a call only the report's clock thread wakes, twice a second,
for microseconds (a heartbeat line only in a call longer than 30 s).
"""
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Union

import torch

from mmext.utils.progress import Progress


class Sample(NamedTuple):
    wall: float
    cpu: float


def sync(device: Optional[Union[str, torch.device]]) -> None:
    if device is not None and torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def interleaved(fns: Dict[str, Callable[[], object]],
                repeats: int,
                warmup: int = 1,
                device: Optional[Union[str, torch.device]] = None) -> Dict[str, List[Sample]]:
    """Call every function ``warmup`` times, then ``repeats`` rounds of one call each, in turn;
    return the per-call samples of each."""
    samples: Dict[str, List[Sample]] = {name: [] for name in fns}
    desc = f'timing {", ".join(fns)} ({warmup} warm-up + {repeats} rounds)'
    with Progress((warmup + repeats) * len(fns), desc, unit='calls') as progress:
        for _ in range(warmup):
            for fn in fns.values():
                fn()
                progress.update()
        for _ in range(repeats):
            for name, fn in fns.items():
                sync(device)
                wall, cpu = time.perf_counter(), time.process_time()
                fn()
                sync(device)
                samples[name].append(Sample(time.perf_counter() - wall, time.process_time() - cpu))
                progress.update()
    return samples
