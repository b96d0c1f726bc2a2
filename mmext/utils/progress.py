"""Progress of the long jobs that run outside the Runner's loops (never a silent minute).

Dataset generation, reading large interaction files, checkpoint conversion, benchmark timing and
the metric computation after a test loop run for seconds to minutes with nothing else to say.
This module gives them one way to report, on **stderr** and on **rank 0 only**:

* :class:`Progress` / :func:`track` -- a job of ``total`` steps.  On a terminal it draws
  mmengine's :class:`~mmengine.utils.ProgressBar` (redrawn at most 10 times a second); when
  stderr is not a terminal (a log file, CI, a captured subprocess) it writes a line at the start,
  one each ``step_percent`` % (default 10) and one at the end instead, so a log gets at most
  ``ceil(100 / step_percent) + 1`` lines (11) however many steps there are, plus a heartbeat
  line when ``heartbeat`` seconds (default 30) pass without one;
* :func:`stage` -- a step that cannot count (``torch.load`` of a big checkpoint, a subprocess):
  a line when it starts, a heartbeat while it runs, its duration when it ends.

A job that ends within ``delay`` seconds (default 2, see below) prints nothing at all, so short
jobs stay quiet.  Two environment variables control every report:

* ``MMEXT_PROGRESS``: ``auto`` (default: a bar on a terminal, lines otherwise), ``bar``,
  ``lines``, or ``off`` (also ``0``, ``false``, ``no``) to silence them;
* ``MMEXT_PROGRESS_DELAY``: seconds a job runs before its report appears (default 2; ``0``
  reports every job).

Lean core: this module imports mmengine only (no mmcv/mmdet/mmseg/mmpretrain).
"""
import functools
import math
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterable, Iterator, Optional, TextIO, TypeVar

from mmengine.dist import get_rank, is_distributed
from mmengine.utils import ProgressBar

__all__ = [
    'PROGRESS_ENV', 'PROGRESS_DELAY_ENV', 'progress_mode', 'progress_delay', 'Progress', 'track',
    'stage', 'file_stage', 'announce_metrics'
]

PROGRESS_ENV = 'MMEXT_PROGRESS'
PROGRESS_DELAY_ENV = 'MMEXT_PROGRESS_DELAY'
DEFAULT_DELAY = 2.0
DEFAULT_HEARTBEAT = 30.0
_OFF = ('off', '0', 'false', 'no', 'none')
_MODES = ('auto', 'bar', 'lines')
_REDRAW = 0.1  # seconds between two redraws of a bar
_TICK = 0.5  # how often the heartbeat thread looks at the clock

T = TypeVar('T')


def _rank() -> int:
    """This process's rank: the process group's, else the launcher's environment (dataset
    generation may run before the group exists), else 0."""
    if is_distributed():
        return get_rank()
    for key in ('RANK', 'OMPI_COMM_WORLD_RANK', 'SLURM_PROCID'):
        value = os.environ.get(key, '')
        if value.isdigit():
            return int(value)
    return 0


def _isatty(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed file
        return False


def progress_mode(file: Optional[TextIO] = None) -> str:
    """How a report on ``file`` (default ``sys.stderr``) is shown here: ``'bar'``, ``'lines'``
    or ``'off'`` (``MMEXT_PROGRESS`` says so, or this is not rank 0)."""
    value = os.environ.get(PROGRESS_ENV, 'auto').strip().lower() or 'auto'
    if value in _OFF:
        return 'off'
    if value not in _MODES:
        raise ValueError(f'{PROGRESS_ENV}={value!r}: expected one of {_MODES + ("off", )}')
    if _rank() != 0:
        return 'off'
    if value == 'auto':
        return 'bar' if _isatty(sys.stderr if file is None else file) else 'lines'
    return value


def progress_delay() -> float:
    """Seconds a job runs before its report appears (``MMEXT_PROGRESS_DELAY``, default 2)."""
    text = os.environ.get(PROGRESS_DELAY_ENV, '').strip()
    if not text:
        return DEFAULT_DELAY
    try:
        delay = float(text)
    except ValueError:
        raise ValueError(f'{PROGRESS_DELAY_ENV}={text!r} is not a number of seconds') from None
    if not delay >= 0:
        raise ValueError(f'{PROGRESS_DELAY_ENV}={text!r} must be >= 0')
    return delay


def _fmt_time(seconds: float) -> str:
    if seconds < 60:
        return f'{seconds:.1f} s'
    minutes, secs = divmod(int(seconds + 0.5), 60)
    if minutes < 60:
        return f'{minutes} min {secs:02d} s'
    return f'{minutes // 60} h {minutes % 60:02d} min'


def _fmt_count(count: float, unit: str, with_unit: bool = True) -> str:
    if unit == 'B':  # byte counts read better in MiB
        text, unit = f'{count / 2**20:.1f}', 'MiB'
    else:
        text = str(int(count))
    return f'{text} {unit}' if unit and with_unit else text


class _Prefixed:
    """A file wrapper putting ``prefix`` after every carriage return, so that mmengine's
    ProgressBar, which redraws its line from ``\\r``, keeps the job's description in front."""

    def __init__(self, file: TextIO, prefix: str) -> None:
        self.file, self.prefix = file, prefix

    def write(self, text: str) -> int:
        return self.file.write(text.replace('\r', '\r' + self.prefix))

    def flush(self) -> None:
        self.file.flush()


class _Report:
    """What :class:`Progress` and :func:`stage` share: the mode, the delay before anything is
    shown, a lock around writes and a heartbeat thread."""

    def __init__(self, desc: str, file: Optional[TextIO], mode: Optional[str],
                 delay: Optional[float], heartbeat: Optional[float]) -> None:
        self.desc = desc
        # resolved now, not at import: pytest and callers may swap sys.stderr
        self.file = sys.stderr if file is None else file
        self.mode = progress_mode(self.file) if mode is None else mode
        if self.mode not in ('bar', 'lines', 'off'):
            raise ValueError(f"mode must be 'bar', 'lines' or 'off', got {mode!r}")
        self.delay = progress_delay() if delay is None else float(delay)
        self.heartbeat = heartbeat
        self.start = time.monotonic()
        self.shown = False  # whether anything was written yet
        self.closed = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _begin(self) -> None:
        """Show the report now if there is no delay, then start the heartbeat thread (which
        also shows it once the delay has passed); subclasses call it last in ``__init__``."""
        if self.mode == 'off':
            return
        if self.delay <= 0:
            self._show(time.monotonic())
        if self.delay > 0 or self.heartbeat or self.mode == 'bar':
            self._thread = threading.Thread(
                target=self._beat, name=f'mmext-progress:{self.desc}', daemon=True)
            self._thread.start()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def _write(self, text: str) -> None:
        self.file.write(text)
        self.file.flush()

    def _beat(self) -> None:
        while not self._stop.wait(_TICK):
            with self._lock:
                if self.closed:
                    return
                try:
                    self._tick(time.monotonic())
                except (OSError, ValueError):  # the stream was closed: nothing left to tell
                    return

    def _show(self, now: float) -> None:
        raise NotImplementedError

    def _tick(self, now: float) -> None:
        raise NotImplementedError

    def _stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


class Progress(_Report):
    """Report the progress of a job of ``total`` steps (see the module docstring).

    Use it as a context manager (``__exit__`` closes it, and says where a failing job stopped)
    and call :meth:`update` after each step, or use :func:`track` on an iterable::

        with Progress(len(files), 'converting') as progress:
            for f in files:
                convert(f)
                progress.update()

    Args:
        total: Number of steps; ``None`` when unknown (the count is shown without a percentage).
        desc: What the job does, shown in front of every line.
        unit: The steps' unit (``'images'``...); ``'B'`` shows byte counts in MiB.
        file: Where to write; default ``sys.stderr``.
        mode: ``'bar'``, ``'lines'`` or ``'off'``; default :func:`progress_mode`.
        delay: Seconds before anything is shown; default :func:`progress_delay`.
        step_percent: In ``'lines'`` mode, a line each time this many % more are done.
        heartbeat: Seconds without a line after which one is written all the same (``'lines'``
            mode, and the bar's clock); ``None`` never.
    """

    def __init__(self,
                 total: Optional[int],
                 desc: str,
                 unit: str = '',
                 file: Optional[TextIO] = None,
                 mode: Optional[str] = None,
                 delay: Optional[float] = None,
                 step_percent: float = 10.0,
                 heartbeat: Optional[float] = DEFAULT_HEARTBEAT) -> None:
        if total is not None and total < 0:
            raise ValueError(f'Progress total must be >= 0 or None, got {total}')
        if not 0 < step_percent <= 100:
            raise ValueError(f'step_percent must be in (0, 100], got {step_percent}')
        self.total = None if total is None else int(total)
        self.unit = unit
        self.done = 0
        self.step_percent = float(step_percent)
        self._next_line = 0  # lines mode: the count at which the next percent line is due
        self._last_line = 0.0  # time of the last line or redraw
        self._bar: Optional[ProgressBar] = None
        self._drawn = 0  # count the bar shows
        super().__init__(desc, file, mode, delay, heartbeat)
        self._begin()

    # ------------------------------------------------------------------ public
    def update(self, n: int = 1) -> None:
        """``n`` more steps are done."""
        self.update_to(self.done + n)

    def update_to(self, done: int) -> None:
        """``done`` steps are done in all (for jobs that know a position, e.g. a file offset)."""
        self.done = done
        if self.mode == 'off' or not self.shown:
            return  # the heartbeat thread shows the report once the delay has passed
        if self.mode == 'lines':
            if self.total and self._next_line <= done < self.total:
                with self._lock:
                    if self._next_line <= self.done < self.total:  # the thread may have written
                        self._line(time.monotonic())
            return
        now = time.monotonic()
        if now - self._last_line >= _REDRAW or (self.total and done >= self.total):
            with self._lock:
                self._draw(now)

    def close(self, failed: bool = False) -> None:
        """Finish the report: the final count and the time taken (if anything was shown)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self._stop_thread()
        with self._lock:
            if not self.shown:
                return
            complete = not failed and (self.total is None or self.done >= self.total)
            verb = 'done' if complete else 'stopped'
            if self.mode == 'bar':
                self._draw(time.monotonic())
                self._write('\n' if complete else f'\n{self.desc}: {verb} after '
                            f'{_fmt_time(self.elapsed)}\n')
            else:
                self._write(f'{self._status()}, {verb} in {_fmt_time(self.elapsed)}\n')

    def __enter__(self) -> 'Progress':
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(failed=exc_type is not None)

    # ------------------------------------------------------------------ drawing
    def _status(self) -> str:
        if self.total is None:
            return f'{self.desc}: {_fmt_count(self.done, self.unit)}'
        count = _fmt_count(self.done, self.unit, with_unit=False)
        total = _fmt_count(self.total, self.unit)
        pct = 100 * self.done // self.total if self.total else 100
        return f'{self.desc}: {pct:3d}% ({count}/{total})'

    def _line(self, now: float) -> None:
        """Write the current state as one line (lines mode) and schedule the next one."""
        text = self._status() + f', {_fmt_time(now - self.start)} elapsed'
        if self.total and 0 < self.done < self.total:
            eta = (now - self.start) * (self.total - self.done) / self.done
            text += f', ETA {_fmt_time(eta)}'
        self._write(text + '\n')
        self._last_line = now
        if self.total:  # integer percents: float counts would add a line now and then
            pct = 100 * self.done // self.total
            next_pct = math.ceil((math.floor(pct / self.step_percent) + 1) * self.step_percent)
            self._next_line = max(self.done + 1, -(-next_pct * self.total // 100))

    def _draw(self, now: float) -> None:
        """Redraw the bar (bar mode) with the current count and clock."""
        self._last_line = now
        if not self.total:  # mmengine's bar needs a known, positive total
            self._write(f'\r{self._status()}, {_fmt_time(now - self.start)} elapsed')
            return
        if self._bar is None:
            self._write(self.desc + ' ')
            self._bar = ProgressBar(
                self.total,
                bar_width=max(10, min(40, 70 - len(self.desc))),
                file=_Prefixed(self.file, self.desc + ' '))
            # a bar shown after the delay: its rate and ETA count from the job's start
            timer = self._bar.timer
            if hasattr(timer, '_t_start'):
                timer._t_start -= now - self.start
        done = min(self.done, self.total)
        if done > self._drawn:
            self._bar.update(done - self._drawn)
            self._drawn = done
        elif self._drawn > 0:  # same count: redraw for the clock (update needs a step > 0)
            self._bar.completed -= 1
            self._bar.update(1)
        else:  # nothing done yet: the empty bar with a running clock
            self._write(f'\r{self.desc} [{" " * self._bar.bar_width}] 0/{self.total}, '
                        f'elapsed: {int(now - self.start + 0.5)}s, ETA:')

    def _show(self, now: float) -> None:
        self.shown = True
        if self.mode == 'lines':
            self._line(now)
        elif self.mode == 'bar':
            self._draw(now)

    def _tick(self, now: float) -> None:
        if not self.shown:
            if now - self.start >= self.delay:
                self._show(now)
            return
        if self.mode == 'bar':
            if now - self._last_line >= 1.0:  # keep the clock moving through a slow step
                self._draw(now)
        elif self.heartbeat and now - self._last_line >= self.heartbeat:
            self._line(now)


def track(iterable: Iterable[T],
          desc: str,
          total: Optional[int] = None,
          **kwargs: Any) -> Iterator[T]:
    """Yield the items of ``iterable`` while reporting their progress (a step is counted when
    the caller asks for the next item).  ``total`` defaults to ``len(iterable)`` where it has one;
    ``kwargs`` go to :class:`Progress`."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, **kwargs) as progress:
        for item in iterable:
            yield item
            progress.update()


class _Stage(_Report):
    """One step without a count: see :func:`stage`."""

    def __init__(self, *args: Any) -> None:
        self._last_line = 0.0
        super().__init__(*args)
        self._begin()

    def _show(self, now: float) -> None:
        self.shown = True
        self._last_line = now
        self._write(f'\r{self.desc}...' if self.mode == 'bar' else f'{self.desc}...\n')

    def _tick(self, now: float) -> None:
        if not self.shown:
            if now - self.start >= self.delay:
                self._show(now)
        elif self.mode == 'bar':
            if now - self._last_line >= 1.0:
                self._last_line = now
                self._write(f'\r{self.desc}... {_fmt_time(now - self.start)}')
        elif self.heartbeat and now - self._last_line >= self.heartbeat:
            self._last_line = now
            self._write(f'{self.desc}: still running, {_fmt_time(now - self.start)} elapsed\n')

    def finish(self, failed: bool) -> None:
        with self._lock:
            self.closed = True
        self._stop_thread()
        with self._lock:
            if self.shown:
                start = '\r' if self.mode == 'bar' else ''  # over the running clock
                verb = 'failed after' if failed else 'done in'
                self._write(f'{start}{self.desc}: {verb} {_fmt_time(self.elapsed)}\n')


@contextmanager
def stage(desc: str,
          file: Optional[TextIO] = None,
          mode: Optional[str] = None,
          delay: Optional[float] = None,
          heartbeat: Optional[float] = DEFAULT_HEARTBEAT) -> Iterator[None]:
    """Report a step that cannot count its progress: ``desc...`` once it has run ``delay``
    seconds, a heartbeat every ``heartbeat`` seconds (a running clock on a terminal), and
    ``desc: done in X s`` when it ends.  Arguments as :class:`Progress`."""
    report = _Stage(desc, file, mode, delay, heartbeat)
    try:
        yield
    except BaseException:
        report.finish(failed=True)
        raise
    report.finish(failed=False)


def file_stage(verb: str, path: str, **kwargs: Any) -> ContextManager[None]:
    """:func:`stage` for reading or writing one (large) file: ``'<verb> <path> (<size> MiB)'``,
    the size given when the file exists.  ``kwargs`` go to :func:`stage`."""
    desc = f'{verb} {path}'
    if os.path.isfile(path):
        desc += f' ({_fmt_count(os.path.getsize(path), "B")})'
    return stage(desc, **kwargs)


def announce_metrics(evaluator: Any, **kwargs: Any) -> Any:
    """Wrap the ``compute_metrics`` of every metric of an mmengine ``Evaluator`` in a
    :func:`stage`, so that computing metrics over a large test set after the loop (the whole
    COCO evaluation, a full-ranking metric over every user) is not silent.  Returns the
    evaluator; ``kwargs`` go to :func:`stage`.  Usage, after the Runner is built::

        announce_metrics(runner.test_evaluator)
    """
    for metric in getattr(evaluator, 'metrics', ()):
        compute = metric.compute_metrics
        if getattr(compute, '_mmext_announced', False):
            continue

        def announced(results: list,
                      _compute: Callable = compute,
                      _name: str = type(metric).__name__) -> Any:
            with stage(f'computing {_name} over {len(results)} results', **kwargs):
                return _compute(results)

        announced = functools.wraps(compute)(announced)
        announced._mmext_announced = True  # type: ignore[attr-defined]
        metric.compute_metrics = announced
    return evaluator
