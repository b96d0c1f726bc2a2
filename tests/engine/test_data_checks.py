"""mmext.Runner checks the model against the data it reads (mmext/engine/data_checks.py).

A recommender takes its item count from the data the Runner actually trains on
(``model.dataset='train_dataloader'``), so ``--cfg-options train_dataloader.dataset.ann_file=...``
changes the model too; a model whose count differs from a loop's dataset is refused (issue #21,
item 1).  A detector whose head has another number of classes than a loop's dataset is refused
too (found by the own-data walk-through of docs/get_started.md)."""
import os.path as osp

import pytest
from mmengine.config import Config

import mmext  # noqa: F401
from mmext.registry import RUNNERS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
NUM_ITEMS = 12


def own_file(path):
    """20 users, daily one-hour-gapped sessions of 6 events over 12 items (40 days)."""
    lines = ['user_id:token\titem_id:token\trating:float\ttimestamp:float']
    for u in range(20):
        for day in range(40):
            for t in range(6):
                item = (u + day % 3 + t) % NUM_ITEMS  # 8 of the 12 items per user
                lines.append(f'u{u}\ti{item}\t5\t{day * 86400 + u * 600 + t * 60}')
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def runner_for(config, tmp_path, options, model_dataset=None):
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.merge_from_dict(options)  # what tools/train.py does with --cfg-options
    if model_dataset is not None:
        cfg.model.dataset = model_dataset
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=10**6)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10**6)
    cfg.log_level = 'WARNING'
    return RUNNERS.build(cfg)


@pytest.mark.parametrize('config,key', [('configs/sasrec/sasrec_ml100k.py', 'ann_file'),
                                        ('configs/gru4rec/gru4rec_ml100k.py', 'data_path')])
def test_model_follows_cfg_options_data(tmp_path, config, key):
    path = own_file(tmp_path / 'own.inter')
    options = {f'{split}_dataloader.dataset.{key}': path for split in ('train', 'val', 'test')}
    runner = runner_for(config, tmp_path, options)
    assert runner.model.num_items == NUM_ITEMS
    table = (
        runner.model.item_embedding.weight
        if hasattr(runner.model, 'item_embedding') else runner.model.item_out)
    assert table.shape[0] == NUM_ITEMS + 1  # not ml-100k's 1679 rows
    runner.train()
    runner.test()


def test_mismatched_item_count_is_refused(tmp_path):
    """An explicit dataset copy (the former configs' ``{{_base_.train_dataset}}``) that reads
    another file than the dataloaders: the run stops naming both counts and both files."""
    path = own_file(tmp_path / 'own.inter')
    options = {f'{split}_dataloader.dataset.ann_file': path for split in ('train', 'val', 'test')}
    cfg = Config.fromfile(osp.join(ROOT, 'configs/sasrec/sasrec_ml100k.py'))
    ml100k = dict(cfg.train_dataloader.dataset)  # ann_file '' = the built-in ml-100k
    runner = runner_for('configs/sasrec/sasrec_ml100k.py', tmp_path, options, ml100k)
    assert runner.model.num_items == 1682  # ml-100k's items (unseen_targets='rank')
    with pytest.raises(ValueError, match=r'num_items=1682 .* has 12 items') as err:
        runner.train()
    assert 'own.inter' in str(err.value)


def test_test_data_left_at_the_demo_is_named_with_the_train_file(tmp_path):
    """model.dataset='train_dataloader' is set, but the test split still reads ml-100k: the
    error says to point the test dataset at the train file, not to set model.dataset."""
    path = own_file(tmp_path / 'own.inter')
    options = {f'{split}_dataloader.dataset.ann_file': path for split in ('train', 'val')}
    runner = runner_for('configs/sasrec/sasrec_ml100k.py', tmp_path, options)
    with pytest.raises(ValueError) as err:
        runner.test()
    message = str(err.value)
    assert 'num_items=12 (from the train dataset' in message and 'own.inter' in message
    assert f'test_dataloader.dataset.ann_file={path}' in message
    assert "set model.dataset='train_dataloader'" not in message


# ---------------------------------------------------------------------------------------------
# a detector's number of classes against every loop's dataset


@pytest.fixture
def shapes_runner(tmp_path):
    pytest.importorskip('mmdet')

    def build(num_classes, test_classes=None):
        data = tmp_path / 'shapes'
        cfg = Config.fromfile(osp.join(ROOT, 'configs/fcos/fcos_r18_fpn_shapes-128_demo.py'))
        shapes = dict(num_train=8, num_val=4, img_size=64, seed=3)
        for split in ('train', 'val', 'test'):
            loader = cfg[f'{split}_dataloader']
            loader.update(num_workers=0, persistent_workers=False)
            loader.dataset.data_root = str(data)
            loader.dataset.shapes_cfg.update(shapes)
        for split in ('val', 'test'):  # the metric reads the generated file, not data/shapes/
            cfg[f'{split}_evaluator'].ann_file = str(data / 'annotations' / 'instances_val.json')
        if test_classes is not None:
            cfg.test_dataloader.dataset.metainfo = dict(classes=test_classes)
        cfg.model.bbox_head.num_classes = num_classes
        cfg.work_dir = str(tmp_path / 'work')
        cfg.log_level = 'WARNING'
        return RUNNERS.build(cfg)

    return build


def test_detector_num_classes_must_equal_the_datasets_classes(shapes_runner):
    with pytest.raises(
            ValueError,
            match=r'model\.bbox_head\.num_classes=2, but the '
            r'train_dataloader dataset .* has 4 classes') as err:
        shapes_runner(2).train()
    assert 'Set model.bbox_head.num_classes=4' in str(err.value)


def test_detector_test_split_with_other_classes_is_refused(shapes_runner):
    runner = shapes_runner(4, test_classes=('circle', 'square'))
    with pytest.raises(ValueError, match=r'test_dataloader dataset .* has 2 classes'):
        runner.test()
