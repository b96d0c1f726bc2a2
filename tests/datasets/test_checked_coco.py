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
    """``anns``: ``(category_id, xywh)`` on image 1, or ``(category_id, xywh, image_id)``."""
    return dict(
        images=[dict(id=i + 1, file_name=f'{i}.png', width=100, height=80) for i in range(images)],
        annotations=[
            dict(
                id=k + 1,
                image_id=a[2] if len(a) > 2 else 1,
                category_id=a[0],
                bbox=list(a[1]),
                iscrowd=0,
                area=max(a[1][2], 0) * max(a[1][3], 0)) for k, a in enumerate(anns)
        ],
        categories=[dict(id=i + 1, name=n) for i, n in enumerate(categories)])


def build(tmp_path, path, **kwargs):
    Image.new('RGB', (100, 80)).save(tmp_path / '0.png')
    return CheckedCocoDataset(
        data_root=str(tmp_path),
        ann_file=path.name,
        data_prefix=dict(img=''),
        metainfo=dict(classes=CLASSES),
        pipeline=[],
        **{
            'filter_cfg': None,
            **kwargs
        })


@pytest.fixture
def messages(monkeypatch):
    logged = []
    monkeypatch.setattr('mmext.datasets.coco.print_log', lambda msg, **kw: logged.append(msg))
    return logged


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
        (1, (5, 5, 4, 0))  # zero height
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


def test_unknown_category_ids_are_counted(tmp_path, messages):
    """Ids outside the file's categories: mmdet drops them silently and, under filter_empty_gt,
    the images holding only such annotations too."""
    anns = [
        (1, (10, 10, 20, 20)),  # kept
        (7, (10, 10, 20, 20)),  # unknown id on an image that keeps a box
        (9, (10, 10, 20, 20), 2),  # image 2 has only unknown ids...
        (7, (30, 30, 20, 20), 2),
        (7, (30, 30, 20, 20), 3),  # ... and so has image 3
        (2, (10, 10, 0, 20), 4),  # image 4: a degenerate box of a class, kept by mmdet's filter
    ]
    ds = build(
        tmp_path, write(tmp_path, coco(images=4, anns=anns)), filter_cfg=dict(filter_empty_gt=True))
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == [1, 4]
    path = f'{tmp_path}/ann.json'
    assert messages == [
        f"{path}: 5 annotation(s) dropped (4 with a category_id not in the file's categories "
        '(ids [7, 9]), 1 smaller than 1 px or zero area); 1 kept',
        f'{path}: filter_empty_gt removed 2 image(s) whose annotations all have a category_id '
        "not in the file's categories (ids [7, 9])"
    ]
    checks = ds.metainfo['annotation_checks']
    assert checks == dict(
        kept=1,
        dropped={
            "with a category_id not in the file's categories": 4,
            'smaller than 1 px or zero area': 1
        },
        unknown_category_ids={
            7: 3,
            9: 1
        },
        images=4,
        images_left=2,
        images_removed_unknown_category=2)


def test_unknown_category_ids_without_filter(tmp_path, messages):
    anns = [(1, (10, 10, 20, 20)), (3, (10, 10, 20, 20))]
    ds = build(tmp_path, write(tmp_path, coco(anns=anns)))
    assert len(ds) == 1 and len(ds.get_data_info(0)['instances']) == 1
    assert messages == [
        f"{tmp_path}/ann.json: 1 annotation(s) dropped (1 with a category_id not in the file's "
        'categories (ids [3])); 1 kept'
    ]
    assert ds.metainfo['annotation_checks']['images_removed_unknown_category'] == 0


def test_unknown_category_ids_strict(tmp_path):
    anns = [(1, (10, 10, 20, 20)), (3, (10, 10, 20, 20)), (3, (1, 1, 20, 20))]
    with pytest.raises(
            ValueError,
            match=r"ann\.json: 2 annotation\(s\) with a category_id not in "
            r"the file's categories \(ids \[3\]\)"):
        build(tmp_path, write(tmp_path, coco(anns=anns)), on_unknown_category='error')
    with pytest.raises(ValueError, match='on_unknown_category'):
        build(tmp_path, write(tmp_path, coco(anns=anns)), on_unknown_category='raise')


def test_class_annotations_of_other_categories_are_not_unknown(tmp_path, messages):
    """A category of the file outside metainfo.classes is a selection, not an error."""
    anns = [(1, (10, 10, 20, 20)), (3, (10, 10, 20, 20))]
    ds = build(tmp_path, write(tmp_path, coco(anns=anns, categories=CLASSES + ('ellipse', ))))
    assert len(ds.get_data_info(0)['instances']) == 1 and messages == []


def test_no_annotations_under_filter_empty_gt(tmp_path):
    """mmengine would fail with ``need at least one array to concatenate``."""
    path = write(tmp_path, coco(images=3))
    with pytest.raises(
            ValueError,
            match=r'ann\.json: 0 of 3 images are left after filtering '
            r".*3 have no annotation of the classes \['circle', 'square'\].*"
            'filter_empty_gt=False'):
        build(tmp_path, path, filter_cfg=dict(filter_empty_gt=True))
    assert len(build(tmp_path, path, filter_cfg=dict(filter_empty_gt=False))) == 3
    assert len(build(tmp_path, path, filter_cfg=dict(filter_empty_gt=True), test_mode=True)) == 3


def test_only_unknown_categories_under_filter_empty_gt(tmp_path, messages):
    path = write(tmp_path, coco(images=2, anns=[(5, (10, 10, 20, 20)), (5, (1, 1, 9, 9), 2)]))
    with pytest.raises(
            ValueError,
            match=r"0 of 2 images .*2 annotation\(s\) with a category_id "
            r"not in the file's categories \(ids \[5\]\)"):
        build(tmp_path, path, filter_cfg=dict(filter_empty_gt=True))


def test_all_images_below_min_size(tmp_path):
    path = write(tmp_path, coco(images=2, anns=[(1, (10, 10, 20, 20))]))
    with pytest.raises(
            ValueError,
            match=r'0 of 2 images .*1 have no annotation.*'
            '2 are smaller than min_size=200'):
        build(tmp_path, path, filter_cfg=dict(filter_empty_gt=True, min_size=200))


@pytest.mark.parametrize('bbox', [(float('nan'), 10, 20, 20), (10, 10, float('nan'), 20),
                                  (10, 10, float('inf'), 20), (10, float('-inf'), 20, 20)])
def test_nonfinite_box_raises_naming_the_image(tmp_path, bbox):
    """mmdet drops such a box without a word (or keeps an infinite width)."""
    anns = [(1, (10, 10, 20, 20), 2), (2, bbox, 2)]
    with pytest.raises(
            ValueError,
            match=r"ann\.json: image '1\.png' \(id 2\) has a box with a "
            r'NaN or infinite coordinate: annotation id 2'):
        build(tmp_path, write(tmp_path, coco(images=2, anns=anns)))
