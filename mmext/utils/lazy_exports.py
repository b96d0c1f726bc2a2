"""Package attributes imported on first use (PEP 562), so a package can re-export a vision part
without importing its toolbox when only the lean core is used."""
import importlib
from typing import Any, Callable, Dict


def lazy_exports(package: str, exports: Dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports ``exports[name]`` (a module
    relative to ``package``) when ``name`` is first asked for.

    Example, in a package ``__init__``::

        __getattr__ = lazy_exports(__name__, {'CheckedCocoDataset': '.coco'})
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f'module {package!r} has no attribute {name!r}')
        return getattr(importlib.import_module(exports[name], package), name)

    return __getattr__
