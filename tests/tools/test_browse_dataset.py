"""tools/analysis/browse_dataset.py: N pipeline outputs drawn with their annotations, for the FCOS
shapes config (boxes) and the MaskFormer shapes_seg config (class maps)."""
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FCOS = ROOT / 'configs' / 'fcos' / 'fcos_r18_fpn_shapes-128_demo.py'
MASKFORMER = ROOT / 'configs' / 'maskformer' / 'maskformer_r18_shapes-seg_demo.py'


@pytest.fixture(scope='module')
def browse() -> ModuleType:
    spec = importlib.util.spec_from_file_location('browse_dataset',
                                                  ROOT / 'tools' / 'analysis' / 'browse_dataset.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fcos_options(data: Path):
    sys.path.insert(0, str(ROOT / 'tests' / 'helpers'))
    import demo_runs
    return demo_runs.fcos_options(data, num_train=4, num_val=4)


def seg_options(data: Path):
    opts = []
    for split in ('train', 'val', 'test'):
        opts += [
            f'{split}_dataloader.dataset.data_root={data}',
            f'{split}_dataloader.dataset.shapes_cfg.num_train=4',
            f'{split}_dataloader.dataset.shapes_cfg.num_val=3'
        ]
    return opts


def rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path))[..., ::-1].astype(int)


def test_detection_val_boxes_where_the_annotations_are(browse, tmp_path, capsys):
    data = tmp_path / 'shapes'
    out = tmp_path / 'out'
    written = browse.main([
        str(FCOS), '--phase', 'val', '--num', '3', '--out-dir',
        str(out), '--cfg-options', *fcos_options(data)
    ])
    assert [p.name for p in written] == sorted(p.name for p in out.iterdir())
    assert len(written) == 3
    assert f'wrote 3 images to {out}' in capsys.readouterr().out

    from mmext.datasets.shapes import SHAPES_PALETTE
    coco = json.loads((data / 'annotations' / 'instances_val.json').read_text())
    assert [p.name for p in written] == [
        f'{i:05d}_{Path(img["file_name"]).stem}.png' for i, img in enumerate(coco['images'][:3])
    ]
    checked = matched = 0
    for path, img in zip(written, coco['images']):  # the dataset's order is the file's
        source = rgb(data / 'val' / img['file_name'])
        drawn = rgb(path)
        assert drawn.shape == source.shape  # the val pipeline keeps 128 x 128; one panel
        for ann in (a for a in coco['annotations'] if a['image_id'] == img['id']):
            x, y, w, h = ann['bbox']
            px, py = int(x), int(y + h / 2)  # the middle of the box's left edge
            checked += 1
            assert (drawn[py, px] != source[py, px]).any()
            expected = 0.9 * np.array(SHAPES_PALETTE[ann['category_id'] - 1]) + 0.1 * source[py, px]
            matched += int(np.abs(drawn[py, px] - expected).max() <= 12)
    assert checked > 0 and matched >= 0.75 * checked


def test_detection_train_pipeline_and_num_past_the_end(browse, tmp_path):
    out = tmp_path / 'out'
    written = browse.main([
        str(FCOS), '--phase', 'train', '--num', '50', '--out-dir',
        str(out), '--cfg-options', *fcos_options(tmp_path / 'shapes')
    ])
    assert len(written) == 4  # the whole (4-image) training set
    for path in written:
        assert rgb(path).shape == (128, 128, 3)


def test_segmentation_maps_blended_with_the_class_colours(browse, tmp_path):
    data = tmp_path / 'shapes_seg'
    out = tmp_path / 'out'
    written = browse.main([
        str(MASKFORMER), '--phase', 'val', '--num', '2', '--out-dir',
        str(out), '--cfg-options', *seg_options(data)
    ])
    assert len(written) == 2
    from mmext.datasets.shapes_seg import SHAPES_SEG_METAINFO
    palette = np.array(SHAPES_SEG_METAINFO['palette'])
    sources = sorted((data / 'img_dir' / 'val').iterdir())
    maps = sorted((data / 'ann_dir' / 'val').iterdir())
    for path, source_file, map_file in zip(written, sources, maps):
        source = rgb(source_file)
        labels = cv2.imread(str(map_file), cv2.IMREAD_UNCHANGED)
        drawn = rgb(path)
        h, w = labels.shape
        assert drawn.shape[1] == w and drawn.shape[0] > h  # one panel, the legend below
        expected = 0.5 * source + 0.5 * palette[labels]  # SegVisualizer(alpha=0.5) of the config
        assert np.abs(drawn[:h] - expected).max() <= 1
        assert (labels > 0).any()

    written = browse.main([
        str(MASKFORMER), '--phase', 'train', '--num', '2', '--out-dir',
        str(tmp_path / 'train'), '--cfg-options', *seg_options(data)
    ])
    assert len(written) == 2


def test_unknown_split(browse, tmp_path):
    with pytest.raises(SystemExit):
        browse.main([str(FCOS), '--phase', 'holdout'])
    with pytest.raises(ValueError, match='--num'):
        browse.browse(str(FCOS), num=0, out_dir=str(tmp_path))
