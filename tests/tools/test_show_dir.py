"""tools/test.py --show-dir / --show: the drawings of a real (small) FCOS run, the demo configs'
visualization set-up, and the messages when a flag cannot work."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from mmext.engine.hooks import VisualizationHook
from mmext.registry import HOOKS, VISUALIZERS
from mmext.visualization import DetVisualizer, SegVisualizer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools'))  # tools/test.py imports its siblings
_spec = importlib.util.spec_from_file_location('mmext_tools_test', ROOT / 'tools' / 'test.py')
test_tool = importlib.util.module_from_spec(_spec)  # not `import test`: the stdlib has one
_spec.loader.exec_module(test_tool)

FCOS = ROOT / 'configs' / 'fcos' / 'fcos_r18_fpn_shapes-128_demo.py'
DEMO_CONFIGS = {
    'configs/fcos/fcos_r18_fpn_shapes-128_demo.py': DetVisualizer,
    'configs/detr/detr_r18_shapes-128_demo.py': DetVisualizer,
    'configs/deformable_detr/deformable-detr-refine-twostage_r18_shapes-128_demo.py': DetVisualizer,
    'configs/dino/dino-4scale_r18_shapes-128_demo.py': DetVisualizer,
    'configs/maskformer/maskformer_r18_shapes-seg_demo.py': SegVisualizer,
    'configs/fcos/fcos_r18_fpn_neon-trees_demo.py': DetVisualizer,
}


@pytest.mark.parametrize('config', sorted(DEMO_CONFIGS))
def test_demo_configs_draw_with_mmext_visualization(config):
    cfg = Config.fromfile(str(ROOT / config))
    hook_cfg = cfg.default_hooks.visualization
    assert HOOKS.get(hook_cfg.type) is VisualizationHook and not hook_cfg.get('draw', False)
    assert VISUALIZERS.get(cfg.visualizer.type) is DEMO_CONFIGS[config]
    assert [b['type'] for b in cfg.visualizer.vis_backends] == ['LocalVisBackend']
    args = test_tool.parse_args([config, 'ckpt.pth', '--show-dir', 'show', '--score-thr', '0.5'])
    test_tool.enable_visualization(cfg, args)
    assert cfg.default_hooks.visualization == dict(
        hook_cfg, draw=True, interval=1, test_out_dir='show', score_thr=0.5)


def test_show_dir_draws_every_test_image(fcos_demo_run, tmp_path):
    """`tools/test.py --show-dir show` on the FCOS demo run: one drawing per test image in
    <work_dir>/<timestamp>/show, ground truth | prediction, the boxes where the annotations
    say."""
    run = fcos_demo_run
    work_dir = tmp_path / 'work'
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT),
                                                os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([
        sys.executable,
        str(ROOT / 'tools' / 'test.py'),
        str(run.config),
        str(run.checkpoint), '--work-dir',
        str(work_dir), '--show-dir', 'show', '--cfg-options', *run.cfg_options
    ],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    folders = list(work_dir.glob('*/show'))
    assert len(folders) == 1, f'no <timestamp>/show under {work_dir}: {log[-2000:]}'

    options = dict(o.split('=', 1) for o in run.cfg_options)
    data_root = Path(options['test_dataloader.dataset.data_root'])
    coco = json.loads((data_root / 'annotations' / 'instances_val.json').read_text())
    drawings = sorted(p.name for p in folders[0].iterdir())
    assert drawings == sorted(img['file_name'] for img in coco['images'])
    assert f"drew {len(coco['images'])} test images into {folders[0]}" in log

    from mmext.datasets.shapes import SHAPES_PALETTE
    palette = np.array(SHAPES_PALETTE)  # the dataset's metainfo, which the visualizer uses
    boxes_by_image = {img['id']: [] for img in coco['images']}
    for ann in coco['annotations']:
        boxes_by_image[ann['image_id']].append((ann['bbox'], ann['category_id'] - 1))
    checked = matched = 0
    for img in coco['images']:
        source = cv2.imread(str(data_root / 'val' / img['file_name']))[..., ::-1].astype(int)
        drawn = cv2.imread(str(folders[0] / img['file_name']))[..., ::-1].astype(int)
        h, w = source.shape[:2]
        assert drawn.shape == (h, 2 * w + 4, 3)  # ground truth | 4 px | prediction
        for (x, y, bw, bh), label in boxes_by_image[img['id']]:
            px, py = int(x), int(y + bh / 2)  # the middle of the box's left edge
            checked += 1
            assert (drawn[py, px] != source[py, px]).any(), (img['file_name'], px, py)
            expected = 0.9 * palette[label] + 0.1 * source[py, px]
            matched += int(np.abs(drawn[py, px] - expected).max() <= 12)
    assert checked > 0
    assert matched >= 0.75 * checked  # others sit under another box's edge or label


def test_show_without_a_display_says_what_to_do(monkeypatch):
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    monkeypatch.delenv('MPLBACKEND', raising=False)
    monkeypatch.setattr(sys, 'platform', 'linux')
    with pytest.raises(SystemExit, match='no display.*--show-dir DIR'):
        test_tool.main([str(FCOS), 'none.pth', '--show'])


def test_show_dir_needs_a_visualization_hook(tmp_path):
    config = tmp_path / 'no_hook.py'
    config.write_text(f"_base_ = '{FCOS}'\ndefault_hooks = dict(visualization=None)\n")
    with pytest.raises(SystemExit, match='no default_hooks.visualization'):
        test_tool.main([str(config), 'none.pth', '--show-dir', 'show'])


def _small_data_options(config: str, data: Path):
    """The shapes data of ``config`` shrunk to 4 train / 2 val images in ``data``, no workers."""
    seg = 'maskformer' in config
    shapes = dict(num_train=4, num_val=2, img_size=64 if seg else 128, seed=0)
    opts = []
    for split in ('train', 'val', 'test'):
        opts += [
            f'{split}_dataloader.dataset.data_root={data}', f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False', f'{split}_dataloader.batch_size=2'
        ]
        opts += [f'{split}_dataloader.dataset.shapes_cfg.{k}={v}' for k, v in shapes.items()]
    if not seg:
        opts += [
            f'{split}_evaluator.ann_file={data}/annotations/instances_val.json'
            for split in ('val', 'test')
        ]
    return opts


# DETR and Deformable DETR draw through the same path as DINO (pred_instances); not repeated here
@pytest.mark.parametrize('config',
                         [c for c in sorted(DEMO_CONFIGS) if 'dino' in c or 'maskformer' in c])
def test_show_dir_with_random_weights(config, tmp_path):
    """`--show-dir` (absolute) through the Runner for the other demo configs, on an untrained
    model: one drawing per test image with the ground truth where the annotations say."""
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.structures import BaseDataElement, InstanceData, PixelData

    cfg = Config.fromfile(str(ROOT / config))
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(cfg.model)
    checkpoint = tmp_path / 'random.pth'
    import torch
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    data, show = tmp_path / 'data', tmp_path / 'show'
    scopes = dict(DefaultScope._instance_dict)  # the Runner registers a global default scope
    try:
        test_tool.main([
            config,
            str(checkpoint), '--work-dir',
            str(tmp_path / 'work'), '--show-dir',
            str(show), '--cfg-options', *_small_data_options(config, data)
        ])
    finally:
        DefaultScope._instance_dict = scopes
    drawings = sorted(show.iterdir())
    assert len(drawings) == 2

    # each left panel is what the visualizer draws for the image and its ground truth alone
    vis_cls = DEMO_CONFIGS[config]
    vis = vis_cls(
        name=f'test_show_dir_{tmp_path.name}',
        **{
            k: v
            for k, v in cfg.visualizer.items() if k not in ('type', 'vis_backends')
        })
    if vis_cls is SegVisualizer:
        from mmext.datasets.shapes_seg import SHAPES_SEG_METAINFO as meta
        vis.legend = False
    else:
        from mmext.datasets.shapes import SHAPES_METAINFO as meta
    vis.dataset_meta = meta
    for path in drawings:
        images = data / 'img_dir' / 'val' if vis_cls is SegVisualizer else data / 'val'
        source = cv2.imread(str(images / path.name))[..., ::-1]
        h, w = source.shape[:2]
        if vis_cls is SegVisualizer:
            labels = cv2.imread(str(data / 'ann_dir' / 'val' / path.name), cv2.IMREAD_UNCHANGED)
            gt = BaseDataElement(gt_sem_seg=PixelData(data=torch.from_numpy(labels)[None]))
        else:
            coco = json.loads((data / 'annotations' / 'instances_val.json').read_text())
            image_id = next(i['id'] for i in coco['images'] if i['file_name'] == path.name)
            boxes = [a['bbox'] for a in coco['annotations'] if a['image_id'] == image_id]
            gt = BaseDataElement(
                gt_instances=InstanceData(
                    bboxes=torch.tensor([[x, y, x + bw, y + bh] for x, y, bw, bh in boxes],
                                        dtype=torch.float32).reshape(-1, 4),
                    labels=torch.tensor([
                        a['category_id'] - 1 for a in coco['annotations']
                        if a['image_id'] == image_id
                    ])))
        expected = vis.draw_datasample(source, gt)
        drawn = cv2.imread(str(path))[..., ::-1]
        assert drawn.shape[1] == 2 * w + 4
        assert np.abs(drawn[:h, :w].astype(int) - expected.astype(int)).max() <= 1
