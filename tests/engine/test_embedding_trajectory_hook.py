"""mmext.EmbeddingTrajectoryHook and the probe it embeds (mmext/engine/embedding_probe.py).

Real short runs: the ViT digits trajectory config through tools/train.py (the
``vit_trajectory_run`` fixture), SASRec, GRU4Rec and the ITC dual encoder in-process on tiny
data.  Each checks the arrays written (shapes, the same probe samples every time, one snapshot
per trigger) and, for the recommenders and ITC, that a run with the hook trains exactly as a run
without it (every loss and every final tensor equal: no random stream moved).
"""
import copy
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from demo_runs import VIT_TRAJECTORY_ITERS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from toy_model import RecordLossHook

from mmext.engine import Runner
from mmext.engine.embedding_probe import (EmbeddingProbe, _pool, build_embedder, load_trajectory,
                                          read_index, select_probe)
from mmext.registry import HOOKS

ROOT = Path(__file__).resolve().parents[2]
_RUNS = itertools.count()


def train(cfg, work_dir, hooks=(), resume_from=None):
    """Train ``cfg`` in ``work_dir`` (in-process); returns ``(losses, state_dict, runner)``."""
    cfg = cfg.copy()
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{Path(work_dir).name}_{next(_RUNS)}'  # own MessageHub and logger
    cfg.custom_hooks = list(cfg.get('custom_hooks',
                                    [])) + list(hooks) + [dict(type='RecordLossHook')]
    cfg.resume, cfg.load_from = resume_from is not None, resume_from
    cfg.log_level = 'WARNING'
    with DefaultScope.overwrite_default_scope('mmext'):
        runner = Runner.from_cfg(cfg)
        runner.train()
    record = next(h for h in runner.hooks if isinstance(h, RecordLossHook))
    return record.losses, runner.model.state_dict(), runner


def assert_same_training(a, b):
    assert a[0] == b[0] and len(a[0]) > 0
    for key, value in a[1].items():
        assert torch.equal(value, b[1][key]), key


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


def sasrec_cfg(tmp_path):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'sasrec' / 'sasrec_ml100k.py'))
    ann = ring_file(tmp_path / 'ring.inter')
    for part in ('train', 'val', 'test'):
        cfg[f'{part}_dataloader'].dataset.update(ann_file=ann, max_len=8)
    cfg.train_dataloader.batch_size = 16  # 40 users x 2 windows: 5 iterations per epoch
    cfg.model.update(max_len=8, embed_dims=16, ffn_dims=16, dropout=0.3)  # dropout + negatives
    cfg.train_cfg.update(max_epochs=2, val_interval=1)
    cfg.default_hooks.logger.interval = 1000
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    return cfg


# ----------------------------------------------------------------------------- the ViT demo
def test_vit_run_writes_one_snapshot_per_trigger(vit_trajectory_run):
    from mmext.datasets.digits import load_digits_arrays
    directory = vit_trajectory_run.work_dir / 'trajectory'
    index = read_index(directory)
    assert [s['iter'] for s in index['snapshots']] == list(VIT_TRAJECTORY_ITERS)
    assert sorted(p.name for p in directory.glob('iter_*.npz')) == [
        f'iter_{i:07d}.npz' for i in VIT_TRAJECTORY_ITERS
    ]
    probe, snapshots = load_trajectory(vit_trajectory_run.work_dir)
    images, labels = load_digits_arrays('val')
    expected = select_probe(len(labels), 64, seed=0)
    assert probe['indices'] == expected.tolist()
    assert probe['classes'] == [str(d) for d in range(10)] and probe['names'] == ['embedding']
    assert [s.iteration for s in snapshots] == list(VIT_TRAJECTORY_ITERS)
    np.testing.assert_allclose([s.epoch for s in snapshots], [0, 10 / 23, 20 / 23, 1.0])
    for snap in snapshots:
        np.testing.assert_array_equal(snap.indices, expected)  # the same samples every time
        assert list(snap.embeddings) == ['embedding']
        emb = snap.embeddings['embedding']
        assert emb.shape == (64, 96) and emb.dtype == np.float32 and np.isfinite(emb).all()
        np.testing.assert_array_equal(snap.labels, labels[expected])
        assert snap.thumbnails.shape == (64, 32, 32, 1) and snap.thumbnails.dtype == np.uint8
        np.testing.assert_array_equal(snap.thumbnails[..., 0], images[expected])
        assert snap.texts is None
    # the model moved between snapshots
    assert not np.allclose(snapshots[0].embeddings['embedding'],
                           snapshots[-1].embeddings['embedding'])


# ----------------------------------------------------------------------------- recommenders
SASREC_HOOK = dict(type='EmbeddingTrajectoryHook', interval=1, probe_size=25, seed=3)  # 'auto'


@pytest.fixture(scope='module')
def sasrec_runs(tmp_path_factory):
    """SASRec on a tiny ring data set, two epochs of 5 iterations, without and with the hook."""
    root = tmp_path_factory.mktemp('sasrec_trajectory')
    cfg = sasrec_cfg(root)
    return cfg, train(cfg, root / 'plain'), train(cfg, root / 'traced', [SASREC_HOOK]), root


def test_sasrec_hook_writes_user_embeddings_and_leaves_training_unchanged(sasrec_runs):
    _, plain, traced, root = sasrec_runs
    assert_same_training(plain, traced)
    assert not (root / 'plain' / 'trajectory').exists()

    runner = traced[2]
    probe, snapshots = load_trajectory(root / 'traced')
    dataset = runner.val_dataloader.dataset
    expected = select_probe(len(dataset), 25, seed=3)
    assert [s.iteration for s in snapshots] == [0, 5, 10]
    assert [s.epoch for s in snapshots] == [0, 1, 2]
    assert probe['embedder'] == 'SASRecEmbedder'
    for snap in snapshots:
        np.testing.assert_array_equal(snap.indices, expected)
        assert snap.embeddings['user'].shape == (25, 16)
        assert (snap.labels == -1).all() and snap.thumbnails is None
        info = dataset.get_data_info(int(expected[0]))
        assert snap.texts[0] == f'user {info["user"]} -> item {info["target"]}'
    # the last snapshot is the representation predict() scores with, after training
    model = runner.model
    batch = runner.val_dataloader.collate_fn([dataset[int(i)] for i in expected])
    model.eval()
    with torch.no_grad():
        seq = batch['inputs']['seq']
        user = model.encode(seq, seq.size(1) - 1)[:, -1]
    np.testing.assert_allclose(snapshots[-1].embeddings['user'], user.numpy(), rtol=1e-5, atol=1e-6)


def test_resume_keeps_earlier_snapshots_and_a_new_run_replaces_them(sasrec_runs, tmp_path):
    cfg, _, _, root = sasrec_runs
    work = tmp_path / 'run'
    shutil.copytree(root / 'traced', work)
    full = {s.iteration: s for s in load_trajectory(work)[1]}
    # as if the run had stopped after its epoch-1 checkpoint: epoch 2's snapshot is lost
    (work / 'trajectory' / 'iter_0000010.npz').unlink()
    train(cfg, work, [SASREC_HOOK], resume_from=str(work / 'epoch_1.pth'))
    resumed = {s.iteration: s for s in load_trajectory(work)[1]}
    assert sorted(resumed) == [0, 5, 10]
    for it in (0, 5, 10):  # an exact resume embeds what the uninterrupted run embedded
        np.testing.assert_array_equal(resumed[it].embeddings['user'], full[it].embeddings['user'])
    # a new run from scratch in the same work dir: its snapshots only
    short = copy.deepcopy(cfg)
    short.train_cfg.max_epochs = 1
    train(short, work, [dict(SASREC_HOOK, interval=2, by_epoch=False)])
    assert [s['iter'] for s in read_index(work / 'trajectory')['snapshots']] == [0, 2, 4, 5]
    assert not (work / 'trajectory' / 'iter_0000010.npz').exists()


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


def test_gru4rec_embeds_sessions_and_leaves_training_unchanged(tmp_path):
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
    cfg.model.update(
        hidden_sizes=(16, ), num_negatives=8, dropout_p_embed=0.2, dropout_p_hidden=0.3)
    cfg.train_dataloader.batch_size = 8
    cfg.train_cfg.update(max_epochs=2, val_interval=1)
    cfg.val_evaluator = [dict(type='RankingMetric', topk=(5, ), metrics=('recall', 'mrr'))]
    cfg.default_hooks.logger.interval = 1000
    plain = train(cfg, tmp_path / 'plain')
    hook = dict(type='EmbeddingTrajectoryHook', interval=1, probe_size=6, embedding='gru4rec')
    traced = train(cfg, tmp_path / 'traced', [hook])
    assert_same_training(plain, traced)

    runner = traced[2]
    dataset = runner.val_dataloader.dataset
    probe, snapshots = load_trajectory(tmp_path / 'traced')
    assert len(snapshots) == 3 and probe['size'] == 6
    expected = select_probe(dataset.num_sessions, 6, seed=0)
    model = runner.model
    model.eval()
    carried = [torch.full((3, 16), 7.0)]
    model._states = {'train': None, 'eval': carried}
    # the embedder runs the sessions (of different lengths) side by side; each row must be
    # the session's own state after all its items but the last
    emb = EmbeddingProbe(dataset, None, 'gru4rec', size=6).embed(model)
    assert model._states['eval'] is carried  # the carried state is put back
    np.testing.assert_array_equal(emb.indices, expected)
    lengths = set()
    with torch.no_grad():
        for row, s in enumerate(expected):
            items = dataset.items[dataset.offsets[s]:dataset.offsets[s + 1]]
            lengths.add(len(items))
            model.reset_state()
            for item in items[:-1]:
                out = model.step(item.view(1))
            np.testing.assert_allclose(
                emb.embeddings['session'][row], out[0].numpy(), rtol=1e-5, atol=1e-6)
            assert emb.texts[row] == f'session {s} -> item {int(items[-1])}'
    assert len(lengths) > 1
    np.testing.assert_allclose(
        snapshots[-1].embeddings['session'], emb.embeddings['session'], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- ITC
def test_itc_hook_embeds_images_and_captions_and_leaves_training_unchanged(tmp_path):
    pytest.importorskip('mmpretrain')
    cfg = Config.fromfile(str(ROOT / 'configs' / 'itc' / 'itc_vit-tiny_digits_trajectory.py'))
    hook = cfg.custom_hooks.pop(-1)
    assert hook.type == 'EmbeddingTrajectoryHook' and hook.embedding == 'itc'
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.dataset.indices = 16  # 2 iterations per epoch
    cfg.val_dataloader.dataset.indices = 10
    cfg.test_dataloader = cfg.val_dataloader
    cfg.model.loss.queue_size = 24
    cfg.train_cfg.update(max_epochs=2, val_interval=1)
    cfg.param_scheduler = []
    plain = train(cfg, tmp_path / 'plain')
    traced = train(cfg, tmp_path / 'traced', [dict(hook, interval=1)])
    assert_same_training(plain, traced)

    dataset = traced[2].val_dataloader.dataset
    probe, snapshots = load_trajectory(tmp_path / 'traced')
    assert [s.iteration for s in snapshots] == [0, 2, 4]
    assert probe['names'] == ['image', 'text']
    for snap in snapshots:
        np.testing.assert_array_equal(snap.indices, np.arange(10))  # all 10 < probe_size
        for name in ('image', 'text'):
            assert snap.embeddings[name].shape == (10, 128)
            np.testing.assert_allclose(np.linalg.norm(snap.embeddings[name], axis=1), 1, rtol=1e-5)
        assert snap.thumbnails.shape == (10, 32, 32, 1)
        info = [dataset.get_data_info(i) for i in range(10)]
        assert snap.texts.tolist() == [i['text'] for i in info]
        assert snap.labels.tolist() == [i['gt_label'] for i in info]


# ----------------------------------------------------------------------------- embedders
@pytest.fixture(scope='module')
def vit_classifier():
    pytest.importorskip('mmpretrain')
    from mmext.registry import DATASETS, MODELS
    cfg = Config.fromfile(str(ROOT / 'configs' / 'vit' / 'vit-tiny-p8_digits-32_demo.py'))
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
        model.init_weights()
        dataset = DATASETS.build(dict(cfg.val_dataloader.dataset, indices=12))
    return model, dataset


def test_classifier_and_cls_token_embedders(vit_classifier):
    from mmengine.dataset import pseudo_collate
    model, dataset = vit_classifier
    model.train()
    model.backbone.patch_embed.eval()  # a frozen part: must stay in eval mode
    flags = [m.training for m in model.modules()]
    pooled = EmbeddingProbe(dataset, pseudo_collate, 'classifier', size=5, seed=1).embed(model)
    cls = EmbeddingProbe(dataset, pseudo_collate, 'vit_cls_token', size=5, seed=1).embed(model)
    assert [m.training for m in model.modules()] == flags
    idx = select_probe(12, 5, seed=1)
    batch = pseudo_collate([dataset[int(i)] for i in idx])
    model.eval()
    with torch.no_grad():
        x = model.data_preprocessor(batch, False)['inputs']
        feature = model.backbone(x)[-1]  # out_type='avg_featmap': the pooled feature
        model.backbone.out_type = 'raw'
        tokens = model.backbone(x)[-1]  # after the final LayerNorm
        model.backbone.out_type = 'avg_featmap'
    np.testing.assert_allclose(pooled.embeddings['embedding'], feature.numpy(), atol=1e-6)
    np.testing.assert_allclose(cls.embeddings['embedding'], tokens[:, 0].numpy(), atol=1e-6)
    assert build_embedder('auto', model).method == 'extract_feat'


def test_module_and_method_embedders_and_pooling(vit_classifier):
    from mmengine.dataset import pseudo_collate
    model, dataset = vit_classifier
    spec = dict(type='module', module='backbone.layers.1', pool='mean')
    emb = EmbeddingProbe(dataset, pseudo_collate, spec, size=4).embed(model)
    assert emb.embeddings['embedding'].shape == (4, 96)
    method = dict(type='method', method='extract_feat', kwargs=dict(stage='backbone'))
    assert EmbeddingProbe(
        dataset, pseudo_collate, method,
        size=4).embed(model).embeddings['embedding'].shape == (4, 96)
    with pytest.raises(AttributeError, match='not a submodule'):
        EmbeddingProbe(
            dataset, pseudo_collate, dict(type='module', module='nope'), size=2).embed(model)
    x = torch.arange(24.).view(2, 3, 4)
    torch.testing.assert_close(_pool(x, 'cls'), x[:, 0])
    torch.testing.assert_close(_pool(x, 'last'), x[:, -1])
    torch.testing.assert_close(_pool((x, x * 2), 'auto'), (x * 2).mean(1))
    torch.testing.assert_close(_pool(x.view(2, 4, 3, 1)), x.view(2, 4, 3).mean(-1))  # B,C,H,W
    with pytest.raises(ValueError, match='unknown embedding'):
        build_embedder('resnet')


def test_hook_checks_its_arguments():
    with pytest.raises(ValueError, match='interval'):
        HOOKS.build(dict(type='EmbeddingTrajectoryHook', interval=0))
    with pytest.raises(ValueError, match='split'):
        HOOKS.build(dict(type='EmbeddingTrajectoryHook', split='train'))
    assert type(HOOKS.build(dict(type='mmext.EmbeddingTrajectoryHook'))).__name__ == \
        'EmbeddingTrajectoryHook'
