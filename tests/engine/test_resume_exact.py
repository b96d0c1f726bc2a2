"""Issue #21 item 5: a resumed run reproduces the uninterrupted one bit for bit.

One test per model family, each with the randomness its shipped config draws: SASRec (dropout,
negatives drawn in the dataset from ``np.random``) and GRU4Rec (dropout, negatives drawn in the
model with ``torch.multinomial``), FCOS on shapes (``RandomFlip``), the ITC demo (random crops,
captions drawn from the dataset's own generator, stochastic depth, momentum encoder and feature
queue).  Each run validates between epochs (validation draws from torch's generator when it
creates its DataLoader iterator) and is compared with a run resumed from an epoch-boundary
checkpoint and, for the recommenders, from a mid-epoch one (``CheckpointHook(by_epoch=False)``):
every training loss and every final tensor of the model must be equal.
"""
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from toy_model import RecordLossHook

from mmext.engine import Runner
from mmext.utils import load_local_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def train(cfg, work_dir, resume_from=None):
    """Train ``cfg`` in ``work_dir``; returns ``(losses, model state_dict)``."""
    cfg = cfg.copy()
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = osp.basename(str(work_dir))  # own MessageHub/logger per run
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='RecordLossHook')]
    cfg.resume, cfg.load_from = resume_from is not None, resume_from
    cfg.log_level = 'WARNING'
    with DefaultScope.overwrite_default_scope('mmext'):
        runner = Runner.from_cfg(cfg)
        runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, RecordLossHook))
    return hook.losses, runner.model.state_dict()


def assert_same_run(full, resumed, skipped):
    """``resumed`` continues ``full`` after its first ``skipped`` iterations, bit for bit."""
    (full_losses, full_state), (losses, state) = full, resumed
    assert len(losses) == len(full_losses) - skipped
    assert losses == full_losses[skipped:]
    assert full_state.keys() == state.keys()
    for key, value in full_state.items():
        assert torch.equal(value, state[key]), key


def check_resume(cfg, tmp_path, boundary, mid=None):
    """Full run vs resumed from ``epoch_{boundary}.pth`` (and ``iter_{mid}.pth``)."""
    if mid is not None:
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=mid, by_epoch=False)
        full = train(cfg, tmp_path / 'full_iter')
        ckpt = str(tmp_path / 'full_iter' / f'iter_{mid}.pth')
        assert_same_run(full, train(cfg, tmp_path / 'resumed_iter', ckpt), mid)
        meta = load_local_checkpoint(ckpt)['meta']
        assert 0 < meta['batches_done_in_epoch'] < mid  # really inside an epoch
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    full = train(cfg, tmp_path / 'full')
    ckpt = str(tmp_path / 'full' / f'epoch_{boundary}.pth')
    skipped = load_local_checkpoint(ckpt)['meta']['iter']
    assert_same_run(full, train(cfg, tmp_path / 'resumed', ckpt), skipped)


# ---------------------------------------------------------------------------- recommenders
def ring_file(path, num_users=40, num_items=30, length=16, seed=0):
    """Users walk the item ring (next = previous + 1) with random jumps."""
    rng = np.random.default_rng(seed)
    lines = ['user_id:token\titem_id:token\ttimestamp:float']
    for u in range(num_users):
        item = int(rng.integers(num_items))
        for t in range(length):
            lines.append(f'u{u}\ti{item}\t{1000 * u + t}')
            item = int(rng.integers(num_items)) if rng.random() < 0.2 else (item + 1) % num_items
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_sasrec_resume_is_exact(tmp_path):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'sasrec' / 'sasrec_ml100k.py'))
    ann = ring_file(tmp_path / 'ring.inter')
    for part in ('train', 'val', 'test'):
        cfg[f'{part}_dataloader'].dataset.update(ann_file=ann, max_len=8)
    cfg.train_dataloader.batch_size = 16  # 40 users x 2 windows: 5 batches per epoch
    cfg.model.update(max_len=8, embed_dims=16, ffn_dims=16, dropout=0.3)
    assert cfg.train_dataloader.dataset.num_train_negatives == 1  # drawn from np.random
    cfg.train_cfg.update(max_epochs=2, val_interval=1)
    cfg.default_hooks.logger.interval = 1000
    check_resume(cfg, tmp_path, boundary=1, mid=7)


def synthetic_clicks(path, n_items=20, n_sessions=60, seed=0):
    rng = np.random.default_rng(seed)
    lines, t = ['SessionId\tItemId\tTime'], 0
    for s in range(n_sessions):
        item, step = int(rng.integers(n_items)), int(rng.choice([1, 7]))
        for _ in range(int(rng.integers(3, 9))):
            lines.append(f'{s}\t{item}\t{t}')
            item, t = (item + step) % n_items, t + 60
        t += 3600
    path.write_text('\n'.join(lines) + '\n')


def test_gru4rec_resume_is_exact(tmp_path):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'gru4rec' / 'gru4rec_ml100k.py'))
    synthetic_clicks(tmp_path / 'clicks.tsv')
    data = dict(
        data_path=str(tmp_path / 'clicks.tsv'),
        file_format='session',
        session_gap=None,
        min_item_support=1,
        test_seconds=10 * 3600)
    for part in ('train', 'val', 'test'):
        cfg[f'{part}_dataloader'].dataset.update(data)
    # negatives from torch.multinomial in the model, dropout on the embedding and hidden state
    cfg.model.update(
        hidden_sizes=(16, ), num_negatives=8, dropout_p_embed=0.2, dropout_p_hidden=0.3)
    cfg.train_dataloader.batch_size = 8
    cfg.train_cfg.update(max_epochs=2, val_interval=1)
    cfg.val_evaluator = [dict(type='RankingMetric', topk=(5, ), metrics=('recall', 'mrr'))]
    cfg.default_hooks.logger.interval = 1000
    # epoch boundaries only: the slots' GRU states carried between batches are not checkpointed
    check_resume(cfg, tmp_path, boundary=1)


# ---------------------------------------------------------------------------- detector
def test_fcos_resume_is_exact(tmp_path):
    pytest.importorskip('mmdet')
    cfg = Config.fromfile(str(ROOT / 'configs' / 'fcos' / 'fcos_r18_fpn_shapes-128_demo.py'))
    # one iteration of 8 images per epoch: 8 flips drawn, so an unrestored stream shows
    shapes = dict(num_train=8, num_val=2, img_size=64, seed=3)
    data_root = str(tmp_path / 'shapes') + '/'
    for part, batch_size in (('train', 8), ('val', 2)):
        loader = cfg[f'{part}_dataloader']
        loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=data_root, shapes_cfg=shapes)
    assert any(t['type'] == 'mmdet.RandomFlip' for t in cfg.train_dataloader.dataset.pipeline)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = data_root + 'annotations/instances_val.json'
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg.update(max_epochs=2, val_interval=1)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3)]
    check_resume(cfg, tmp_path, boundary=1)


# ---------------------------------------------------------------------------- ITC
def test_itc_resume_is_exact(tmp_path):
    pytest.importorskip('mmpretrain')
    cfg = Config.fromfile(str(ROOT / 'configs' / 'itc' / 'itc_vit-tiny_digits_demo.py'))
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.dataset.indices = 16  # 2 iterations per epoch
    cfg.val_dataloader.dataset.indices = 10
    cfg.test_dataloader = cfg.val_dataloader
    cfg.model.loss.queue_size = 24  # the queue fills and wraps around during the run
    cfg.train_cfg.update(max_epochs=2, val_interval=1)
    cfg.param_scheduler = []
    check_resume(cfg, tmp_path, boundary=1)
