"""mmext.Runner's checkpoint guarantees (issue #21, "nothing silently wrong").

A mixin of :class:`mmext.engine.Runner` that changes four of mmengine 0.10.7's Runner methods:

* ``load_checkpoint`` (``load_from``, ``tools/test.py``, resume): refuses a checkpoint of which
  fewer than ``load_min_match`` (config key, default 0.5) of the tensors fit the model, naming
  the first unexpected, missing and mis-shaped keys (:mod:`mmext.utils.checkpoint_match`).
* ``load_or_resume`` with ``resume=True`` and no ``load_from`` (``--resume``): a newest
  checkpoint that is incomplete is named and skipped, the previous ones of the same name pattern
  are tried, newest first, and the log says which one was resumed. An empty work dir is said to
  be one ("No checkpoint to resume in ...: training from scratch").
* ``save_checkpoint``: local checkpoints are written to a temporary file in the same folder,
  flushed to disk, then renamed over the final name, so a killed save never leaves a truncated
  file under it (and CheckpointHook writes ``last_checkpoint`` only after the rename); the
  temporary file of a run killed mid-save is removed, with a warning, by the next save there.

Checkpoints given by name (``load_from``, ``--resume PATH``) are never replaced by another one:
an incomplete one raises :class:`mmext.utils.CorruptCheckpointError` naming it.
"""
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Callable, List, Union

from mmengine.dist import master_only
from mmengine.fileio import get_file_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

from mmext.utils.checkpoint import CorruptCheckpointError
from mmext.utils.checkpoint_match import DEFAULT_LOAD_MIN_MATCH, check_fit

__all__ = ['CheckpointGuardsMixin', 'older_checkpoints', 'partial_saves_of_dead_runs']


def older_checkpoints(latest: str) -> List[str]:
    """Local checkpoints named like ``latest`` with a smaller number, newest first.

    ``work_dirs/x/iter_6.pth`` -> ``[.../iter_3.pth, ...]``: the last number in the file name is
    the step, the rest of the name must be equal.
    """
    folder, name = osp.split(latest)
    parts = re.fullmatch(r'(.*?)(\d+)(\D*)', name)
    if parts is None or not osp.isdir(folder or '.'):
        return []
    prefix, step, suffix = parts.group(1), int(parts.group(2)), parts.group(3)
    pattern = re.compile(re.escape(prefix) + r'(\d+)' + re.escape(suffix))
    found = []
    for other in os.listdir(folder or '.'):
        match = pattern.fullmatch(other)
        if match and int(match.group(1)) < step:
            found.append((int(match.group(1)), osp.join(folder, other)))
    return [path for _, path in sorted(found, reverse=True)]


class CheckpointGuardsMixin:
    """Load, resume and save overrides for :class:`mmengine.runner.Runner` (see module doc)."""

    @property
    def load_min_match(self) -> float:
        """Least fraction of a loaded checkpoint's tensors that must fit the model."""
        value = self.cfg.get('load_min_match', None)
        return DEFAULT_LOAD_MIN_MATCH if value is None else float(value)

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):
        """mmengine's ``Runner.load_checkpoint``, refusing checkpoints of another model."""
        checkpoint = _load_checkpoint(filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model

        state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
        revised = OrderedDict()
        for key, value in state.items():
            for pattern, repl in revise_keys:
                key = re.sub(pattern, repl, key)
            revised[key] = value
        revised._metadata = getattr(state, '_metadata', OrderedDict())
        id_keys = model.item_id_tables() if hasattr(model, 'item_id_tables') else ()
        fit = check_fit(
            model.state_dict(),
            revised,
            self.load_min_match,
            filename,
            type(model).__name__,
            exact_keys=id_keys)

        # the keys are revised once, here: a second pass could strip a real 'module.' prefix
        if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
            checkpoint = dict(checkpoint, state_dict=revised)
        else:
            checkpoint = revised
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=[])
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename} ({fit.matched} of its {fit.total} '
                         'tensors fit the model)')
        return checkpoint

    def load_or_resume(self) -> None:
        """mmengine's ``load_or_resume``; auto-resume goes through :meth:`_auto_resume`."""
        if self._has_loaded:
            return None
        if self._resume and self._load_from is None:
            self._auto_resume()
        else:
            super().load_or_resume()

    def _auto_resume(self) -> None:
        """Resume from ``work_dir/last_checkpoint``, skipping incomplete checkpoints."""
        record = osp.join(self.work_dir, 'last_checkpoint')
        latest = None
        if osp.isfile(record):
            with open(record) as f:
                latest = f.read().strip() or None
        if latest is None:
            why = 'last_checkpoint is empty' if osp.isfile(record) else 'no last_checkpoint file'
            others = sorted(n for n in os.listdir(self.work_dir) if n.endswith('.pth'))
            hint = (f' ({len(others)} .pth file(s) there, e.g. {others[0]}: pass resume=True '
                    'with load_from=PATH, or --resume PATH, to resume one)' if others else '')
            self.logger.warning(f'No checkpoint to resume in {self.work_dir} ({why}){hint}: '
                                'training from scratch.')
            return

        local = isinstance(get_file_backend(latest), LocalBackend)
        candidates = [latest] + (older_checkpoints(latest) if local else [])
        skipped: List[str] = []
        for path in candidates:
            try:
                self.resume(path)
            except (CorruptCheckpointError, FileNotFoundError) as err:
                if not local:
                    raise
                self.logger.warning(f'Auto-resume skips {path}: {err}')
                skipped.append(path)
                continue
            if skipped:
                self.logger.warning(f'Auto-resume skipped {len(skipped)} incomplete '
                                    f'checkpoint(s) ({", ".join(skipped)}): resuming from {path}')
            else:
                self.logger.info(f'Auto resumed from the latest checkpoint {path}.')
            self._has_loaded = True
            return
        raise CorruptCheckpointError(
            f'--resume: no complete checkpoint in {self.work_dir}: tried {", ".join(skipped)}. '
            'Delete them to train from scratch, or resume another one with --resume PATH.')

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        """mmengine's ``save_checkpoint``, atomic on local disks (temporary file + rename)."""
        file_client_args = args[0] if args else kwargs.get('file_client_args')
        backend = get_file_backend(out_dir, backend_args=kwargs.get('backend_args'))
        if file_client_args is not None or not isinstance(backend, LocalBackend):
            return super().save_checkpoint(out_dir, filename, *args, **kwargs)

        folder, name = osp.split(filename)
        tmp_name = osp.join(folder, f'.{name}.{os.getpid()}.tmp')  # no CheckpointHook pattern
        final, tmp = osp.join(out_dir, filename), osp.join(out_dir, tmp_name)
        for stale in partial_saves_of_dead_runs(osp.dirname(final) or '.'):
            os.remove(stale)
            self.logger.warning(f'Removed {stale}: the partial save of a run that was killed '
                                'while saving (its process is gone)')
        try:
            super().save_checkpoint(out_dir, tmp_name, *args, **kwargs)
            _fsync(tmp)
            os.replace(tmp, final)
        except BaseException:
            if osp.exists(tmp):
                os.remove(tmp)
            raise
        _fsync(osp.dirname(final) or '.')  # the rename itself survives a power cut


_PARTIAL_SAVE = re.compile(r'\.(?P<name>.+)\.(?P<pid>\d+)\.tmp')


def partial_saves_of_dead_runs(folder: str) -> List[str]:
    """Temporary files of :meth:`CheckpointGuardsMixin.save_checkpoint` in ``folder`` whose
    writing process no longer runs (killed mid-save): never renamed, so never a checkpoint."""
    found = []
    for name in sorted(os.listdir(folder)):
        match = _PARTIAL_SAVE.fullmatch(name)
        if match and not _process_alive(int(match['pid'])):
            found.append(osp.join(folder, name))
    return found


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
