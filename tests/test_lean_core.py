"""The lean core: recommenders train and evaluate with torch + mmengine alone, and the registry's
areas say which extra each vision part needs.

Each run is a subprocess in which importing mmcv, mmdet, mmseg and mmpretrain fails, as on a
machine where only ``pip install mmext`` (no extras) was done.
"""
import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmext import registry

ROOT = Path(__file__).resolve().parents[1]
TOOLBOXES = registry.TOOLBOXES  # the packages the lean core must not need
# What each extra brings (setup.py's extras_require), as importable top-level packages.
EXTRA_PACKAGES = {
    None: (),
    'det': ('mmcv', 'mmdet'),
    'seg': ('mmcv', 'mmseg', 'mmdet'),
    'pretrain': ('mmcv', 'mmpretrain')
}

BLOCKER = textwrap.dedent('''
    import sys

    class Blocker:
        """Makes the named top-level packages unimportable, as if not installed."""

        def __init__(self, names):
            self.names = set(names)

        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in self.names:
                raise ModuleNotFoundError(f'No module named {name!r} (blocked)', name=name)
            return None

    sys.meta_path.insert(0, Blocker(sys.argv.pop(1).split(',')))
''')


def run_blocked(code: str, blocked=TOOLBOXES, *args: str, timeout: int = 300):
    script = BLOCKER + textwrap.dedent(code)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-c', script, ','.join(blocked), *args],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)


@pytest.mark.parametrize('config',
                         ['configs/sasrec/sasrec_ml100k.py', 'configs/gru4rec/gru4rec_ml100k.py'])
def test_recommender_trains_and_evaluates_without_vision_stack(config, tmp_path):
    """tools/train.py on the shipped config: two training iterations, then one evaluation."""
    proc = run_blocked(
        '''
        import json, runpy, sys
        from mmengine.config import Config
        work_dir, config = sys.argv[1], sys.argv[2]
        cfg = Config.fromfile(config)
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
        cfg.default_hooks.logger.interval = 1
        cfg.default_hooks.checkpoint.update(interval=2, by_epoch=False, save_best=None)
        cfg.log_processor.by_epoch = False
        cfg.dump(f'{work_dir}/short.py')
        sys.argv = ['tools/train.py', f'{work_dir}/short.py', '--work-dir', work_dir]
        sys.path.insert(0, 'tools')  # as `python tools/train.py` has it
        try:
            runpy.run_path('tools/train.py', run_name='__main__')
        finally:
            loaded = sorted(m for m in sys.modules if m.split('.')[0] in
                            ('mmcv', 'mmdet', 'mmseg', 'mmpretrain'))
            print('LOADED_TOOLBOXES', json.dumps(loaded))
    ''', TOOLBOXES, str(tmp_path), config)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert 'LOADED_TOOLBOXES []' in proc.stdout
    scalars = [
        json.loads(line) for line in next(tmp_path.rglob('scalars.json')).read_text().splitlines()
    ]
    losses = [s['loss'] for s in scalars if 'loss' in s]
    metrics = [s for s in scalars if any(k.startswith(('ndcg', 'recall', 'hr', 'mrr')) for k in s)]
    assert len(losses) == 2 and all(0 < x < float('inf') for x in losses), scalars
    assert metrics, f'no evaluation was logged: {scalars}'
    assert (tmp_path / 'iter_2.pth').exists()


def test_vision_part_names_the_extra_to_install():
    proc = run_blocked('''
        from mmext.registry import MODELS, DATASETS, MissingExtraError
        for registry, name, extra in [(MODELS, 'FCOSHead', 'det'), (MODELS, 'mmext.DETR', 'det'),
                                      (MODELS, 'MaskFormerHead', 'seg'),
                                      (MODELS, 'SwinTransformer', 'pretrain'),
                                      (DATASETS, 'ShapesCocoDataset', 'det')]:
            try:
                registry.build(dict(type=name))
            except MissingExtraError as e:
                assert f"pip install 'mmext[{extra}]'" in str(e), str(e)
                print('OK', name, '->', e)
            else:
                raise AssertionError(f'{name} built without its toolbox')
        try:
            MODELS.build(dict(type='SASRecc'))
        except MissingExtraError as e:
            raise AssertionError(f'a typo must not be reported as a missing extra: {e}')
        except KeyError as e:
            assert "Did you mean: 'SASRec'" in str(e), str(e)
            assert 'Not searched, for want of their toolbox' in str(e), str(e)
    ''')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count('OK ') == 5


def registering_modules():
    """``{module: {node names}}`` for every mmext module that calls ``NODE.register_module``."""
    found = {}
    for path in sorted((ROOT / 'mmext').rglob('*.py')):
        tree = ast.parse(path.read_text())
        nodes = {
            node.func.value.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == 'register_module' and isinstance(node.func.value, ast.Name)
        }
        if nodes:
            module = '.'.join(path.relative_to(ROOT).with_suffix('').parts)
            found[module.removesuffix('.__init__')] = nodes
    return found


def test_areas_cover_every_registering_module():
    modules = registering_modules()
    assert modules, 'the scan found no registering module'
    for module, nodes in modules.items():
        for node in nodes:
            areas = [m for m, _ in getattr(registry, node).areas]
            assert any(module == a or module.startswith(a + '.') for a in areas), (
                f'{module} registers into {node}, whose areas {areas} do not cover it')


@pytest.mark.parametrize('extra', list(EXTRA_PACKAGES))
def test_each_area_imports_with_its_extra_alone(extra):
    """An area tagged with an extra imports when only that extra's toolboxes are installed."""
    absent = [p for p in EXTRA_PACKAGES[extra] if importlib.util.find_spec(p) is None]
    if absent:
        pytest.skip(f'[{extra}] is not installed here ({absent} missing)')
    areas = sorted({
        m
        for name in registry.__all__ if isinstance(getattr(registry, name), registry.MMExtRegistry)
        for m, x in getattr(registry, name).areas if x == extra
    })
    blocked = [p for p in TOOLBOXES if p not in EXTRA_PACKAGES[extra]]
    proc = run_blocked(
        '''
        import importlib, sys
        for module in sys.argv[1:]:
            importlib.import_module(module)
    ''', blocked, *areas)
    assert proc.returncode == 0, (f'areas of [{extra}] with {blocked} missing:\n' +
                                  proc.stderr[-3000:])


def test_lookup_stops_at_the_first_area_that_has_the_name():
    proc = run_blocked(
        '''
        import sys
        from mmext.registry import MODELS
        assert MODELS.get('SASRec').__name__ == 'SASRec'
        assert MODELS.get('BaseDataPreprocessor') is not None  # mmengine's, no area imported
        print(sorted(m for m in sys.modules if m.startswith('mmext.models.')))
    ''', ())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'mmext.models.dense_heads' not in proc.stdout
    assert 'mmext.models.backbones' not in proc.stdout


def test_no_vision_area_shadows_an_ancestor_name():
    """A lookup stops at an ancestor's name once the core areas are imported, so no name that a
    vision area registers may also be registered in an ancestor (mmengine's roots)."""
    from mmext import register_all_modules
    register_all_modules(init_default_scope=False)
    nodes = [
        getattr(registry, n) for n in registry.__all__
        if isinstance(getattr(registry, n), registry.MMExtRegistry)
    ]
    for node in nodes:
        vision = [m for m, extra in node.areas if extra is not None]
        for name, obj in node.module_dict.items():
            module = getattr(obj, '__module__', '')
            if not any(module == m or module.startswith(m + '.') for m in vision):
                continue
            parent = node.parent
            while parent is not None:
                assert name not in parent.module_dict, (
                    f'{module}.{name} shadows {parent.scope}::{parent.name}.{name}')
                parent = parent.parent


def test_core_name_that_shadows_mmengine_still_wins():
    proc = run_blocked(
        '''
        from mmext.registry import RUNNERS
        print(RUNNERS.get('Runner').__module__)
    ''', ())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == 'mmext.engine.runner'
