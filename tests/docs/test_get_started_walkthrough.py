"""docs/get_started.md, "Your own data": both walk-throughs run as written.

The config files, the data file and the commands are read from the page (the code block after
each ``<!-- walkthrough:NAME -->`` marker) and run in a scratch copy of the checkout's layout:
``tmp_path`` holds ``configs/`` (copied), ``data/`` (generated here) and the user's config, and
is the working directory, as the checkout root is for the reader.  The only additions are
options that shorten the schedule (one epoch), the checkpoint's epoch in the test command and,
for the detector, ``score_thr=0`` (an untrained model scores below the demo's 0.05, and
CocoMetric prints no metrics without detections).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / 'docs' / 'get_started.md'


def snippet(name: str) -> str:
    """The code block that follows ``<!-- walkthrough:NAME -->`` in the page, verbatim."""
    text = DOC.read_text(encoding='utf-8')
    found = re.findall(rf'<!-- walkthrough:{name} -->\n```[a-z]*\n(.*?)^```', text, re.S | re.M)
    assert len(found) == 1, f'{DOC}: expected one walkthrough:{name} block, found {len(found)}'
    return found[0]


def commands(name: str) -> List[List[str]]:
    """The ``python ...`` lines of a commands block as argument lists for this interpreter;
    the block must also say how to activate the venv, so the walk-through stands alone."""
    block = snippet(name)
    assert 'source .venv/bin/activate' in block and '.venv/bin/python' in block
    cmds = []
    for line in block.splitlines():
        line = line.split('#')[0].split()
        if line and line[0] == 'python':
            assert line[1].startswith('tools/'), line
            cmds.append([sys.executable, str(ROOT / line[1]), *line[2:]])
    return cmds


def run(cmd: List[str], cwd: Path) -> str:
    # the worktree's mmext, not an installed copy
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(cmd)}\n{log[-4000:]}'
    return log


def checkout_layout(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / 'configs', tmp_path / 'configs')
    (tmp_path / 'data').mkdir()
    return tmp_path


def last_epoch(cmd: List[str], epochs: int) -> List[str]:
    """The test command with the checkpoint of the shortened run (``epoch_36.pth`` ->
    ``epoch_1.pth``)."""
    return [re.sub(r'epoch_\d+\.pth$', f'epoch_{epochs}.pth', arg) for arg in cmd]


# ------------------------------------------------------------------------------ recommender
def write_interactions(path: Path) -> int:
    """The page's example lines, then 30 users x 6-15 of 15 items; returns the item count."""
    example = snippet('rec-file')
    lines = example.splitlines()
    assert lines[0] == 'user_id:token\titem_id:token\ttimestamp:float'
    assert all(len(line.split('\t')) == 3 for line in lines), 'the example must use tabs'
    gen = torch.Generator().manual_seed(0)
    rows = []
    for user in range(30):
        count = int(torch.randint(6, 16, (1, ), generator=gen))
        items = torch.randperm(15, generator=gen)[:count].tolist()
        for k, item in enumerate(items):
            rows.append(f'user{user}\titem{item}\t{1_700_000_000 + 3600 * user + 60 * k}')
    path.write_text(example + '\n'.join(rows) + '\n')
    items = {line.split('\t')[1] for line in path.read_text().splitlines()[1:]}
    return len(items)


def test_recommender_walkthrough(tmp_path):
    cwd = checkout_layout(tmp_path)
    config = cwd / 'my_sasrec.py'
    config.write_text(snippet('rec-config'))
    ann_file = Config.fromfile(config).ann_file
    num_items = write_interactions(cwd / ann_file)
    train, test = commands('rec-commands')
    assert train[2:] == ['my_sasrec.py'] and test[2] == 'my_sasrec.py'

    short = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1']
    log = run(train + short, cwd)
    ckpt = torch.load(
        cwd / 'work_dirs/my_sasrec/epoch_1.pth', map_location='cpu', weights_only=False)
    meta = ckpt['meta']['dataset_meta']
    assert meta['data_file'] == ann_file
    # the model's item table is sized from the user's file (+1: padding id 0)
    assert meta['num_items'] == num_items
    assert ckpt['state_dict']['item_embedding.weight'].shape[0] == num_items + 1

    # the page's log line, with its numbers as placeholders (bob: fewer than 3 interactions)
    doc_line = snippet('rec-log').strip()
    pattern = r'\d+'.join(re.escape(part) for part in re.split(r'\d+', doc_line))
    assert re.search(pattern, log), f'no line like {doc_line!r} in the training log'
    # alice and the 30 generated users; bob is dropped
    assert re.search(r'31 users scored, 1 dropped: 1 fewer than 3 interactions', log)

    log = run(last_epoch(test, 1), cwd)
    assert re.search(r'Epoch\(test\) \[1/1\] +hr@10: [\d.]+ +ndcg@10: [\d.]+ +mrr@10: [\d.]+', log)
    assert re.search(pattern, log)
    assert 'ml-100k' not in log  # no split fell back to the base config's MovieLens file


# ------------------------------------------------------------------------------ detector
def write_coco_split(root: Path, split: str, num_images: int, categories: List[dict]) -> None:
    """Shapes images (``mmext/datasets/shapes.py``) whose first two shape classes are renamed
    to the page's categories; the other shapes stay unannotated."""
    from mmext.datasets.shapes import ShapesDetectionGenerator
    coco = ShapesDetectionGenerator(img_size=128).write_split(root, split, num_images, seed=5)
    ids = [c['id'] for c in categories]
    anns = [
        dict(
            id=a['id'],
            image_id=a['image_id'],
            category_id=ids[a['category_id'] - 1],
            bbox=a['bbox'],
            area=a['area'],
            iscrowd=0) for a in coco['annotations'] if a['category_id'] <= len(ids)
    ]
    assert anns
    images = [{k: img[k] for k in ('id', 'file_name', 'width', 'height')} for img in coco['images']]
    (root / 'annotations').mkdir(exist_ok=True)
    (root / 'annotations' / f'{split}.json').write_text(
        json.dumps(dict(images=images, annotations=anns, categories=categories)))


def test_detector_example_json_is_what_mmdet_reads(tmp_path):
    """The page's minimal json loads as the walk-through's dataset, its two boxes kept."""
    pytest.importorskip('mmdet')
    from mmext.registry import DATASETS
    example = json.loads(snippet('det-json'))
    assert set(example) == {'images', 'annotations', 'categories'}
    assert set(example['images'][0]) == {'id', 'file_name', 'width', 'height'}
    assert set(
        example['annotations'][0]) == {'id', 'image_id', 'category_id', 'bbox', 'area', 'iscrowd'}
    assert set(example['categories'][0]) == {'id', 'name'}
    (tmp_path / 'val.json').write_text(snippet('det-json'))
    names = tuple(c['name'] for c in example['categories'])
    dataset = DATASETS.build(
        dict(
            type='mmext.CheckedCocoDataset',
            data_root=str(tmp_path),
            ann_file='val.json',
            data_prefix=dict(img='val/'),
            metainfo=dict(classes=names),
            test_mode=True,
            pipeline=[]))
    assert dataset.metainfo['annotation_checks']['kept'] == len(example['annotations'])
    assert dataset.metainfo['annotation_checks']['dropped'] == {}


def test_detector_walkthrough(tmp_path):
    pytest.importorskip('mmdet')
    cwd = checkout_layout(tmp_path)
    config = cwd / 'my_fcos.py'
    config.write_text(snippet('det-config'))
    cfg = Config.fromfile(config)
    classes = tuple(cfg.metainfo.classes)
    categories = json.loads(snippet('det-json'))['categories']
    assert classes == tuple(c['name'] for c in categories)

    # the layout the page draws
    layout = snippet('det-layout')
    root = cwd / layout.splitlines()[0].strip()
    assert root == cwd / cfg.data_root
    for split, num in (('train', 12), ('val', 6)):
        assert f'{split}.json' in layout and f'{split}/' in layout
        write_coco_split(root, split, num, categories)

    # nothing keeps the demo's data, classes or annotation file
    assert cfg.model.bbox_head.num_classes == len(classes)
    for split in ('train', 'val', 'test'):
        dataset = cfg[f'{split}_dataloader'].dataset
        assert dataset.type == 'mmext.CheckedCocoDataset' and 'shapes_cfg' not in dataset
        assert dataset.data_root == cfg.data_root and tuple(dataset.metainfo.classes) == classes
    for split in ('val', 'test'):
        assert cfg[f'{split}_evaluator'].ann_file == cfg.data_root + 'annotations/val.json'

    train, test = commands('det-commands')
    assert train[2:] == ['my_fcos.py'] and test[2] == 'my_fcos.py'
    short = [
        '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'model.test_cfg.score_thr=0.0'
    ]
    for split in ('train', 'val', 'test'):  # 12 images: worker processes only cost time
        short += [
            f'{split}_dataloader.num_workers=0', f'{split}_dataloader.persistent_workers=False'
        ]
    run(train + short, cwd)
    ckpt = torch.load(cwd / 'work_dirs/my_fcos/epoch_1.pth', map_location='cpu', weights_only=False)
    assert tuple(ckpt['meta']['dataset_meta']['classes']) == classes
    assert ckpt['state_dict']['bbox_head.conv_cls.weight'].shape[0] == len(classes)

    log = run(last_epoch(test, 1) + short[:1] + short[3:], cwd)
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in log
    assert re.search(
        r'Epoch\(test\) \[\d+/\d+\] +coco/cat_precision: [\d.]+ +'
        r'coco/dog_precision: [\d.]+ +coco/bbox_mAP: [\d.]+', log)
    assert not (cwd / 'data' / 'shapes').exists()  # the demo's data was never generated
