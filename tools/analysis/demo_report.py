"""Visual report of a trained detector: predictions on validation images and training curves.

    python tools/analysis/demo_report.py CONFIG CHECKPOINT --work-dir DIR \
        [--num-images 8] [--out-dir DIR] [--score-thr 0.3] [--device cpu]

Writes into ``--out-dir`` (default: ``--work-dir``):

* ``predictions.png``: the first N images of the config's validation dataset drawn by
  :class:`mmext.DetVisualizer` (overlay layout): predicted boxes solid with "name score" (only
  scores above ``--score-thr``), ground-truth boxes dashed, both in the class colour of the
  dataset's palette;
* ``curves.png``: the loss terms against the iteration, and bbox mAP / mAP_50 against the
  validation step (the epoch for epoch-based training), read from mmengine's
  ``DIR/<timestamp>/vis_data/scalars.json`` of the newest run that has one.
"""
import argparse
import copy
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')  # headless: the report is written to files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmext.utils.scalars import find_scalars_file, load_scalars  # noqa: E402


# ----------------------------------------------------------------------------- curves
def _series(records: Sequence[Dict[str, Any]], key: str,
            x_keys: Sequence[str]) -> Tuple[List[float], List[float]]:
    xs, ys = [], []
    for i, rec in enumerate(records):
        value = rec.get(key)
        if not isinstance(value, (int, float)):
            continue
        x = next((rec[k] for k in x_keys if isinstance(rec.get(k), (int, float))), i + 1)
        xs.append(float(x))
        ys.append(float(value))
    return xs, ys


def _finish_axes(ax: Any, xlabel: str, ylabel: str, title: str, has_lines: bool,
                 empty_message: str) -> None:
    """Labels, grid, and a legend, or a note in the middle when there is nothing to plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if has_lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, empty_message, ha='center', va='center', transform=ax.transAxes)


def plot_curves(scalars_file: Path, out_file: Path) -> Path:
    """Plot loss terms vs iteration and bbox mAP / mAP_50 vs validation step into ``out_file``."""
    train, val = load_scalars(Path(scalars_file))
    if not train and not val:
        raise ValueError(f'{scalars_file} holds neither loss nor validation metric lines')
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(11, 4))

    loss_keys = sorted({k
                        for rec in train
                        for k in rec if k.startswith('loss')},
                       key=lambda k: (k != 'loss', k))  # total loss first
    for key in loss_keys:
        xs, ys = _series(train, key, ('step', 'iter'))
        ax_loss.plot(xs, ys, label=key, linewidth=2.0 if key == 'loss' else 1.0)
    _finish_axes(ax_loss, 'iteration', 'loss', 'training losses', bool(loss_keys), 'no loss lines')

    # Metric prefixes vary (coco/, pascal_voc/...); plot any bbox_mAP / bbox_mAP_50.
    map_keys = sorted(
        {k
         for rec in val
         for k in rec if k.split('/')[-1] in ('bbox_mAP', 'bbox_mAP_50')})
    for key in map_keys:
        xs, ys = _series(val, key, ('step', ))
        ax_map.plot(xs, ys, marker='o', label=key)
    by_epoch = any('epoch' in rec for rec in train) or not train
    ax_map.set_ylim(0, 1)
    _finish_axes(ax_map, 'epoch' if by_epoch else 'iteration', 'mAP', 'validation bbox mAP',
                 bool(map_keys), 'no bbox_mAP lines')

    fig.suptitle(str(scalars_file), fontsize=8)
    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


# ----------------------------------------------------------------------------- predictions
def draw_prediction_panels(samples: Sequence[Dict[str, Any]],
                           class_names: Sequence[str],
                           score_thr: float = 0.3,
                           palette: Optional[Sequence[Sequence[int]]] = None) -> List[np.ndarray]:
    """Each sample's image with its ground truth and predictions, drawn by
    :class:`mmext.DetVisualizer` in its overlay layout: ground-truth boxes dashed, predictions
    scoring above ``score_thr`` solid with "name score", both in their class colour.

    Args:
        samples: One dict per image: ``image`` ((H, W, 3) uint8 RGB), ``gt_bboxes`` ((N, 4)
            x1y1x2y2), ``gt_labels`` ((N,)), ``pred_bboxes`` ((M, 4)), ``pred_labels`` ((M,)),
            ``pred_scores`` ((M,)) and optionally ``title``.
        class_names: Label index -> name.
        score_thr: Predictions at or below this score are not drawn.
        palette: RGB 0-255 colour per class; the visualizer's default palette if ``None``.

    Returns:
        One (H, W, 3) uint8 RGB drawing per sample.
    """
    from mmengine.structures import BaseDataElement, InstanceData

    from mmext.visualization import DetVisualizer

    visualizer = DetVisualizer(
        name='demo_report', layout='overlay', score_thr=score_thr, palette=palette)
    visualizer.dataset_meta = dict(classes=tuple(class_names))
    panels = []
    for sample in samples:
        gt = InstanceData(
            bboxes=np.asarray(sample['gt_bboxes'], np.float32).reshape(-1, 4),
            labels=np.asarray(sample['gt_labels'], np.int64).reshape(-1))
        pred = InstanceData(
            bboxes=np.asarray(sample['pred_bboxes'], np.float32).reshape(-1, 4),
            labels=np.asarray(sample['pred_labels'], np.int64).reshape(-1),
            scores=np.asarray(sample['pred_scores'], np.float32).reshape(-1))
        data_sample = BaseDataElement(gt_instances=gt, pred_instances=pred)
        panels.append(visualizer.draw_datasample(sample['image'], data_sample))
    return panels


def draw_prediction_grid(samples: Sequence[Dict[str, Any]],
                         class_names: Sequence[str],
                         out_file: Path,
                         score_thr: float = 0.3,
                         palette: Optional[Sequence[Sequence[int]]] = None,
                         ncols: int = 4) -> Path:
    """Draw images with ground-truth and predicted boxes (:func:`draw_prediction_panels`) in a
    grid, each titled with its name and box counts, and save it.

    Args:
        samples: See :func:`draw_prediction_panels`.
        class_names: Label index -> name.
        out_file: PNG to write.
        score_thr: Predictions at or below this score are not drawn.
        palette: RGB 0-255 colour per class; the visualizer's default palette if ``None``.
        ncols: Images per grid row.
    """
    if not samples:
        raise ValueError('draw_prediction_grid: no images to draw')
    panels = draw_prediction_panels(samples, class_names, score_thr, palette)
    ncols = max(1, min(ncols, len(samples)))
    nrows = math.ceil(len(samples) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax, sample, panel in zip(axes.flat, samples, panels):
        ax.imshow(panel, interpolation='nearest')
        n_gt = len(np.asarray(sample['gt_labels']).reshape(-1))
        n_pred = int((np.asarray(sample['pred_scores'], dtype=float).reshape(-1) > score_thr).sum())
        ax.set_title(f"{sample.get('title', '')}  gt {n_gt} / pred {n_pred}", fontsize=7)
        ax.axis('off')
    for ax in axes.flat[len(samples):]:
        ax.axis('off')
    fig.legend(
        handles=[
            Line2D([], [], color='grey', linestyle='--', label='ground truth'),
            Line2D([], [], color='grey', linewidth=1.5, label=f'prediction (score > {score_thr})')
        ],
        loc='lower center',
        ncol=2,
        fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


def require_detector(config: str, cfg_options: Optional[Dict[str, Any]] = None) -> None:
    """Exit with a one-line reason unless ``config``'s model is an mmdet-style detector (the
    report draws boxes; a recommender or a segmentor has none)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model_type = cfg.get('model', {}).get('type')
    with MODELS.switch_scope_and_registry(cfg.get('default_scope', 'mmext')) as registry:
        model_cls = registry.get(model_type) if isinstance(model_type, str) else None
    try:
        from mmdet.models.detectors import BaseDetector
    except ImportError:
        raise SystemExit('demo_report needs mmdet (pip install \'mmext[det]\')') from None
    if not (isinstance(model_cls, type) and issubclass(model_cls, BaseDetector)):
        kind = getattr(model_cls, '__module__', 'not registered').split('.')
        raise SystemExit(
            f'demo_report draws detections, but the model of {config} is {model_type!r} '
            f"({'.'.join(kind[:3])}), not a detector. It supports detector configs "
            '(configs/fcos, configs/detr, ...); a recommender\'s metrics are in '
            '<work_dir>/<timestamp>/vis_data/scalars.json.')


def run_inference(
        config: str,
        checkpoint: str,
        num_images: int = 8,
        device: str = 'cpu',
        cfg_options: Optional[Dict[str,
                                   Any]] = None) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """Predict on the first ``num_images`` images of the config's validation dataset.

    The model and the dataset are built through mmengine's registries under the config's
    ``default_scope`` (``mmext``), so the validation pipeline of the config is used as is and
    predictions come back in original image coordinates.

    Returns:
        The samples for :func:`draw_prediction_grid` and the dataset's ``metainfo``.
    """
    from mmengine.config import Config
    from mmengine.registry import DATASETS, MODELS, DefaultScope
    from mmengine.runner import load_checkpoint

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    loader_cfg = cfg.get('val_dataloader') or cfg.get('test_dataloader')
    if not loader_cfg or 'dataset' not in loader_cfg:
        raise KeyError(f'{config}: needs val_dataloader.dataset (or test_dataloader.dataset) '
                       'to pick the images to predict on')
    if 'model' not in cfg:
        raise KeyError(f'{config}: no `model` key')
    # A scoped override, not init_default_scope: callers (tests) keep their own default scope.
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmext')):
        dataset = DATASETS.build(copy.deepcopy(loader_cfg['dataset']))
        dataset.full_init()
        model = MODELS.build(copy.deepcopy(cfg.model))
        load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
        model.to(device).eval()
        samples = _predict(model, dataset, min(num_images, len(dataset)))
    return samples, dict(dataset.metainfo)


def _predict(model: Any, dataset: Any, num_images: int) -> List[Dict[str, Any]]:
    """Run ``model.test_step`` on the first images of ``dataset``; pair results with GT."""
    import torch
    from mmengine.dataset import pseudo_collate
    from PIL import Image

    samples: List[Dict[str, Any]] = []
    for start in range(0, num_images, 4):
        chunk = list(range(start, min(start + 4, num_images)))
        with torch.no_grad():
            outputs = model.test_step(pseudo_collate([dataset[i] for i in chunk]))
        for idx, out in zip(chunk, outputs):
            info = dataset.get_data_info(idx)
            instances = [ins for ins in info.get('instances', []) if not ins.get('ignore_flag', 0)]
            pred = out.pred_instances
            samples.append(
                dict(
                    image=np.asarray(Image.open(info['img_path']).convert('RGB')),
                    title=Path(info['img_path']).name,
                    gt_bboxes=np.array([ins['bbox'] for ins in instances],
                                       dtype=np.float32).reshape(-1, 4),
                    gt_labels=np.array([ins['bbox_label'] for ins in instances], dtype=np.int64),
                    pred_bboxes=pred.bboxes.cpu().numpy(),
                    pred_labels=pred.labels.cpu().numpy(),
                    pred_scores=pred.scores.cpu().numpy()))
    return samples


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Prediction grid and training curves of a '
                                     'trained detector.')
    parser.add_argument('config', help='the training config')
    parser.add_argument('checkpoint', help='the trained checkpoint (.pth)')
    parser.add_argument(
        '--work-dir',
        required=True,
        help='the training work_dir (holds <timestamp>/vis_data/scalars.json)')
    parser.add_argument('--num-images', type=int, default=8, help='validation images to show')
    parser.add_argument('--out-dir', default=None, help='where to write (default: --work-dir)')
    parser.add_argument(
        '--score-thr', type=float, default=0.3, help='lowest prediction score drawn (exclusive)')
    parser.add_argument('--device', default='cpu', help="e.g. 'cpu' or 'cuda:0'")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, as for tools/train.py')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Path]:
    """Write ``predictions.png`` and ``curves.png``; return their paths."""
    args = parse_args(argv)
    require_detector(args.config, args.cfg_options)
    out_dir = Path(args.out_dir or args.work_dir)
    scalars = find_scalars_file(Path(args.work_dir))  # fail early, before model building
    samples, meta = run_inference(args.config, args.checkpoint, args.num_images, args.device,
                                  args.cfg_options)
    written = dict(
        predictions=draw_prediction_grid(
            samples,
            meta.get('classes', ()),
            out_dir / 'predictions.png',
            args.score_thr,
            palette=meta.get('palette')),
        curves=plot_curves(scalars, out_dir / 'curves.png'))
    for path in written.values():
        print(f'wrote {path}')
    return written


if __name__ == '__main__':
    main()
