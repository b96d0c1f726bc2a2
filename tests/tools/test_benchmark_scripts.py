"""Every benchmark script (tools/benchmark/bench_*.py) has the same shape:
``def main(argv=None) -> None`` that parses with ``parse_args(argv)``, and ``main()`` under
``if __name__ == '__main__'``.  Read from the source (no import: the scripts pull in the
toolboxes they compare against)."""
import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / 'tools' / 'benchmark'
SCRIPTS = sorted(BENCH.glob('bench_*.py'))


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    assert found, f'no top-level {name}()'
    return found[0]


def _takes_optional_argv(fn: ast.FunctionDef) -> bool:
    args = fn.args
    return ([a.arg for a in args.args] == ['argv'] and len(args.defaults) == 1
            and isinstance(args.defaults[0], ast.Constant) and args.defaults[0].value is None)


def test_only_benchmarks_are_named_bench():
    helpers = {p.name for p in BENCH.glob('*.py')} - {p.name for p in SCRIPTS}
    assert helpers == {'memory.py', 'timing.py'}  # shared helpers, not benchmarks


@pytest.mark.parametrize('path', SCRIPTS, ids=lambda p: p.name)
def test_script_shape(path):
    tree = ast.parse(path.read_text())
    main = _function(tree, 'main')
    assert _takes_optional_argv(main), 'main must be def main(argv=None)'
    assert isinstance(main.returns, ast.Constant) and main.returns.value is None, \
        'main must return None (exit codes through sys.exit)'
    assert _takes_optional_argv(_function(tree, 'parse_args'))
    calls = [
        n for n in ast.walk(main)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == 'parse_args'
    ]
    assert len(calls) == 1 and [ast.unparse(a) for a in calls[0].args] == ['argv']
    guard = [
        n for n in tree.body
        if isinstance(n, ast.If) and ast.unparse(n.test) == "__name__ == '__main__'"
    ]
    assert len(guard) == 1 and 'main()' in ast.unparse(guard[0])
