"""Issue #21, "nothing silently wrong", for checkpoints: a checkpoint of another model is refused,
a truncated one is named (and skipped by auto-resume), saves are atomic (a killed save leaves no
truncated file under the final name)."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from toy_model import RecordLossHook, ToyDataset, ToyRegressor

from mmext.engine import Runner
from mmext.utils import load_local_checkpoint
from mmext.utils.checkpoint_match import CheckpointMismatchError

ROOT = Path(__file__).resolve().parents[2]
HELPERS = ROOT / 'tests' / 'helpers'


def make_runner(work_dir, name, max_iters=6, resume=False, load_from=None, cfg=None):
    hook = RecordLossHook()
    torch.manual_seed(0)  # the same initial weights in every process
    runner = Runner(
        model=ToyRegressor(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=ToyDataset(),
            batch_size=8,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[hook],
        randomness=dict(seed=7),
        resume=resume,
        load_from=load_from,
        default_scope='mmext',
        cfg=cfg,
    )
    return runner, hook


def log_text(runner) -> str:
    return '\n'.join(p.read_text() for p in Path(runner.log_dir).glob('*.log'))


def toy_state(**overrides):
    state = ToyRegressor().state_dict()
    state.update(overrides)
    return state


# ---------------------------------------------------------------------------------------------
# 2. a checkpoint of another model is refused, not loaded as "do not match exactly"


def fcos_like_state():
    """Keys of a detector: nothing in common with ToyRegressor."""
    return {
        'backbone.conv1.weight': torch.zeros(64, 3, 7, 7),
        'backbone.bn1.weight': torch.ones(64),
        'neck.lateral_convs.0.conv.weight': torch.zeros(256, 128, 1, 1),
        'bbox_head.conv_cls.weight': torch.zeros(4, 256, 3, 3),
    }


def test_load_from_another_model_is_refused_naming_keys(tmp_path):
    ckpt = tmp_path / 'fcos.pth'
    torch.save(dict(state_dict=fcos_like_state(), meta=dict()), ckpt)
    runner, _ = make_runner(tmp_path / 'w', 'other_model', load_from=str(ckpt))
    with pytest.raises(RuntimeError) as info:
        runner.load_or_resume()
    msg = str(info.value)
    assert type(info.value).__name__ == 'CheckpointMismatchError'
    assert 'fcos.pth' in msg and '0 of its 4' in msg
    assert 'backbone.conv1.weight' in msg  # first unexpected key
    assert 'conv.weight' in msg  # first missing key
    assert 'load_min_match' in msg  # how to load anyway


def test_shape_mismatches_are_named(tmp_path):
    # a wider ToyRegressor: only bn.num_batches_tracked and fc.bias keep their shapes (2 of 9)
    wide = {
        k: (v if k in ('bn.num_batches_tracked',
                       'fc.bias') else torch.zeros(*v.shape[:-1], v.shape[-1] + 1))
        for k, v in ToyRegressor().state_dict().items()
    }
    ckpt = tmp_path / 'wide.pth'
    torch.save(dict(state_dict=wide), ckpt)
    runner, _ = make_runner(tmp_path / 'w', 'shapes', load_from=str(ckpt))
    with pytest.raises(RuntimeError, match=r'2 of its 9') as info:
        runner.load_or_resume()
    assert 'conv.weight: checkpoint (4, 1, 4) vs model (4, 1, 3)' in str(info.value)


def test_partial_loads_are_accepted(tmp_path):
    """A pretrained 'backbone' (conv + bn, no fc) and a classifier with an extra head: all or
    almost all of the checkpoint's tensors fit, so they load as mmengine loads them."""
    source = ToyRegressor()
    backbone = {k: v for k, v in source.state_dict().items() if not k.startswith('fc.')}
    with_head = dict(backbone, **{'head.fc.weight': torch.zeros(10, 4)})
    for name, state in [('backbone', backbone), ('with_head', with_head)]:
        ckpt = tmp_path / f'{name}.pth'
        torch.save(dict(state_dict=state), ckpt)
        runner, _ = make_runner(tmp_path / name, name, load_from=str(ckpt))
        runner.load_or_resume()
        torch.testing.assert_close(runner.model.conv.weight, source.conv.weight)


def test_load_min_match_is_configurable(tmp_path):
    ckpt = tmp_path / 'half.pth'
    # 7 of 14 checkpoint tensors fit: refused at 0.6, loaded at the default and at 0
    state = dict(toy_state(), **{f'extra.{i}': torch.zeros(1) for i in range(5)})
    state = dict(state, **{'fc.weight': torch.zeros(2, 2), 'fc.bias': torch.zeros(2)})
    torch.save(dict(state_dict=state), ckpt)
    strict, _ = make_runner(
        tmp_path / 'a', 'min_a', load_from=str(ckpt), cfg=dict(load_min_match=0.6))
    with pytest.raises(RuntimeError, match=r'7 of its 14 .*load_min_match=0.6'):
        strict.load_or_resume()
    for i, cfg in enumerate([None, dict(load_min_match=0)]):
        runner, _ = make_runner(tmp_path / f'b{i}', f'min_b{i}', load_from=str(ckpt), cfg=cfg)
        runner.load_or_resume()
    nothing, _ = make_runner(
        tmp_path / 'c', 'min_c', load_from=str(ckpt), cfg=dict(load_min_match=0))
    torch.save(dict(state_dict=fcos_like_state()), ckpt)
    nothing.load_or_resume()  # 0 disables the check, as documented


def test_tools_test_refuses_a_detector_checkpoint_for_sasrec(tmp_path):
    """`tools/test.py <sasrec config> <fcos checkpoint>` stops before evaluating anything."""
    ckpt = tmp_path / 'fcos.pth'
    torch.save(dict(state_dict=fcos_like_state(), meta=dict()), ckpt)
    proc = subprocess.run([
        sys.executable, 'tools/test.py', 'configs/sasrec/sasrec_ml100k.py',
        str(ckpt), '--work-dir',
        str(tmp_path / 'w')
    ],
                          cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True,
                          text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert 'CheckpointMismatchError' in out and 'backbone.conv1.weight' in out, out[-3000:]
    assert 'Epoch(test)' not in out  # no metrics of an untrained model


# ---------------------------------------------------------------------------------------------
# 3. a truncated checkpoint is named; auto-resume skips it and says so; nothing found is said


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """iter_3.pth and iter_6.pth of one run, and that run's losses."""
    work = tmp_path_factory.mktemp('trained')
    runner, hook = make_runner(work, 'trained', max_iters=6)
    runner.train()
    return work, hook.losses


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ('iter_3.pth', 'iter_6.pth'):
        (dst / name).write_bytes((src / name).read_bytes())
    (dst / 'last_checkpoint').write_text(str(dst / 'iter_6.pth'))
    return dst


@pytest.mark.parametrize('keep', [0, 2, 0.5, -1])
def test_truncated_checkpoint_error_names_the_file(trained, tmp_path, keep):
    data = (trained[0] / 'iter_6.pth').read_bytes()
    size = {0: 0, 2: 2, 0.5: len(data) // 2, -1: len(data) - 1}[keep]
    path = tmp_path / 'cut.pth'
    path.write_bytes(data[:size])
    with pytest.raises(RuntimeError) as info:
        load_local_checkpoint(str(path))
    assert type(info.value).__name__ == 'CorruptCheckpointError'
    assert str(path) in str(info.value) and f'{size} bytes' in str(info.value)


def test_auto_resume_falls_back_past_a_truncated_newest(trained, tmp_path):
    work = copy_run(trained[0], tmp_path / 'work')
    newest = work / 'iter_6.pth'
    newest.write_bytes(newest.read_bytes()[:1000])
    runner, hook = make_runner(work, 'fallback', max_iters=6, resume=True)
    runner.train()
    assert len(hook.losses) == 3  # resumed at iter 3: iterations 4..6 ran again
    torch.testing.assert_close(hook.losses, trained[1][3:], rtol=0, atol=1e-7)
    log = log_text(runner)
    assert f'{newest} is not a complete checkpoint' in log
    assert f'resuming from {work / "iter_3.pth"}' in log


def test_auto_resume_refuses_when_every_checkpoint_is_corrupt(trained, tmp_path):
    work = copy_run(trained[0], tmp_path / 'work')
    for name in ('iter_3.pth', 'iter_6.pth'):
        (work / name).write_bytes(b'')
    runner, _ = make_runner(work, 'all_bad', max_iters=6, resume=True)
    with pytest.raises(RuntimeError, match='no complete checkpoint') as info:
        runner.train()
    assert 'iter_3.pth' in str(info.value) and 'iter_6.pth' in str(info.value)


def test_explicit_resume_of_a_truncated_file_names_it(trained, tmp_path):
    work = copy_run(trained[0], tmp_path / 'work')
    newest = work / 'iter_6.pth'
    newest.write_bytes(newest.read_bytes()[:1000])
    runner, _ = make_runner(work, 'explicit', resume=True, load_from=str(newest))
    with pytest.raises(RuntimeError, match='iter_6.pth is not a complete checkpoint'):
        runner.train()


def test_auto_resume_on_an_empty_work_dir_says_nothing_was_found(tmp_path):
    runner, hook = make_runner(tmp_path / 'empty', 'empty', max_iters=3, resume=True)
    runner.train()
    assert len(hook.losses) == 3
    log = log_text(runner)
    assert 'checkpoint None' not in log
    assert 'No checkpoint to resume in' in log and 'training from scratch' in log


# ---------------------------------------------------------------------------------------------
# 4. atomic saves: a save killed mid-write leaves no truncated file under the final name

KILLED_SAVE = textwrap.dedent('''
    import os, signal, sys
    from mmengine.fileio.backends import LocalBackend
    sys.path.insert(0, {helpers!r})
    sys.path.insert(0, {tests!r})
    from test_checkpoint_guards import make_runner

    saves = []
    real_put = LocalBackend.put

    def put(self, obj, filepath):
        saves.append(filepath)
        if len(saves) < 2:
            return real_put(self, obj, filepath)
        # the second checkpoint (iter_6): write half of it, then die as a kill -9 would
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    LocalBackend.put = put
    runner, _ = make_runner({work!r}, 'killed', max_iters=6)
    runner.train()
''')


def test_killed_save_leaves_the_previous_checkpoint_resumable(trained, tmp_path):
    work = tmp_path / 'work'
    script = KILLED_SAVE.format(
        helpers=str(HELPERS), tests=str(Path(__file__).parent), work=str(work))
    proc = subprocess.run([sys.executable, '-c', script],
                          cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (work / 'iter_3.pth').is_file()
    assert not (work / 'iter_6.pth').exists(), 'a killed save left a file under the final name'
    assert Path((work / 'last_checkpoint').read_text()) == work / 'iter_3.pth'
    partial = [p.name for p in work.iterdir() if p.name.endswith('.tmp')]
    assert len(partial) == 1 and partial[0].startswith('.iter_6.pth.'), partial
    runner, hook = make_runner(work, 'after_kill', max_iters=6, resume=True)
    runner.train()
    torch.testing.assert_close(hook.losses, trained[1][3:], rtol=0, atol=1e-7)
    assert load_local_checkpoint(str(work / 'iter_6.pth'))['meta']['iter'] == 6
    # the killed run's partial file is gone, and the log says so
    assert not [p for p in work.iterdir() if p.name.endswith('.tmp')]
    assert f'Removed {work / partial[0]}: the partial save' in log_text(runner)


def test_failed_save_removes_its_temporary_file(tmp_path, monkeypatch):
    from mmengine.fileio.backends import LocalBackend

    def put(self, obj, filepath):
        with open(filepath, 'wb') as f:
            f.write(obj[:10])
        raise OSError(28, 'No space left on device')

    runner, _ = make_runner(tmp_path / 'work', 'failed_save', max_iters=3)
    monkeypatch.setattr(LocalBackend, 'put', put)
    with pytest.raises(OSError, match='No space left'):
        runner.train()
    # only the config dump: no checkpoint and no temporary file
    left = sorted(p.name for p in (tmp_path / 'work').iterdir() if p.is_file())
    assert [name for name in left if not name.endswith('.py')] == [], left


# ---------------------------------------------------------------------------------------------
# 5. a recommender checkpoint of another item set: most tensors fit, but the id tables do not


@pytest.mark.parametrize('model_type', ['SASRec', 'GRU4Rec'])
def test_recommender_checkpoint_of_another_item_set_is_refused(tmp_path, model_type):
    from mmext.registry import MODELS
    small = dict(SASRec=dict(max_len=8, embed_dims=8), GRU4Rec=dict(hidden_sizes=(8, )))
    trained_on, model, same = (
        MODELS.build(dict(type=model_type, num_items=n, **small[model_type])) for n in (12, 20, 12))
    ckpt = tmp_path / 'other_items.pth'
    torch.save(dict(state_dict=trained_on.state_dict(), meta=dict()), ckpt)
    assert model.item_id_tables(), 'the item tables are found by their num_items + 1 rows'

    def runner_for(net, name, **cfg):
        return Runner(
            model=net,
            work_dir=str(tmp_path / 'w'),
            experiment_name=f'{model_type}_{name}',
            default_scope='mmext',
            cfg=cfg)

    with pytest.raises(CheckpointMismatchError, match=r'13 rows in the checkpoint and 21 in'):
        runner_for(model, 'other').load_checkpoint(str(ckpt))
    # the same item set loads, and load_min_match=0 still loads what fits
    runner_for(same, 'same').load_checkpoint(str(ckpt))
    for key, value in trained_on.state_dict().items():
        assert torch.equal(same.state_dict()[key], value), key
    runner_for(model, 'forced', load_min_match=0).load_checkpoint(str(ckpt))
