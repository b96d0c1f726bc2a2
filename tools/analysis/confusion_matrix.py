"""Confusion matrix of a detector on its config's test set, with background row and column.

    python tools/analysis/confusion_matrix.py CONFIG RESULTS.pkl [--out-dir DIR]
        [--score-thr 0.3] [--tp-iou-thr 0.5] [--cfg-options k=v ...]
    python tools/analysis/confusion_matrix.py CONFIG CHECKPOINT.pth [same options]

``RESULTS.pkl`` is what ``tools/test.py CONFIG CHECKPOINT --out RESULTS.pkl`` writes; given a
checkpoint instead (any other file name), the tool runs the config's test loop itself and keeps
the predictions in ``DIR/predictions.pkl``.  Ground truth comes from the config's
``test_dataloader.dataset`` (its raw annotations, in original image coordinates like the
predictions), paired with the predictions by ``img_id``.

The matrix has shape ``(C + 1, C + 1)``: rows are the ground-truth class (last row: background,
predictions that match no object), columns the predicted class (last column: background,
objects no prediction matched).  Matching is one-to-one, greedy by score, same class first and
then across classes; the exact rules are in ``mmext/evaluation/detection_confusion.py`` and
docs/tools/confusion_matrix.md.  Written into ``--out-dir`` (default
``work_dirs/<config name>/confusion_matrix``):

* ``confusion_matrix.png``: the heatmap, coloured by the row-normalised share, with the count
  and the share in every cell;
* ``confusion_matrix.csv``: the counts, with class names as header and first column;
* ``confusion_matrix.json``: counts, row-normalised shares, thresholds and per-class totals
  (ground truth, predictions, true positives, misses, recall, precision).
"""
import argparse
import copy
import csv
import json
import math
import os.path as osp
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/: shared entry-point code
import process_defaults  # noqa: E402,F401 isort:skip  (before torch: OpenMP reads env once)
import matplotlib  # noqa: E402

matplotlib.use('Agg')  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

from mmext.evaluation import detection_confusion as confusion  # noqa: E402

RESULT_SUFFIXES = ('.pkl', '.pickle')


# ----------------------------------------------------------------------------- inputs
def load_config(config: str, cfg_options: Optional[Dict[str, Any]] = None) -> Config:
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'dataset' not in cfg.get('test_dataloader', {}):
        raise SystemExit(f'{config}: no test_dataloader.dataset to take the ground truth from')
    return cfg


def build_test_dataset(cfg: Config) -> Any:
    """The config's ``test_dataloader.dataset``, fully initialised (annotations loaded)."""
    from mmengine.registry import DATASETS, DefaultScope

    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmext')):
        dataset = DATASETS.build(copy.deepcopy(cfg.test_dataloader.dataset))
    dataset.full_init()
    return dataset


def class_names(dataset: Any) -> Tuple[str, ...]:
    """``metainfo['classes']`` as a tuple; a single class written as a bare string (``classes =
    ('person')`` in a config) is one class, not one class per character."""
    classes = dataset.metainfo.get('classes')
    if classes is None:
        raise SystemExit('the test dataset has no metainfo["classes"]')
    return (classes, ) if isinstance(classes, str) else tuple(str(c) for c in classes)


def predict(cfg: Config, checkpoint: str, out_file: Path) -> List[dict]:
    """Run the config's test loop on ``checkpoint`` and dump the predictions to ``out_file``
    (the format of ``tools/test.py --out``); the config's own metrics are not computed."""
    from mmengine.evaluator import DumpResults, Evaluator
    from mmengine.fileio import load

    from mmext.registry import RUNNERS, explained_unknown_types

    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    cfg.work_dir = str(out_file.parent)
    cfg.launcher = 'none'
    cfg.setdefault('runner_type', 'mmext.Runner')
    with explained_unknown_types():
        runner = RUNNERS.build(cfg)
        runner.test_loop.evaluator = Evaluator([DumpResults(out_file_path=str(out_file))])
        runner.test()
    return load(str(out_file))


def _array(value: Any, shape_tail: Tuple[int, ...] = ()) -> np.ndarray:
    arr = np.asarray(value.cpu() if hasattr(value, 'cpu') else value)
    return arr.reshape((-1, ) + shape_tail)


def pair_with_ground_truth(results: Sequence[dict], dataset: Any) -> List[Dict[str, np.ndarray]]:
    """One :func:`detection_confusion_matrix` image dict per result, with the dataset's boxes.

    Results are paired with dataset entries by ``img_id`` when every result has one, else by
    position (the lengths must then agree).
    """
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    by_id = {info['img_id']: i for i, info in enumerate(infos) if info.get('img_id') is not None}
    if results and all(r.get('img_id') is not None and r['img_id'] in by_id for r in results):
        index = [by_id[r['img_id']] for r in results]
    elif len(results) == len(infos):
        index = list(range(len(infos)))
    else:
        raise SystemExit(f'{len(results)} results for a test set of {len(infos)} images, and '
                         'they carry no img_id of that set: were they made with this config?')
    images = []
    for result, i in zip(results, index):
        if 'pred_instances' not in result:
            raise SystemExit(f'result #{len(images)} has no pred_instances (keys: '
                             f'{sorted(result)}): is this a detection results file?')
        pred = result['pred_instances']
        instances = infos[i].get('instances', [])
        images.append(
            dict(
                name=osp.basename(str(infos[i].get('img_path', f'image #{i}'))),
                pred_bboxes=_array(pred['bboxes'], (4, )),
                pred_scores=_array(pred['scores']),
                pred_labels=_array(pred['labels']).astype(np.int64),
                gt_bboxes=np.array([ins['bbox'] for ins in instances],
                                   dtype=np.float64).reshape(-1, 4),
                gt_labels=np.array([ins['bbox_label'] for ins in instances], dtype=np.int64),
                gt_ignore=np.array([bool(ins.get('ignore_flag', 0)) for ins in instances],
                                   dtype=bool)))
    return images


# ----------------------------------------------------------------------------- outputs
def plot_confusion_matrix(matrix: np.ndarray,
                          labels: Sequence[str],
                          out_file: Path,
                          title: str = '',
                          cmap: str = 'Blues') -> Path:
    """Heatmap of ``matrix`` ``(C + 1, C + 1)`` coloured by the row-normalised share; each cell
    shows its count and share, undefined cells (the background/background corner, rows with no
    entry) show a dash.  Sized from the number of labels, so 1 or 2 classes stay legible."""
    matrix = np.asarray(matrix)
    shares = confusion.normalize_rows(matrix)
    n = len(labels)
    side = max(4.0, 0.9 * n + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), dpi=120)
    shown = np.ma.masked_invalid(shares.copy())
    shown[n - 1, n - 1] = np.ma.masked  # background/background is not a count of anything
    image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='share of the row')
    for i in range(n):
        for j in range(n):
            if (i == n - 1 and j == n - 1) or math.isnan(shares[i, j]):
                text, colour = '–', 'grey'
            else:
                text = f'{int(matrix[i, j])}\n{100 * shares[i, j]:.0f}%'
                colour = 'white' if shares[i, j] > 0.6 else 'black'
            ax.text(j, i, text, ha='center', va='center', color=colour, fontsize=9)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=45, ha='left', rotation_mode='anchor')
    ax.set_yticklabels(labels)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position('top')
    ax.set_xlabel('predicted class (background: object missed)')
    ax.set_ylabel('ground-truth class (background: prediction on no object)')
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which='minor', color='white', linewidth=1.5)
    ax.tick_params(which='minor', length=0)
    # separate the background row and column from the classes
    ax.axhline(n - 1.5, color='black', linewidth=1.0)
    ax.axvline(n - 1.5, color='black', linewidth=1.0)
    if title:
        ax.set_title(title, fontsize=9, pad=10, y=-0.12)
    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file)
    plt.close(fig)
    return out_file


def write_csv(matrix: np.ndarray, labels: Sequence[str], out_file: Path) -> Path:
    """Counts with a header row of predicted labels and a first column of ground-truth labels."""
    with open(out_file, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['ground truth \\ predicted', *labels])
        for label, row in zip(labels, np.asarray(matrix)):
            writer.writerow([label, *(int(v) for v in row)])
    return Path(out_file)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


def format_table(matrix: np.ndarray, labels: Sequence[str]) -> str:
    """The counts as a fixed-width text table (rows ground truth, columns prediction)."""
    width = max(8, max(len(s) for s in labels) + 1)
    lines = ['gt \\ pred'.ljust(width) + ''.join(s[:width - 1].rjust(width) for s in labels)]
    for label, row in zip(labels, np.asarray(matrix)):
        lines.append(label[:width - 1].ljust(width) +
                     ''.join(str(int(v)).rjust(width) for v in row))
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Detection confusion matrix with background row and column')
    parser.add_argument('config', help='the test config')
    parser.add_argument(
        'source',
        help='results .pkl of `tools/test.py --out`, or a checkpoint to run the test set with')
    parser.add_argument(
        '--out-dir', help='where to write (default: work_dirs/<config name>/confusion_matrix)')
    parser.add_argument(
        '--score-thr', type=float, default=0.3, help='predictions with score >= this are counted')
    parser.add_argument(
        '--tp-iou-thr',
        type=float,
        default=0.5,
        help='least IoU of a prediction with the object it matches')
    parser.add_argument('--cmap', default='Blues', help='matplotlib colour map of the heatmap')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, as for tools/test.py')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Path]:
    """Compute, print and write the matrix; return the paths written."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    out_dir = Path(
        args.out_dir or osp.join('work_dirs',
                                 Path(args.config).stem, 'confusion_matrix'))
    out_dir.mkdir(parents=True, exist_ok=True)
    source = Path(args.source)
    if not source.is_file():
        raise SystemExit(f'{source} does not exist')
    dataset = build_test_dataset(cfg)
    classes = class_names(dataset)
    written: Dict[str, Path] = {}
    if source.suffix in RESULT_SUFFIXES:
        from mmengine.fileio import load
        results = load(str(source))
    else:
        written['predictions'] = out_dir / 'predictions.pkl'
        results = predict(cfg, str(source), written['predictions'])

    from mmengine.utils import track_iter_progress
    images = pair_with_ground_truth(results, dataset)
    print(f'matching {len(images)} images (score >= {args.score_thr}, '
          f'IoU >= {args.tp_iou_thr})')
    matrix = confusion.detection_confusion_matrix(
        len(classes),
        track_iter_progress(images),
        score_thr=args.score_thr,
        iou_thr=args.tp_iou_thr)
    labels = [*classes, 'background']

    title = (f'{Path(args.config).stem}: {len(images)} images, score >= {args.score_thr}, '
             f'IoU >= {args.tp_iou_thr}')
    written['png'] = plot_confusion_matrix(matrix, labels, out_dir / 'confusion_matrix.png', title,
                                           args.cmap)
    written['csv'] = write_csv(matrix, labels, out_dir / 'confusion_matrix.csv')
    summary = dict(
        config=str(args.config),
        source=str(source),
        num_images=len(images),
        score_thr=args.score_thr,
        tp_iou_thr=args.tp_iou_thr,
        classes=list(classes),
        labels=labels,
        counts=matrix.tolist(),
        row_normalized=confusion.normalize_rows(matrix).tolist(),
        per_class=confusion.per_class_summary(matrix, classes))
    written['json'] = out_dir / 'confusion_matrix.json'
    written['json'].write_text(json.dumps(_nan_to_none(summary), indent=2) + '\n')

    print(format_table(matrix, labels))
    print('rows: ground truth (background = predictions on no object); '
          'columns: prediction (background = objects missed)')
    for path in written.values():
        print(f'wrote {path}')
    return written


if __name__ == '__main__':
    main()
