"""configs/fcos/fcos_r18_fpn_neon-trees_demo.py: a training step on tiles, and a validation step
on a whole validation region through the sliding window, scored by the config's evaluator.
Skipped where the deepforest data is not installed (tools/setup_env.sh installs it)."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper

import mmext.datasets.neon_trees  # noqa: F401  (registers the datasets and LoadImageCrop)
import mmext.datasets.tiled  # noqa: F401
import mmext.datasets.transforms  # noqa: F401
from mmext.datasets.neon_trees import deepforest_data_dir
from mmext.registry import DATASETS, METRICS, MODELS

CONFIG = Path(__file__).resolve().parents[3] / 'configs/fcos/fcos_r18_fpn_neon-trees_demo.py'


@pytest.fixture(scope='module')
def cfg():
    try:
        deepforest_data_dir()
    except FileNotFoundError as err:
        pytest.skip(f'the deepforest data is not installed ({err})')
    return Config.fromfile(CONFIG)


def test_train_step_on_tiles_and_val_step_on_a_region(cfg):
    from mmengine import DefaultScope
    with DefaultScope.overwrite_default_scope('mmext'):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
        train_set = DATASETS.build(cfg.train_dataloader.dataset)
        val_set = DATASETS.build(cfg.val_dataloader.dataset)
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        metrics = [METRICS.build(c) for c in cfg.val_evaluator]

    tiling = train_set.metainfo['tiling']
    assert tiling['images'] == 2 and len(train_set) > 40
    batch = pseudo_collate([train_set[i] for i in range(2)])
    assert batch['inputs'][0].shape == (3, 400, 400)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    losses = model.train_step(batch, optim)
    assert set(losses) == {'loss', 'loss_cls', 'loss_bbox', 'loss_centerness'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    # the smaller validation region (1249 x 259 px): 4 tiles of 400 x 259
    model.eval()
    data = pseudo_collate([val_set[1]])
    assert data['inputs'][0].shape == (3, 259, 1249)
    with torch.no_grad():
        out = model.val_step(data)
    pred = out[0].pred_instances
    assert out[0].ori_shape == (259, 1249) and len(pred) > 0
    assert pred.bboxes[:, 2].max() <= 1249 and pred.bboxes[:, 3].max() <= 259
    scores = {}
    for metric in metrics:
        metric.dataset_meta = val_set.metainfo
        metric.process(data, [o.to_dict() for o in out])
        scores.update(metric.evaluate(1))
    # an untrained model: the wiring is what counts
    assert 0 <= scores['coco/bbox_mAP'] <= 1
    assert scores['deepforest/num_gt'] == len(val_set.get_data_info(1)['instances']) == 65
    assert 0 <= scores['deepforest/box_recall'] <= 1
