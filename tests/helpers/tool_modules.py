"""Import a script of tools/ as a module, by its path (tools/ is not a package)."""
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_tool(relpath: str) -> ModuleType:
    """``load_tool('tools/analysis/get_flops.py')``: the module, registered in ``sys.modules``
    as ``tool_<stem>`` (dataclasses look their module up there)."""
    path = ROOT / relpath
    name = f'tool_{path.stem}'
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
