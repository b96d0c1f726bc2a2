"""tools/benchmark/bench_deepforest.py: the files DeepForest trains on, and the scoring of its
predictions with mmext's metrics (the `train` step needs DeepForest's own venv and is not run)."""
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def bench():
    from mmext.datasets.neon_trees import deepforest_data_dir
    try:
        deepforest_data_dir()
    except FileNotFoundError as err:
        pytest.skip(f'the deepforest data is not installed ({err})')
    spec = importlib.util.spec_from_file_location(
        'bench_deepforest', REPO / 'tools' / 'benchmark' / 'bench_deepforest.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_then_evaluate_perfect_and_missing_predictions(bench, tmp_path):
    bench.prepare(str(tmp_path))
    rows = (tmp_path / 'train.csv').read_text().splitlines()
    assert rows[0] == 'image_path,xmin,ymin,xmax,ymax,label'
    tiles = sorted(p.name for p in (tmp_path / 'tiles').iterdir())
    assert len(tiles) == 62  # the NEON config's TiledDataset: 63 tiles, one empty left out
    assert {r.split(',')[0] for r in rows[1:]} == set(tiles)  # an empty tile has a 0,0,0,0 row
    images = json.loads((tmp_path / 'eval.json').read_text())
    assert [(i['split'], len(i['instances'])) for i in images] == [('val', 159), ('val', 65),
                                                                   ('osbs', 61), ('soap', 37)]
    # predictions: the ground truth itself for val and osbs, nothing for soap
    preds = [
        dict(
            file=i['file'],
            boxes=[b['bbox'] for b in i['instances']] if i['split'] != 'soap' else [],
            scores=[0.9] * len(i['instances']) if i['split'] != 'soap' else []) for i in images
    ]
    (tmp_path / 'deepforest_predictions.json').write_text(
        json.dumps(dict(train_seconds=1.0, steps=2, epochs=1, predictions=preds)))
    bench.evaluate(str(tmp_path))
    res = json.loads((tmp_path / 'deepforest_results.json').read_text())['splits']
    for split in ('val', 'osbs'):
        assert res[split]['deepforest/box_precision'] == 1.0
        assert res[split]['deepforest/box_recall'] == 1.0
        assert res[split]['coco/bbox_mAP_50'] == 1.0
    assert res['soap']['deepforest/box_recall'] == 0.0
    assert res['soap']['deepforest/num_gt'] == 37
