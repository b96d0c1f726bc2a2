"""Checkpoints under torch >= 2.6 (weights_only): resume equals an uninterrupted run; foreign
pickled objects are refused before anything in them runs."""
import os
import pathlib
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint
from toy_model import RecordLossHook, ToyDataset, ToyRegressor

from mmext.engine import Runner
from mmext.utils import UnsafeCheckpointError, load_local_checkpoint


def make_runner(work_dir, name, max_iters=6, resume_from=None):
    hook = RecordLossHook()
    runner = Runner(
        model=ToyRegressor(),
        work_dir=str(work_dir),
        experiment_name=name,  # separate MessageHub/logger instances per run in one process
        train_dataloader=dict(
            dataset=ToyDataset(),
            batch_size=8,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-3)),
        # warm-up + steps: the scheduler state must survive the round trip too
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.2, by_epoch=False, begin=0, end=4),
            dict(type='MultiStepLR', milestones=[4], gamma=0.5, by_epoch=False)
        ],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[hook],
        randomness=dict(seed=7),
        resume=resume_from is not None,
        load_from=resume_from,
        default_scope='mmext',
    )
    return runner, hook


def test_resume_matches_uninterrupted_run(tmp_path):
    full, full_hook = make_runner(tmp_path / 'full', 'full')
    full.train()
    ckpt = tmp_path / 'full' / 'iter_3.pth'
    assert ckpt.is_file()
    # What mmengine wrote needs the allow-list: HistoryBuffers holding numpy arrays.
    scalars = load_local_checkpoint(str(ckpt))['message_hub']['log_scalars']
    assert isinstance(scalars['train/loss'], HistoryBuffer)
    assert isinstance(scalars['train/loss'].data[0], np.ndarray)

    resumed, resumed_hook = make_runner(tmp_path / 'resumed', 'resumed', resume_from=str(ckpt))
    resumed.train()
    assert len(resumed_hook.losses) == 3
    np.testing.assert_allclose(resumed_hook.losses, full_hook.losses[3:], rtol=0, atol=1e-7)
    hub = resumed.message_hub.get_scalar('train/loss')
    assert isinstance(hub, HistoryBuffer) and hub.statistics('current') == pytest.approx(
        full_hook.losses[-1])


def test_load_from_restores_weights(tmp_path):
    runner, _ = make_runner(tmp_path / 'a', 'load_a', max_iters=3)
    runner.train()
    model = ToyRegressor()
    ckpt = load_checkpoint(model, str(tmp_path / 'a' / 'iter_3.pth'))
    for key, value in runner.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert ckpt['meta']['iter'] == 3


class Marker:
    """Unpickling this would create a file: proof that nothing from the file ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path), ))


def test_foreign_object_is_refused_by_name(tmp_path):
    marker = tmp_path / 'executed'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=ToyRegressor().state_dict(), extra=Marker(marker)), path)
    with pytest.raises(UnsafeCheckpointError, match=r'pathlib\.Path'):
        load_checkpoint(ToyRegressor(), str(path))
    assert not marker.exists()


class GetattrAbuse:
    """``getattr`` is allowed only for HistoryBuffer's statistics methods."""

    def __init__(self, target, name):
        self.target, self.name = target, name

    def __reduce__(self):
        return (getattr, (self.target, self.name))


@pytest.mark.parametrize('target,name', [(HistoryBuffer, '__init__'), (np.ndarray, 'tofile'),
                                         (HistoryBuffer, 'register_statistics')])
def test_getattr_is_restricted(tmp_path, target, name):
    path = tmp_path / 'getattr.pth'
    torch.save(dict(x=GetattrAbuse(target, name)), path)
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        load_local_checkpoint(str(path))


def test_history_buffer_methods_round_trip(tmp_path):
    buf = HistoryBuffer([1.0, 2.0, 4.0], [1, 1, 1])
    path = tmp_path / 'buf.pth'
    torch.save(dict(buf=buf, arr=np.arange(3), scalar=np.float64(2.5)), path)
    loaded = load_local_checkpoint(str(path))
    assert loaded['buf'].statistics('mean') == pytest.approx(7 / 3)
    assert loaded['scalar'] == 2.5 and loaded['arr'].tolist() == [0, 1, 2]


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        load_local_checkpoint(os.fspath(tmp_path / 'nothing.pth'))
