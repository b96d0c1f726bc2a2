"""Peak memory of one training step, measured the same way by every mmext benchmark.

Each candidate runs in a fresh subprocess (CPU resident-set numbers are per process), with
glibc's mmap threshold fixed at 64 KiB: glibc otherwise keeps freed blocks and raises the
threshold after big frees, so the resident set would show what the allocator retained rather
than what was live.  Inside the child, after a warm-up step (weights, the batch and gradients
exist), one more step is measured:

* CUDA: ``torch.cuda.max_memory_allocated`` minus what was allocated before the step;
* CPU: the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``) and ``VmHWM - VmRSS``
  is the step's peak; where the mark cannot be reset, ``ru_maxrss`` growth over the step.

A benchmark script calls :func:`measure_in_subprocess` in the parent and, when started with
``--memory-child NAME``, :func:`report_step_peak` in the child.
"""
import json
import os
import resource
import subprocess
import sys
from typing import Callable, Sequence, Tuple

import torch


def _reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux >= 4.0); False where that is impossible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def step_peak_bytes(step: Callable[[], object], device: str = 'cpu') -> Tuple[int, str]:
    """Bytes a training ``step`` needs at its peak beyond what exists before it; the method."""
    step()  # warm-up: gradients and allocator caches exist from here on
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base, 'cuda max_memory_allocated'
    if _reset_peak_rss():
        base = _status_kib('VmRSS')
        step()
        return (_status_kib('VmHWM') - base) * 1024, 'VmHWM - VmRSS'
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024, 'ru_maxrss growth'


def report_step_peak(step: Callable[[], object], device: str = 'cpu') -> None:
    """In the child: print the step's peak as the JSON line the parent reads."""
    peak, method = step_peak_bytes(step, device)
    print(json.dumps(dict(peak_bytes=int(peak), method=method)), flush=True)


def measure_in_subprocess(script: str, argv: Sequence[str], name: str) -> Tuple[float, str]:
    """Run ``script *argv --memory-child name`` and return (peak MiB, method)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='131072')
    cmd = [sys.executable, os.path.abspath(script), *argv, '--memory-child', name]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    result = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith('{')][-1])
    return result['peak_bytes'] / 2**20, result['method']
