"""CheckedCocoDataset: bad annotation files give errors that name the file and the problem."""
import json

import pytest
from PIL import Image

from mmext.datasets import CheckedCocoDataset

CLASSES = ('circle', 'square')


def write(tmp_path, content, name='ann.json'):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def coco(images=1, anns=(), categories=CLASSES):
    return dict(
        images=[dict(id=i + 1, file_name=f'{i}.png', width=100, height=80) for i in range(images)],
        annotations=[
            dict(
                id=k + 1,
                image_id=1,
                category_id=c,
                bbox=list(b),
                iscrowd=0,
                area=max(b[2], 0) * max(b[3], 0)) for k, (c, b) in enumerate(anns)
        ],
        categories=[dict(id=i + 1, name=n) for i, n in enumerate(categories)])


def build(tmp_path, path):
    Image.new('RGB', (100, 80)).save(tmp_path / '0.png')
    return CheckedCocoDataset(
        data_root=str(tmp_path),
        ann_file=path.name,
        data_prefix=dict(img=''),
        metainfo=dict(classes=CLASSES),
        pipeline=[],
        filter_cfg=None)


def test_empty_file(tmp_path):
    with pytest.raises(ValueError, match=r'ann\.json: the annotation file is empty'):
        build(tmp_path, write(tmp_path, ''))


def test_invalid_json_names_the_position(tmp_path):
    with pytest.raises(ValueError, match=r'ann\.json: not valid JSON \(line 2'):
        build(tmp_path, write(tmp_path, '{"images": [],\n oops}'))


def test_no_images(tmp_path):
    with pytest.raises(ValueError, match='holds no images'):
        build(tmp_path, write(tmp_path, coco(images=0)))


def test_class_names_not_in_file(tmp_path):
    with pytest.raises(ValueError, match=r"\['square'\] are not category names.*'ellipse'"):
        build(tmp_path, write(tmp_path, coco(categories=('circle', 'ellipse'))))


def test_dropped_boxes_are_counted(tmp_path, monkeypatch):
    anns = [
        (1, (10, 10, 20, 20)),  # kept
        (2, (95, 70, 30, 30)),  # partly outside: kept, as in mmdet
        (1, (10, 10, 0, 15)),  # zero width
        (2, (200, 10, 10, 10)),  # entirely outside
        (1, (5, 5, float('nan'), 4))
    ]
    messages = []
    monkeypatch.setattr('mmext.datasets.coco.print_log', lambda msg, **kw: messages.append(msg))
    ds = build(tmp_path, write(tmp_path, coco(anns=anns)))
    assert len(ds) == 1 and len(ds.get_data_info(0)['instances']) == 2
    assert len(messages) == 1
    assert messages[0] == (f'{tmp_path}/ann.json: 3 annotation(s) dropped (2 smaller than 1 px '
                           'or zero area, 1 entirely outside the image); 2 kept')


def test_clean_file_logs_nothing(tmp_path, monkeypatch):
    messages = []
    monkeypatch.setattr('mmext.datasets.coco.print_log', lambda msg, **kw: messages.append(msg))
    ds = build(tmp_path, write(tmp_path, coco(anns=[(1, (10, 10, 20, 20))])))
    assert len(ds) == 1 and messages == []
