"""Every projects/ config builds in its toolbox's own scope and trains a step on tiny data."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmext  # noqa: F401
from mmext.registry import RUNNERS

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64


def load(rel_path, **overrides):
    cfg = Config.fromfile(str(ROOT / 'projects' / rel_path))
    cfg.merge_from_dict(overrides)
    assert cfg.custom_imports.imports == ['mmext']
    assert RUNNERS.get(cfg.runner_type).__module__ == 'mmext.engine.runner'
    return cfg


def train_step(cfg, registry, data):
    init_default_scope(cfg.default_scope)
    model = revert_sync_batchnorm(registry.build(cfg.model))  # as the Runner does without DDP
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    losses = model.train_step(data, optim)
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(after, before)), 'no parameter moved'
    return model, losses


def images(n=2):
    gen = torch.Generator().manual_seed(0)
    return [
        torch.randint(0, 256, (3, SIZE, SIZE), generator=gen, dtype=torch.uint8) for _ in range(n)
    ]


def det_samples():
    """Two images: two boxes, and none (the background-only path)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    samples = []
    for boxes, labels in [([[4., 6., 30., 40.], [20., 20., 60., 50.]], [0, 2]), ([], [])]:
        s = DetDataSample(
            metainfo=dict(
                img_shape=(SIZE, SIZE),
                ori_shape=(SIZE, SIZE),
                scale_factor=(1., 1.),
                batch_input_shape=(SIZE, SIZE)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes).reshape(-1, 4),
            labels=torch.tensor(labels, dtype=torch.long))
        samples.append(s)
    return samples


def test_mmdet_project_uses_mmext_head():
    from mmdet.registry import MODELS

    from mmext.models.dense_heads import FCOSHead
    cfg = load(
        'mmdet/fcos_r50-caffe_fpn_gn-head_1x_coco_mmext.py', **{
            'model.backbone.depth': 18,
            'model.backbone.init_cfg': None,
            'model.neck.in_channels': [64, 128, 256, 512],
            'model.bbox_head.num_classes': 3
        })
    model, losses = train_step(cfg, MODELS, dict(inputs=images(), data_samples=det_samples()))
    assert type(model.bbox_head) is FCOSHead
    assert {'loss_cls', 'loss_bbox', 'loss_centerness'} <= set(losses)


def test_mmdet_project_uses_mmext_detr():
    from mmdet.registry import MODELS

    from mmext.models.dense_heads import DETRHead
    from mmext.models.detectors import DETR
    from mmext.models.task_modules import HungarianAssigner
    cfg = load(
        'mmdet/detr_r50_8xb2-150e_coco_mmext.py', **{
            'model.backbone.depth': 18,
            'model.backbone.init_cfg': None,
            'model.neck.in_channels': [512],
            'model.bbox_head.num_classes': 3
        })
    model, losses = train_step(cfg, MODELS, dict(inputs=images(), data_samples=det_samples()))
    assert type(model) is DETR and type(model.bbox_head) is DETRHead
    assert type(model.bbox_head.assigner) is HungarianAssigner
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls'} <= set(losses)


def test_mmdet_project_uses_mmext_deformable_detr():
    from mmdet.registry import MODELS

    from mmext.models.dense_heads import DeformableDETRHead
    from mmext.models.detectors import DeformableDETR
    from mmext.models.layers import MultiScaleDeformableAttention
    from mmext.models.task_modules import HungarianAssigner
    cfg = load(
        'mmdet/deformable-detr-refine-twostage_r50_16xb2-50e_coco_mmext.py', **{
            'model.backbone.depth': 18,
            'model.backbone.init_cfg': None,
            'model.neck.in_channels': [128, 256, 512],
            'model.encoder.num_layers': 1,
            'model.decoder.num_layers': 2,
            'model.num_queries': 20,
            'model.bbox_head.num_classes': 3
        })
    model, losses = train_step(cfg, MODELS, dict(inputs=images(), data_samples=det_samples()))
    assert type(model) is DeformableDETR and type(model.bbox_head) is DeformableDETRHead
    assert model.with_box_refine and model.as_two_stage
    assert type(model.encoder.layers[0].self_attn) is MultiScaleDeformableAttention
    assert type(model.bbox_head.assigner) is HungarianAssigner
    assert {'loss_cls', 'd0.loss_cls', 'enc_loss_cls', 'enc_loss_iou'} <= set(losses)


def test_mmdet_project_uses_mmext_dino():
    from mmdet.registry import MODELS

    from mmext.models.dense_heads import DINOHead
    from mmext.models.detectors import DINO
    from mmext.models.task_modules import HungarianAssigner
    cfg = load(
        'mmdet/dino-4scale_r50_8xb2-12e_coco_mmext.py', **{
            'model.num_queries': 20,
            'model.backbone.depth': 18,
            'model.backbone.init_cfg': None,
            'model.neck.in_channels': [128, 256, 512],
            'model.encoder.num_layers': 1,
            'model.decoder.num_layers': 2,
            'model.bbox_head.num_classes': 3
        })
    model, losses = train_step(cfg, MODELS, dict(inputs=images(), data_samples=det_samples()))
    assert type(model) is DINO and type(model.bbox_head) is DINOHead
    assert type(model.bbox_head.assigner) is HungarianAssigner
    assert {'loss_cls', 'enc_loss_cls', 'dn_loss_bbox', 'd0.dn_loss_iou'} <= set(losses)


def test_mmseg_project_trains():
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    cfg = load(
        'mmseg/fcn_r50-d8_4xb4-80k_ade20k-512x512_mmext.py', **{
            'model.backbone.depth': 18,
            'model.decode_head.in_channels': 512,
            'model.decode_head.channels': 64,
            'model.auxiliary_head.in_channels': 256,
            'model.auxiliary_head.channels': 32,
            'model.pretrained': None,
            'model.data_preprocessor.size': (SIZE, SIZE)
        })
    gen = torch.Generator().manual_seed(1)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, SIZE, SIZE), generator=gen))
        samples.append(s)
    _, losses = train_step(cfg, MODELS, dict(inputs=images(), data_samples=samples))
    assert 'decode.loss_ce' in losses and 'aux.loss_ce' in losses


def test_mmpretrain_project_trains():
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = load('mmpretrain/resnet18_8xb32_in1k_mmext.py', **{'model.head.num_classes': 10})
    samples = [DataSample().set_gt_label(k) for k in (3, 7)]
    _, losses = train_step(cfg, MODELS, dict(inputs=images(), data_samples=samples))
    assert set(losses) == {'loss'}


@pytest.fixture(autouse=True)
def _restore_scope():
    from mmengine import DefaultScope
    with DefaultScope.overwrite_default_scope('mmext'):
        yield
