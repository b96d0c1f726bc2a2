"""Whether an interactive window can be opened (``--show``), decided without opening one."""
import os
import sys
from typing import Mapping, Optional

__all__ = ['has_display', 'NO_DISPLAY_MESSAGE']

NO_DISPLAY_MESSAGE = ('no display to show images on (DISPLAY and WAYLAND_DISPLAY are unset, or '
                      'MPLBACKEND selects a non-interactive backend); write the drawings to files '
                      'instead with --show-dir DIR')

# matplotlib backends that draw into files or buffers only
_NON_INTERACTIVE = {'agg', 'cairo', 'pdf', 'pgf', 'ps', 'svg', 'template'}


def has_display(environ: Optional[Mapping[str, str]] = None,
                platform: Optional[str] = None) -> bool:
    """``True`` when matplotlib can open a window: macOS and Windows always can; elsewhere an X11
    or Wayland display must be set.  ``MPLBACKEND=Agg`` (or another file backend) means no."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    backend = environ.get('MPLBACKEND', '').lower()
    if backend in _NON_INTERACTIVE or backend.startswith('module://matplotlib_inline'):
        return False
    if platform in ('darwin', 'win32'):
        return True
    return bool(environ.get('DISPLAY') or environ.get('WAYLAND_DISPLAY'))
