"""Write-once directories of generated data, shared by the embedded synthetic datasets.

A generated dataset lives in a directory whose ``meta.json`` records the generator version and
parameters; it is written last, so its presence marks a complete dataset.  :func:`ensure_generated`
leaves a complete directory alone and otherwise renders into a temporary sibling that is renamed
into place: readers never see a half-written dataset, and concurrent writers (distributed ranks
on one machine) are serialised by a lock file.
"""
import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Collection, Dict, Iterator, Optional

from mmengine.logging import print_log

from mmext.utils.progress import stage

__all__ = ['META_FILE', 'read_meta', 'ensure_generated']

META_FILE = 'meta.json'
# The meta entries that must equal the wanted ones for a directory to be reused; other entries
# (class names, counts) describe the content and are not compared.
_IDENTITY_KEYS = ('version', 'kind', 'params')


def read_meta(root: Path) -> Optional[Dict[str, Any]]:
    """``root/meta.json`` as a dict, or None when it is missing or unreadable."""
    try:
        with open(root / META_FILE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _locked(root: Path, what: str) -> Iterator[None]:
    """Serialise generation across processes on one machine."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still protects readers
        yield
        return
    with open(root.parent / f'.{root.name}.lock', 'w') as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # another process (often another rank) is generating: say why this one waits
            with stage(f'Waiting for another process to finish generating {what} in {root}'):
                fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _mkdtemp_beside(root: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f'.{root.name}.tmp-', dir=root.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; give it a normal directory's mode
    return tmp


def ensure_generated(root: Path,
                     wanted: Dict[str, Any],
                     files_complete: Callable[[Path], bool],
                     write: Callable[[Path], Dict[str, Any]],
                     owned: Collection[str],
                     what: str,
                     force: bool = False) -> Path:
    """Make sure ``root`` holds the data described by ``wanted``; return ``root``.

    Args:
        root: The dataset directory.
        wanted: The meta dict of the wanted dataset; its ``version``, ``kind`` and ``params``
            must equal those in ``root/meta.json`` for an existing directory to be reused.
        files_complete: Checks, given ``root``, that every data file is present.
        write: Renders the dataset into the given (empty) directory and returns extra meta
            entries (counts...) to store next to ``wanted`` in ``meta.json``.
        owned: The top-level entries ``write`` creates; an existing ``root`` holding anything
            else is not replaced (:class:`FileExistsError`), so user data is never deleted.
        what: A description for the log line and errors, e.g. ``'the shapes dataset'``.
            ``write`` reports its own progress (:mod:`mmext.utils.progress`); a process that
            waits for another one's generation says so.
        force: Regenerate even if a complete dataset exists.
    """
    owned = set(owned) | {META_FILE}

    def complete() -> bool:
        meta = read_meta(root)
        return (meta is not None and all(meta.get(k) == wanted.get(k) for k in _IDENTITY_KEYS)
                and files_complete(root))

    if not force and complete():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root, what):
        if not force and complete():  # another process finished it meanwhile
            return root
        if root.exists():
            if not root.is_dir():
                raise FileExistsError(f'{root} exists and is not a directory; cannot write '
                                      f'{what} there')
            foreign = sorted(p.name for p in root.iterdir() if p.name not in owned)
            if foreign:
                raise FileExistsError(
                    f'{root} holds files that were not written for {what} ({foreign[:5]}); '
                    'refusing to replace it. Choose another root or empty it.')
        print_log(f'Generating {what} in {root}...', logger='current')
        tmp = _mkdtemp_beside(root)
        try:
            extra = write(tmp)
            with open(tmp / META_FILE, 'w') as f:  # written last: marks completeness
                json.dump(dict(wanted, **extra), f, indent=2)
            if root.exists():
                old = root.parent / f'.{root.name}.old-{uuid.uuid4().hex[:8]}'
                os.rename(root, old)
                os.rename(tmp, root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root
