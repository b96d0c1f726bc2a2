"""Import a script of tools/ as a module, by its path (tools/ is not a package)."""
import importlib.util
import os
import subprocess
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


def run_tool(*args: str, timeout: float = 900) -> str:
    """Run ``python ARGS...`` from the repository root (a script of tools/ and its arguments),
    with the repository on ``PYTHONPATH``; fail with the output's tail unless it exits 0.
    Returns its stdout."""
    path = os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run([sys.executable, *args],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'{args[0]} failed:\n{(proc.stdout + proc.stderr)[-4000:]}'
    return proc.stdout
