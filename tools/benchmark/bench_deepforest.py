"""DeepForest side by side with mmext's NEON trees demo: same tiles, same wall clock, same scoring.

Three steps, two interpreters (DeepForest lives in its own venv,
``tools/benchmark/setup_deepforest_env.sh``):

    python tools/benchmark/bench_deepforest.py prepare OUT            # project venv
    $DF_PY tools/benchmark/bench_deepforest.py train OUT --seconds 981  # DeepForest venv
    python tools/benchmark/bench_deepforest.py evaluate OUT           # project venv

* ``prepare`` writes the training tiles of ``configs/fcos/fcos_r18_fpn_neon-trees_demo.py``
  (its ``TiledDataset``: the same 63 tiles of 400 px, the same boxes) as PNG files with
  DeepForest's CSV (``image_path, xmin, ymin, xmax, ymax, label``), and the evaluation images
  (the ``val`` regions, the ``osbs`` and ``soap`` crops) with their ground truth.
* ``train`` trains DeepForest's RetinaNet (torchvision's ResNet-50 FPN RetinaNet, as
  ``deepforest.models.retinanet``) **from scratch**: deepforest 2.1's own ``create_model`` would
  download COCO or ImageNet weights, so the network is built here with ``weights=None,
  weights_backbone=None`` and handed to ``deepforest.main.deepforest(model=...)``.  Lightning
  stops it after ``--seconds`` of training (``max_time``).  Then ``predict_tile`` (DeepForest's
  own sliding window, 400 px patches) detects in each evaluation image.
* ``evaluate`` scores those predictions with the code that scores mmext's model:
  ``mmext.BoxPrecisionRecall`` (IoU 0.4) and mmdet's ``CocoMetric``.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List

EVAL_SPLITS = ('val', 'osbs', 'soap')
CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs', 'fcos',
    'fcos_r18_fpn_neon-trees_demo.py')


def prepare(out: str) -> None:
    """Training tiles and evaluation images as files (project venv)."""
    import mmcv
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmext.registry import DATASETS
    init_default_scope('mmext')
    cfg = Config.fromfile(CONFIG)
    tiles = DATASETS.build(dict(cfg.train_dataloader.dataset, pipeline=[]))
    os.makedirs(osp.join(out, 'tiles'), exist_ok=True)
    rows = ['image_path,xmin,ymin,xmax,ymax,label']
    cache: Dict[str, object] = {}
    for i in range(len(tiles)):
        info = tiles.get_data_info(i)
        if info['img_path'] not in cache:
            cache[info['img_path']] = mmcv.imread(info['img_path'])
        x1, y1, x2, y2 = info['crop']
        name = f'tile_{i:03d}.png'
        mmcv.imwrite(cache[info['img_path']][y1:y2, x1:x2], osp.join(out, 'tiles', name))
        boxes = [b['bbox'] for b in info['instances'] if not b.get('ignore_flag', 0)]
        if not boxes:  # DeepForest's convention for an image without objects
            rows.append(f'{name},0,0,0,0,Tree')
        rows += [f'{name},{b[0]:g},{b[1]:g},{b[2]:g},{b[3]:g},Tree' for b in boxes]
    with open(osp.join(out, 'train.csv'), 'w') as f:
        f.write('\n'.join(rows) + '\n')

    os.makedirs(osp.join(out, 'eval'), exist_ok=True)
    images = []
    for split in EVAL_SPLITS:
        ds = DATASETS.build(dict(type='NeonTreesDataset', split=split, pipeline=[]))
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            img = mmcv.imread(info['img_path'])
            x1, y1, x2, y2 = info.get('crop', (0, 0, info['width'], info['height']))
            name = f'{split}_{i}.png'
            mmcv.imwrite(img[y1:y2, x1:x2], osp.join(out, 'eval', name))
            images.append(
                dict(
                    split=split,
                    file=name,
                    width=info['width'],
                    height=info['height'],
                    instances=[
                        dict(bbox=b['bbox'], bbox_label=0, ignore_flag=b.get('ignore_flag', 0))
                        for b in info['instances']
                    ]))
    with open(osp.join(out, 'eval.json'), 'w') as f:
        json.dump(images, f)
    print(f'{len(tiles)} training tiles ({len(rows) - 1} CSV rows) and {len(images)} evaluation '
          f'images in {out}')


def train(out: str, seconds: float, batch_size: int, patch_overlap: float) -> None:
    """DeepForest's RetinaNet from scratch for ``seconds``, then its predictions (DeepForest
    venv)."""
    import torch
    from deepforest import main
    from torchvision.models.detection import RetinaNet, retinanet_resnet50_fpn

    torch.manual_seed(0)
    # deepforest.models.retinanet's network, without any downloaded weights
    backbone = retinanet_resnet50_fpn(weights=None, weights_backbone=None).backbone
    network = RetinaNet(backbone, num_classes=1, score_thresh=0.1, nms_thresh=0.05)
    config_args = dict(
        model=dict(name=None),
        num_classes=1,
        label_dict=dict(Tree=0),
        accelerator='cpu',
        devices=1,
        workers=0,
        batch_size=batch_size,
        log_root=osp.join(out, 'lightning_logs'),
        train=dict(
            csv_file=osp.join(out, 'train.csv'),
            root_dir=osp.join(out, 'tiles'),
            epochs=10000,  # max_time stops it
            augmentations=[dict(HorizontalFlip=dict(p=0.5)),
                           dict(VerticalFlip=dict(p=0.5))]),
        validation=dict(csv_file=None, root_dir=None))
    model = main.deepforest(model=network, config_args=config_args)
    model.set_labels(dict(Tree=0))
    budget = time.strftime('00:%H:%M:%S', time.gmtime(seconds))
    model.create_trainer(max_time=budget, enable_checkpointing=False, logger=False)
    start = time.perf_counter()
    model.trainer.fit(model)
    train_s = time.perf_counter() - start

    with open(osp.join(out, 'eval.json')) as f:
        images = json.load(f)
    preds = []
    start = time.perf_counter()
    for image in images:
        path = osp.join(out, 'eval', image['file'])
        df = model.predict_tile(path=path, patch_size=400, patch_overlap=patch_overlap)
        rows = [] if df is None else df[['xmin', 'ymin', 'xmax', 'ymax', 'score']].values
        preds.append(
            dict(
                file=image['file'],
                boxes=[[float(v) for v in r[:4]] for r in rows],
                scores=[float(r[4]) for r in rows]))
    result = dict(
        train_seconds=train_s,
        predict_seconds=time.perf_counter() - start,
        epochs=int(model.trainer.current_epoch),
        steps=int(model.trainer.global_step),
        batch_size=batch_size,
        predictions=preds)
    with open(osp.join(out, 'deepforest_predictions.json'), 'w') as f:
        json.dump(result, f)
    print(f'DeepForest trained {train_s:.0f} s ({result["steps"]} steps, '
          f'{result["epochs"]} epochs), predicted {len(preds)} images')


def evaluate(out: str) -> None:
    """Score DeepForest's predictions with mmext's and mmdet's metrics (project venv)."""
    import torch
    from mmdet.evaluation import CocoMetric

    from mmext.evaluation.metrics import BoxPrecisionRecall
    with open(osp.join(out, 'eval.json')) as f:
        images = json.load(f)
    with open(osp.join(out, 'deepforest_predictions.json')) as f:
        result = json.load(f)
    by_file = {p['file']: p for p in result['predictions']}
    table: Dict[str, Dict[str, float]] = {}
    for split in EVAL_SPLITS:
        coco = CocoMetric(metric='bbox', proposal_nums=(100, 300, 1000))
        coco.dataset_meta = dict(classes=('Tree', ))
        dfp = BoxPrecisionRecall(iou_threshold=0.4, score_thr=0.1)
        samples: List[dict] = []
        for img_id, image in enumerate(i for i in images if i['split'] == split):
            pred = by_file[image['file']]
            samples.append(
                dict(
                    img_id=img_id,
                    ori_shape=(image['height'], image['width']),
                    instances=image['instances'],
                    pred_instances=dict(
                        bboxes=torch.tensor(pred['boxes'], dtype=torch.float32).reshape(-1, 4),
                        scores=torch.tensor(pred['scores'], dtype=torch.float32),
                        labels=torch.zeros(len(pred['scores']), dtype=torch.long))))
        scores = {}
        for metric in (coco, dfp):
            metric.process({}, samples)
            scores.update(metric.evaluate(len(samples)))
        table[split] = scores
    report = dict(
        train_seconds=result['train_seconds'],
        steps=result['steps'],
        epochs=result['epochs'],
        splits=table)
    with open(osp.join(out, 'deepforest_results.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(f"DeepForest RetinaNet from scratch, {result['train_seconds']:.0f} s of training "
          f"({result['steps']} steps):")
    print('| split | bbox mAP | mAP_50 | precision@0.4 | recall@0.4 | detections >= 0.1 |')
    print('|---|---|---|---|---|---|')
    nan = float('nan')  # CocoMetric returns nothing for a split without any detection
    for split, s in table.items():
        print(f"| {split} | {s.get('coco/bbox_mAP', nan):.3f} | "
              f"{s.get('coco/bbox_mAP_50', nan):.3f} | {s['deepforest/box_precision']:.3f} | "
              f"{s['deepforest/box_recall']:.3f} | {int(s['deepforest/num_pred'])} |")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('step', choices=['prepare', 'train', 'evaluate'])
    parser.add_argument('out', help='work folder shared by the three steps')
    parser.add_argument('--seconds', type=float, default=981, help='training wall clock')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument(
        '--patch-overlap', type=float, default=0.3, help='predict_tile overlap (fraction)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.step == 'prepare':
        prepare(args.out)
    elif args.step == 'train':
        train(args.out, args.seconds, args.batch_size, args.patch_overlap)
    else:
        evaluate(args.out)
    sys.stdout.flush()


if __name__ == '__main__':
    main()
