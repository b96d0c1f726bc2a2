"""tools/setup_env.sh keeps setuptools below 81 on every pip call (the cold set-up trap).

A fresh python 3.11 venv carries setuptools 65, torch 2.14.1 asks for setuptools >= 77.0.3, and an
unconstrained pip then takes the newest, which has no ``pkg_resources`` (mmcv's setup.py and
mmengine's ``mmdet::`` inheritance need it).  CI runs ``setup_env.sh --check-pins`` in a fresh
venv; this test keeps every pip call of the set-up scripts going through the constraints file.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the benchmarks' peer venvs (setup_*_env.sh under tools/benchmark) install through peer_venv.sh
SCRIPTS = ['tools/setup_env.sh', 'tools/benchmark/peer_venv.sh']


def pip_calls(text: str):
    """Shell commands (continuation lines joined) that run pip, comments dropped."""
    joined = re.sub(r'\\\n\s*', ' ', re.sub(r'\n\s+-c ', ' -c ', text))
    for line in joined.splitlines():
        code = line.split('#', 1)[0] if not line.lstrip().startswith('#') else ''
        if re.search(r'-m pip\b|\bpip (install|download|wheel)\b', code):
            yield code.strip()


@pytest.mark.parametrize('script', SCRIPTS)
def test_every_pip_call_is_constrained(script):
    calls = list(pip_calls((ROOT / script).read_text()))
    assert calls, f'no pip call found in {script}: the scan is broken'
    for call in calls:
        assert 'constraints.txt' in call or '$CONSTRAINTS' in call, (
            f'{script}: pip call without requirements/constraints.txt: {call}')


def test_constraints_keep_pkg_resources():
    lines = (ROOT / 'requirements/constraints.txt').read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith('#')]
    assert 'setuptools<81' in pins


def test_peer_venv_scripts_install_through_the_shared_helper():
    """Each benchmark peer's set-up script leaves pip to peer_venv.sh (scanned above)."""
    scripts = sorted((ROOT / 'tools/benchmark').glob('setup_*_env.sh'))
    assert len(scripts) >= 3
    for script in scripts:
        text = script.read_text()
        assert 'peer_venv.sh' in text and 'peer_venv_main' in text, script.name
        assert not list(pip_calls(text)), f'{script.name} calls pip itself'
