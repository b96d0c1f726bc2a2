"""tools/analysis/confusion_matrix.py: the heatmap for 1 and 2 classes, and the whole CLI on the
small real FCOS run (``fcos_demo_run``): ``tools/test.py --out`` then the tool, from the results
file and from the checkpoint."""
import csv
import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image
from tool_modules import load_tool, run_tool

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def tool() -> ModuleType:
    return load_tool('tools/analysis/confusion_matrix.py')


def _assert_png(path: Path, min_side: int = 300) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        assert min(img.size) >= min_side


@pytest.mark.parametrize('labels', [['thing', 'background'], ['cat', 'dog', 'background']])
def test_plot_small_class_counts(tool, tmp_path: Path, labels) -> None:
    """1 and 2 classes: a legible figure, an undefined background row does not break it."""
    n = len(labels)
    matrix = np.zeros((n, n), dtype=np.int64)
    matrix[0, 0], matrix[0, -1] = 3, 1  # background row left empty: all NaN when normalised
    out = tool.plot_confusion_matrix(matrix, labels, tmp_path / 'cm.png', 'title')
    _assert_png(out)
    tool.write_csv(matrix, labels, tmp_path / 'cm.csv')
    rows = list(csv.reader(open(tmp_path / 'cm.csv')))
    assert rows[0][1:] == labels and [r[0] for r in rows[1:]] == labels
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == matrix.tolist()


def test_single_class_given_as_a_string(tool) -> None:

    class Dataset:
        metainfo = dict(classes='person')

    assert tool.class_names(Dataset()) == ('person', )


class _Dataset:
    """Three images with one box each, the shape of mmdet's ``get_data_info``."""

    def __init__(self, with_ids: bool = True) -> None:
        self.infos = [
            dict(
                img_path=f'{k}.png',
                instances=[dict(bbox=[k, k, k + 10, k + 10], bbox_label=k, ignore_flag=k == 2)])
            for k in range(3)
        ]
        for k, info in enumerate(self.infos):
            if with_ids:
                info['img_id'] = 100 + k

    def __len__(self) -> int:
        return len(self.infos)

    def get_data_info(self, i: int) -> dict:
        return self.infos[i]


def _result(k: int, img_id=None) -> dict:
    pred = dict(
        bboxes=np.array([[k, k, k + 10, k + 10]]), scores=np.array([0.9]), labels=np.array([k]))
    return dict(pred_instances=pred) if img_id is None else dict(pred_instances=pred, img_id=img_id)


def test_results_paired_by_img_id_then_by_position(tool) -> None:
    shuffled = [_result(2, 102), _result(0, 100), _result(1, 101)]
    images = tool.pair_with_ground_truth(shuffled, _Dataset())
    assert [im['name'] for im in images] == ['2.png', '0.png', '1.png']
    for k, im in zip((2, 0, 1), images):
        assert im['gt_labels'].tolist() == [k] and im['pred_labels'].tolist() == [k]
        assert im['gt_bboxes'].tolist() == [[k, k, k + 10, k + 10]]
        assert im['gt_ignore'].tolist() == [k == 2]
    # no img_id on either side: by position
    images = tool.pair_with_ground_truth([_result(k) for k in range(3)], _Dataset(False))
    assert [im['name'] for im in images] == ['0.png', '1.png', '2.png']
    with pytest.raises(SystemExit, match='2 results for a test set of 3'):
        tool.pair_with_ground_truth([_result(0), _result(1)], _Dataset(False))
    with pytest.raises(SystemExit, match='no pred_instances'):
        tool.pair_with_ground_truth([dict(img_id=100)] * 3, _Dataset())
    m = tool.confusion.detection_confusion_matrix(3, images, 0.3, 0.5)
    np.testing.assert_array_equal(np.diag(m), [1, 1, 0, 0])  # the ignored box is not counted
    assert m.sum() == 2


def _option(run, key: str) -> str:
    return next(o.split('=', 1)[1] for o in run.cfg_options if o.startswith(key + '='))


def test_confusion_matrix_on_fcosrun_tool(fcos_demo_run, tmp_path: Path) -> None:
    from mmengine.fileio import load

    run = fcos_demo_run
    results = tmp_path / 'results.pkl'
    run_tool('tools/test.py', str(run.config), str(run.checkpoint), '--work-dir',
             str(tmp_path / 'test'), '--out', str(results), '--cfg-options', *run.cfg_options)
    # a threshold that keeps about half of the (barely trained) model's predictions
    records = load(str(results))
    scores = np.concatenate([np.asarray(r['pred_instances']['scores']) for r in records])
    score_thr = float(np.median(scores))
    iou_thr = 0.3
    out = tmp_path / 'cm'
    stdout = run_tool('tools/analysis/confusion_matrix.py', str(run.config), str(results),
                      '--out-dir', str(out), '--score-thr', str(score_thr), '--tp-iou-thr',
                      str(iou_thr), '--cfg-options', *run.cfg_options)
    assert 'gt \\ pred' in stdout and 'background' in stdout
    _assert_png(out / 'confusion_matrix.png')
    summary = json.loads((out / 'confusion_matrix.json').read_text())
    classes = summary['classes']
    counts = np.array(summary['counts'])
    num_classes = len(classes)
    assert counts.shape == (num_classes + 1, num_classes + 1)
    assert summary['labels'] == classes + ['background']

    # rows: every ground-truth box of the annotation file once, in its class's row
    ann = json.loads(Path(_option(run, 'test_evaluator.ann_file')).read_text())
    names = {c['id']: c['name'] for c in ann['categories']}
    gt_per_class = Counter(names[a['category_id']] for a in ann['annotations']
                           if not a.get('iscrowd', 0))
    assert counts[:num_classes].sum(axis=1).tolist() == [gt_per_class[c] for c in classes]
    # columns: every prediction at or above the threshold once, in its class's column
    labels = np.concatenate([np.asarray(r['pred_instances']['labels']) for r in records])
    kept = labels[scores >= score_thr]
    assert counts[:, :num_classes].sum(axis=0).tolist() == np.bincount(
        kept, minlength=num_classes).tolist()
    matched = counts[:num_classes, :num_classes].sum()
    # background row = the kept predictions that matched nothing; column = the objects missed
    assert counts[num_classes].sum() == len(kept) - matched
    assert counts[:, num_classes].sum() == sum(gt_per_class.values()) - matched
    assert counts[num_classes, num_classes] == 0
    assert 0 < len(kept) < len(scores)
    with open(out / 'confusion_matrix.csv') as f:
        assert [[int(v) for v in row[1:]] for row in list(csv.reader(f))[1:]] == counts.tolist()
    for row, name in zip(summary['per_class'], classes):
        assert row['name'] == name and row['gt'] == gt_per_class[name]

    # from the checkpoint: the tool runs the test set itself and finds the same matrix
    out_ckpt = tmp_path / 'cm_ckpt'
    run_tool('tools/analysis/confusion_matrix.py',
             str(run.config), str(run.checkpoint), '--out-dir', str(out_ckpt), '--score-thr',
             str(score_thr), '--tp-iou-thr', str(iou_thr), '--cfg-options', *run.cfg_options)
    assert (out_ckpt / 'predictions.pkl').is_file()
    again = json.loads((out_ckpt / 'confusion_matrix.json').read_text())
    assert again['counts'] == summary['counts']
