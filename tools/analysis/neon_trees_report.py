"""NEON tree crowns: scores per split and a sliding-window picture of a whole crop.

    python tools/analysis/neon_trees_report.py CONFIG CHECKPOINT --work-dir DIR \
        [--splits val osbs soap] [--picture yell_small] [--score-thr 0.3] [--max-side 900]

For each split of :data:`mmext.datasets.NEON_TREES_SPLITS` named in ``--splits``, the config's
test set is replaced by that split and the checkpoint is evaluated with the config's test
evaluator (COCO bbox mAP and DeepForest's box precision/recall at IoU 0.4, both through the
model's sliding window).  Then the whole crop named by ``--picture`` (both of its parts, train and
validation) is detected with :func:`mmext.apis.inference_large_image` and drawn.  Writes into
``--out-dir`` (default: ``--work-dir``):

* ``neon_trees_results.json``: the metrics of each split, the picture's counts and timings;
* ``neon_trees_results.md``: the same as a Markdown table;
* ``neon_trees_<picture>.jpg``: the crop, scaled to ``--max-side`` px, with predictions scored
  ``--score-thr`` or more (solid yellow) and the ground truth (thin cyan); a dashed white line
  marks where the validation part begins.
"""
import os.path as osp
import sys

# tools/ on the path, then its process defaults first (OpenMP reads its env when torch loads)
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import process_defaults  # noqa: E402,F401 isort:skip
import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

import mmext  # noqa: E402,F401  (registry nodes, safe checkpoint loading)
from mmext.registry import RUNNERS, explained_unknown_types  # noqa: E402

# metric keys of the config's evaluators -> table columns
COLUMNS = {
    'coco/bbox_mAP': 'bbox mAP',
    'coco/bbox_mAP_50': 'mAP_50',
    'deepforest/box_precision': 'precision@0.4',
    'deepforest/box_recall': 'recall@0.4',
    'deepforest/box_precision_pooled': 'precision@0.4 (pooled)',
    'deepforest/box_recall_pooled': 'recall@0.4 (pooled)',
    'deepforest/num_gt': 'trees',
    'deepforest/num_pred': 'predictions >= 0.1',
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir', required=True, help='runner work dir of the evaluations')
    parser.add_argument('--out-dir', help='where the results go (default: --work-dir)')
    parser.add_argument('--splits', nargs='+', default=['val', 'osbs', 'soap'])
    parser.add_argument(
        '--picture', default='yell_small', help="a key of NEON_TREES_FILES, or '' for none")
    parser.add_argument('--score-thr', type=float, default=0.3, help='drawn predictions')
    parser.add_argument('--max-side', type=int, default=900, help='longer side of the picture')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def evaluate_split(cfg: Config, checkpoint: str, split: str, work_dir: Path):
    """The test evaluator's metrics of ``checkpoint`` on one split, and the runner (its model
    holds the checkpoint's weights)."""
    cfg = copy.deepcopy(cfg)
    cfg.test_dataloader.dataset.split = split
    cfg.load_from = checkpoint
    cfg.work_dir = str(work_dir / f'eval_{split}')
    cfg.launcher = 'none'
    cfg.setdefault('runner_type', 'mmext.Runner')
    with explained_unknown_types():
        runner = RUNNERS.build(cfg)
        start = time.perf_counter()
        metrics = runner.test()
    metrics = {k: float(v) for k, v in metrics.items()}
    metrics['seconds'] = time.perf_counter() - start
    return metrics, runner


def markdown_table(results: Dict[str, Dict[str, float]]) -> str:
    """One row per split, the columns of :data:`COLUMNS` that any split has."""
    keys = [k for k in COLUMNS if any(k in r for r in results.values())]
    lines = [
        '| split | ' + ' | '.join(COLUMNS[k] for k in keys) + ' | eval time |',
        '|---' * (len(keys) + 2) + '|'
    ]
    for split, r in results.items():
        cells = []
        for k in keys:
            v = r.get(k, float('nan'))
            if v != v:  # NaN: not measured for this split, or undefined (no prediction)
                cells.append('-')
            else:
                cells.append(f'{int(v)}' if k.endswith(('num_gt', 'num_pred')) else f'{v:.3f}')
        lines.append(f'| {split} | ' + ' | '.join(cells) + f" | {r['seconds']:.0f} s |")
    return '\n'.join(lines) + '\n'


def draw_picture(img_path: str, pred_boxes: np.ndarray, gt_boxes: np.ndarray, val_top: int,
                 max_side: int, out: Path) -> None:
    """The image scaled to ``max_side`` with ``pred_boxes`` (``(N, 4)``, yellow) and
    ``gt_boxes`` (``(M, 4)``, cyan) in the image's pixels; a dashed line at row ``val_top``."""
    from PIL import Image, ImageDraw
    img = Image.open(img_path).convert('RGB')
    scale = min(1.0, max_side / max(img.size))
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    draw = ImageDraw.Draw(img)
    for box in np.asarray(gt_boxes).reshape(-1, 4) * scale:
        draw.rectangle(box.tolist(), outline=(0, 255, 255), width=2)
    for box in np.asarray(pred_boxes).reshape(-1, 4) * scale:
        draw.rectangle(box.tolist(), outline=(255, 230, 0), width=2)
    y = val_top * scale
    for x in range(0, img.width, 12):  # dashed: where the validation part begins
        draw.line([(x, y), (min(x + 6, img.width), y)], fill=(255, 255, 255), width=2)
    draw.text((6, 4), 'yellow: predicted (sliding window), cyan: ground truth', fill='white')
    draw.text((6, y + 4), 'validation part below', fill='white')
    img.save(out, quality=75, optimize=True)


def picture(runner, key: str, score_thr: float, max_side: int, out_dir: Path) -> dict:
    """Detect the whole crop ``key`` by the model's sliding window and draw it."""
    from mmext.apis import inference_large_image
    from mmext.datasets.neon_trees import NEON_TREES_SPLITS, NeonTreesDataset
    keys: Sequence[str] = [k for k, _ in NEON_TREES_SPLITS['yellowstone']]
    if key not in keys:
        raise SystemExit(f'--picture must be one of {keys} (a whole Yellowstone crop)')
    whole = NeonTreesDataset('yellowstone', pipeline=[]).get_data_info(keys.index(key))
    val_top = dict(NEON_TREES_SPLITS['val'])[key][1]
    start = time.perf_counter()
    result = inference_large_image(runner.model, whole['img_path'], progress=True)
    seconds = time.perf_counter() - start
    pred = result.pred_instances
    keep = pred.scores >= score_thr
    boxes = pred.bboxes[keep].cpu().numpy()
    gt = np.array([i['bbox'] for i in whole['instances']], dtype=np.float64)
    out = out_dir / f'neon_trees_{key}.jpg'
    draw_picture(whole['img_path'], boxes, gt, val_top, max_side, out)
    return dict(
        image=whole['img_path'],
        size=[whole['width'], whole['height']],
        trees=len(gt),
        predictions_drawn=int(keep.sum()),
        score_thr=score_thr,
        seconds=seconds,
        file=str(out),
        kbytes=out.stat().st_size / 1024)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    work_dir = Path(args.work_dir)
    out_dir = Path(args.out_dir or args.work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: Dict[str, Dict[str, float]] = {}
    runner = None
    for split in args.splits:
        results[split], runner = evaluate_split(cfg, args.checkpoint, split, work_dir)
    report: Dict[str, object] = dict(config=args.config, checkpoint=args.checkpoint, splits=results)
    if args.picture:
        if runner is None:  # no split evaluated: a runner only to load the weights
            _, runner = evaluate_split(cfg, args.checkpoint, 'soap', work_dir)
        report['picture'] = picture(runner, args.picture, args.score_thr, args.max_side, out_dir)
    (out_dir / 'neon_trees_results.json').write_text(json.dumps(report, indent=2))
    table = markdown_table(results)
    (out_dir / 'neon_trees_results.md').write_text(table)
    print(table)
    if 'picture' in report:
        pic: dict = report['picture']  # type: ignore[assignment]
        print(f"picture: {pic['file']} ({pic['kbytes']:.0f} KB): {pic['predictions_drawn']} "
              f"predictions >= {args.score_thr} drawn, {pic['trees']} trees, sliding window "
              f"{pic['seconds']:.1f} s")


if __name__ == '__main__':
    main()
