"""Write what a config's data pipeline produces, with its annotations, to image files (headless).

    python tools/analysis/browse_dataset.py CONFIG [--phase train|val|test] [--num 20]
        [--out-dir DIR] [--cfg-options k=v ...]

Each of the first ``--num`` samples of the split's dataset goes through the split's pipeline
(augmentations included: for ``train``, flips and crops as the model sees them) and is drawn
with mmext's visualizer: detection samples with their ground-truth boxes, class names and masks
(:class:`mmext.DetVisualizer`), segmentation samples with their ground-truth class map and a
legend (:class:`mmext.SegVisualizer`).  The config's ``visualizer`` settings (palette, alpha, ...)
are used when it is one of ours; nothing is written to its backends.  Files go to
``--out-dir`` (default ``work_dirs/<config name>/browse_<phase>``) as
``<index>_<image name>.png``.
"""
import argparse
import copy
import os.path as osp
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from mmengine.config import Config, DictAction
from mmengine.registry import DATASETS, DefaultScope
from mmengine.utils import ProgressBar

import mmext  # noqa: F401  (registry nodes)
from mmext.registry import VISUALIZERS
from mmext.visualization import DetVisualizer, PanelVisualizer, SegVisualizer, to_numpy

PHASES = ('train', 'val', 'test')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the pipeline output of a dataset split, with its annotations, to files')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--phase', choices=PHASES, default='train', help='which <phase>_dataloader to browse')
    parser.add_argument('--num', type=int, default=20, help='how many samples (the first N)')
    parser.add_argument(
        '--out-dir',
        default=None,
        help='where to write (default: work_dirs/<config name>/browse_<phase>)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, as for tools/train.py')
    return parser.parse_args(argv)


def pipeline_image(inputs: Any) -> np.ndarray:
    """The packed ``inputs`` of a sample, (C, H, W) in the loader's BGR order, as (H, W, 3) uint8
    RGB (mmcv's LoadImageFromFile decodes to BGR; a one-channel image is repeated)."""
    image = to_numpy(inputs)
    if image.ndim != 3:
        raise ValueError(f'expected packed inputs of shape (C, H, W), got {image.shape}')
    image = image.transpose(1, 2, 0)
    image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., ::-1]
    return np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))


def build_visualizer(cfg: Config, data_sample: Any) -> PanelVisualizer:
    """The config's visualizer when it is one of mmext's (without backends), else the one that
    fits ``data_sample``: :class:`DetVisualizer` for ``gt_instances``, :class:`SegVisualizer`
    for ``gt_sem_seg``."""
    vis_cfg: Dict[str, Any] = copy.deepcopy(dict(cfg.get('visualizer') or {}))
    vis_type = vis_cfg.pop('type', None)
    vis_cfg.pop('_scope_', None)
    try:
        cls = VISUALIZERS.get(vis_type) if isinstance(vis_type, str) else None
    except KeyError:  # a toolbox's visualizer: not ours
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, PanelVisualizer)):
        if hasattr(data_sample, 'gt_instances'):
            cls = DetVisualizer
        elif hasattr(data_sample, 'gt_sem_seg'):
            cls = SegVisualizer
        else:
            raise ValueError('browse_dataset draws detection (gt_instances) and semantic '
                             'segmentation (gt_sem_seg) samples; this pipeline packs '
                             f'{type(data_sample).__name__} without either')
        vis_cfg = {}
    # constructed directly, not through the registry: a ManagerMixin built by name would return
    # an earlier instance of the same name
    vis_cfg.update(name='browse_dataset', vis_backends=None, save_dir=None)
    return cls(**vis_cfg)


def browse(config: str,
           phase: str = 'train',
           num: int = 20,
           out_dir: Optional[str] = None,
           cfg_options: Optional[Dict[str, Any]] = None) -> List[Path]:
    """Draw the first ``num`` samples of ``phase``'s dataset after its pipeline; return the
    files written."""
    if phase not in PHASES:
        raise ValueError(f'phase must be one of {PHASES}, got {phase!r}')
    if num < 1:
        raise ValueError(f'--num must be >= 1, got {num}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    loader = cfg.get(f'{phase}_dataloader')
    if not loader or 'dataset' not in loader:
        raise SystemExit(f'{config} has no {phase}_dataloader.dataset to browse')
    out = Path(out_dir or osp.join('work_dirs', Path(config).stem, f'browse_{phase}'))
    out.mkdir(parents=True, exist_ok=True)

    written: List[Path] = []
    # a scoped override: callers (tests) keep their own default scope
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmext')):
        dataset = DATASETS.build(copy.deepcopy(loader['dataset']))
        count = min(num, len(dataset))
        visualizer = None
        progress = ProgressBar(count)
        for index in range(count):
            item = dataset[index]
            sample = item['data_samples']
            if visualizer is None:
                visualizer = build_visualizer(cfg, sample)
                visualizer.dataset_meta = dict(dataset.metainfo)
            img_path = sample.metainfo.get('img_path') or f'{index}.png'
            path = out / f'{index:05d}_{Path(img_path).stem}.png'
            visualizer.add_datasample(
                path.stem,
                pipeline_image(item['inputs']),
                data_sample=sample,
                draw_pred=False,
                out_file=str(path))
            written.append(path)
            progress.update()
    print(f'\nwrote {len(written)} images to {out}')
    return written


def main(argv: Optional[List[str]] = None) -> List[Path]:
    args = parse_args(argv)
    return browse(args.config, args.phase, args.num, args.out_dir, args.cfg_options)


if __name__ == '__main__':
    main()
