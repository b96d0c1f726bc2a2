"""CPU seconds of a process tree, read from ``/proc`` (Linux).

pmixer's ``WarpSampler`` builds batches in three worker processes that stay alive during
training, so ``resource.getrusage(RUSAGE_CHILDREN)`` (finished, waited-for children only) would
miss them.  :func:`tree_cpu_seconds` adds the user + system time of every live descendant
(with the time of its own finished children) to this process's own and to that of its finished
children.
"""
import os
import resource
import time
from typing import Dict, List

__all__ = ['tree_cpu_seconds', 'descendants']

_TICK = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


def _stat_fields(pid: int) -> List[str]:
    with open(f'/proc/{pid}/stat') as f:
        text = f.read()
    # the command name (field 2) is in parentheses and may itself hold spaces or ')'
    return text[text.rindex(')') + 2:].split()


def descendants(pid: int) -> List[int]:
    """Live descendants of ``pid`` (children, grandchildren, ...)."""
    parents: Dict[int, int] = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                parents[int(name)] = int(_stat_fields(int(name))[1])  # field 4: ppid
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile
    found, frontier = [], [pid]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        found += frontier
    return found


def tree_cpu_seconds() -> Dict[str, float]:
    """``{'self': s, 'children': s}``: this process's CPU seconds (all threads) and those of
    its descendants, live (utime + stime + cutime + cstime from ``/proc/PID/stat``) and finished
    (``RUSAGE_CHILDREN``)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    for pid in descendants(os.getpid()):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # fields 14-17 of stat (utime, stime, cutime, cstime), 0-based 11..14 after the name
        total += sum(int(v) for v in fields[11:15]) / _TICK
    return {'self': time.process_time(), 'children': total}
