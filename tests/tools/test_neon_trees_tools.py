"""tools/analysis/neon_trees_report.py (table, picture) and tools/misc/neon_trees_data.py."""
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def report() -> ModuleType:
    return _load('neon_trees_report', REPO / 'tools' / 'analysis' / 'neon_trees_report.py')


def test_markdown_table_rows_and_formats(report):
    results = {
        'val': {
            'coco/bbox_mAP': 0.25,
            'coco/bbox_mAP_50': 0.5,
            'deepforest/box_recall': 2 / 3,
            'deepforest/num_gt': 224.0,
            'seconds': 12.4
        },
        'osbs': {
            'coco/bbox_mAP': 0.125,
            'seconds': 1.0
        },
    }
    lines = report.markdown_table(results).splitlines()
    assert lines[0] == '| split | bbox mAP | mAP_50 | recall@0.4 | trees | eval time |'
    assert lines[1] == '|---|---|---|---|---|---|'
    assert lines[2] == '| val | 0.250 | 0.500 | 0.667 | 224 | 12 s |'
    assert lines[3] == '| osbs | 0.125 | - | - | - | 1 s |'


def test_picture_is_scaled_and_draws_the_boxes(report, tmp_path):
    src = tmp_path / 'crop.png'
    Image.fromarray(np.zeros((600, 1800, 3), np.uint8)).save(src)
    out = tmp_path / 'pic.jpg'
    report.draw_picture(
        str(src),
        pred_boxes=np.array([[900, 60, 1500, 300]]),
        gt_boxes=np.array([[90, 390, 450, 540]]),
        val_top=450,
        max_side=900,
        out=out)
    img = np.asarray(Image.open(out).convert('RGB')).astype(int)
    assert img.shape == (300, 900, 3)  # scaled by 1/2
    # the prediction's outline (yellow) at x = 450..750, y = 30..150 of the picture
    r, g, b = img[90, 450]
    assert r > 200 and g > 180 and b < 90
    r, g, b = img[240, 45]  # the ground truth's left edge (cyan; JPEG blurs its red)
    assert r < 150 and g > 180 and b > 180
    assert img[90, 600].max() < 40  # inside a box: the image, untouched
    assert out.stat().st_size < 300 * 1024


def test_data_check_prints_splits_and_tiles(capsys):
    from mmext.datasets.neon_trees import deepforest_data_dir
    try:
        deepforest_data_dir()
    except FileNotFoundError as err:
        pytest.skip(f'the deepforest data is not installed ({err})')
    data = _load('neon_trees_data', REPO / 'tools' / 'misc' / 'neon_trees_data.py')
    data.main([])
    out = capsys.readouterr().out
    assert '2019_YELL_2_528000_4978000_image_crop2[x0:2299,y0:1790] 2299x1790 px, 404 trees' in out
    train = out.split('\ntrain')[1].split('\nval')[0]
    assert '63 tiles of 400 px (overlap 120), 3 without trees' in train
