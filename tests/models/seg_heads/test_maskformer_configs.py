"""MaskFormer configs: every config builds without downloads; the demo trains (fast: a couple of
iterations through tools/train.py's path; slow: the full demo, reaching a useful mIoU)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import load_state_dict

from mmext.models.seg_heads import MaskFormerFusionHead, MaskFormerHead
from mmext.registry import MODELS

ROOT = Path(__file__).resolve().parents[3]
CFG_DIR = ROOT / 'configs' / 'maskformer'
DEMO = CFG_DIR / 'maskformer_r18_shapes-seg_demo.py'
ADE = CFG_DIR / 'maskformer_r50-d32_8xb2-160k_ade20k-512x512.py'
SWIN = CFG_DIR / 'maskformer_swin-t_upernet_8xb2-160k_ade20k-512x512.py'
COCO = CFG_DIR / 'maskformer_r50_ms-16xb1-75e_coco-panoptic.py'


def _build(path):
    cfg = Config.fromfile(str(path))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return cfg, MODELS.build(cfg.model)


@pytest.mark.parametrize('path', [ADE, SWIN, COCO, DEMO], ids=lambda p: p.stem)
def test_configs_build_with_mmext_parts(path):
    cfg, model = _build(path)
    head = model.decode_head if hasattr(model, 'decode_head') else model.panoptic_head
    assert isinstance(head, MaskFormerHead)
    assert type(head.pixel_decoder).__module__.startswith('mmext')
    assert type(head.assigner).__module__.startswith('mmext')
    assert type(head.loss_dice).__module__.startswith('mmext')
    if path == COCO:
        assert type(model).__name__ == 'MaskFormer'  # mmdet's detector, our heads
        assert isinstance(model.panoptic_fusion_head, MaskFormerFusionHead)
        assert head.num_things_classes == 80 and head.num_stuff_classes == 53
    else:
        assert type(model).__name__ == 'EncoderDecoder' and head.num_classes in (150, 5)
    if path == SWIN:
        assert type(model.backbone).__module__.startswith('mmext')  # mmext.SwinTransformer
        assert head.pixel_decoder.in_channels == [96, 192, 384, 768]
    if path in (SWIN, DEMO):  # the backbone's levels fit the head: a forward pass runs
        model.eval()
        with torch.no_grad():
            cls, masks = model._forward(torch.randn(1, 3, 96, 96))
        assert cls.shape[-1] == head.num_classes + 1 and masks.shape[-2:] == (24, 24)


def test_mmseg_maskformer_checkpoint_loads_into_our_config():
    """A whole mmseg MaskFormer (backbone + mmseg's head) state dict loads into the same model
    with mmext's head, through mmengine's checkpoint loader, with no missing/unexpected key."""
    import mmseg
    ref_cfg = Config.fromfile(
        os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs', 'maskformer', ADE.name))
    with DefaultScope.overwrite_default_scope('mmseg'):
        ref = MODELS.build(ref_cfg.model)
    _, ours = _build(ADE)
    sd = ref.state_dict()
    missing = []
    load_state_dict(ours, sd, strict=False, logger=None)
    ours_sd = ours.state_dict()
    for k, v in sd.items():
        mapped = k.replace('decode_head.', 'decode_head.predictor.') \
            if k.startswith('decode_head.') and not k.startswith('decode_head.pixel_decoder') \
            else k
        if mapped not in ours_sd or not torch.equal(ours_sd[mapped], v):
            missing.append(k)
    assert not missing
    assert len(ours_sd) == len(sd)


def _small_opts(tmp_path, iters):
    data = tmp_path / 'shapes_seg'
    opts = [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        'default_hooks.logger.interval=1', 'train_dataloader.batch_size=4',
        'val_dataloader.batch_size=4'
    ]
    for split in ('train', 'val', 'test'):
        opts += [
            f'{split}_dataloader.num_workers=0', f'{split}_dataloader.persistent_workers=False',
            f'{split}_dataloader.dataset.data_root={data}',
            f'{split}_dataloader.dataset.shapes_cfg.num_train=16',
            f'{split}_dataloader.dataset.shapes_cfg.num_val=8'
        ]
    return opts


def test_demo_trains_a_couple_of_iterations(tmp_path):
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        import train as train_tool
    finally:
        sys.path.pop(0)
    args = train_tool.parse_args([
        str(DEMO), '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', *_small_opts(tmp_path, 2)
    ])
    cfg = train_tool.merge_args(Config.fromfile(args.config), args)
    cfg.default_hooks.visualization = dict(type='mmseg.SegVisualizationHook', draw=False)
    cfg.setdefault('runner_type', 'mmext.Runner')
    from mmext.registry import RUNNERS
    scopes = dict(DefaultScope._instance_dict)  # the Runner registers a global default scope
    try:
        runner = RUNNERS.build(cfg)
        runner.train()
    finally:
        DefaultScope._instance_dict = scopes
    scalars = [
        json.loads(line)
        for line in next((tmp_path /
                          'work').glob('*/vis_data/scalars.json')).read_text().splitlines()
    ]
    losses = [s['loss'] for s in scalars if 'loss' in s]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert any('mIoU' in s for s in scalars)  # validated with mmseg's IoUMetric
    assert len(list((tmp_path / 'shapes_seg' / 'img_dir' / 'train').glob('*.png'))) == 16


@pytest.mark.slow
def test_demo_reaches_useful_miou(tmp_path):
    """The full demo via tools/train.py (minutes on 2 CPU cores): mIoU well above chance."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'))
    proc = subprocess.run(
        [sys.executable, 'tools/train.py',
         str(DEMO), '--work-dir',
         str(tmp_path / 'work')],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    mious = [float(m) for m in re.findall(r'mIoU: ([0-9.]+)', log)]
    # measured 51.4 (README); chance level (all background) is about 17
    assert mious and mious[-1] > 40.0, mious
