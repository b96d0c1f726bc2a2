"""VOC XML reader: malformed files name the file, line and element; real NEON files read back."""

import numpy as np
import pytest
from PIL import Image

from mmext.datasets.voc_xml import VOCXMLDataset, VOCXMLError, parse_voc_xml

CLASSES = ('Tree', 'Shrub')


def obj(name='Tree', box=(10, 20, 30, 40), difficult=None, drop=()):
    """One ``<object>``; ``drop``: element names to leave out (name, bndbox, xmin, ...)."""
    parts = [] if 'name' in drop else [f'<name>{name}</name>']
    if difficult is not None:
        parts.append(f'<difficult>{difficult}</difficult>')
    if 'bndbox' not in drop:
        coords = ''.join(f'<{k}>{v}</{k}>' for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), box)
                         if k not in drop)
        parts.append(f'<bndbox>{coords}</bndbox>')
    return '<object>' + ''.join(parts) + '</object>'


def doc(*objects,
        size='<size><width>100</width><height>80</height><depth>3</depth></size>',
        filename='a.png'):
    fn = f'<filename>{filename}</filename>' if filename else ''
    # one element a line, so that line numbers in errors can be checked
    body = '\n'.join([fn, size, *objects])
    return f'<annotation>\n{body}\n</annotation>\n'


def write(tmp_path, text, name='a.xml'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_reads_boxes_labels_and_difficult(tmp_path):
    path = write(
        tmp_path,
        doc(obj(), obj('Shrub', (0, 0, 100, 80), difficult=1),
            obj(box=('1.5', '2', '3.25', '4'), difficult=0)))
    out = parse_voc_xml(path, CLASSES)
    assert (out['filename'], out['width'], out['height'], out['skipped']) == ('a.png', 100, 80, 0)
    assert out['instances'] == [
        dict(bbox=[10, 20, 30, 40], bbox_label=0, ignore_flag=0),
        dict(bbox=[0, 0, 100, 80], bbox_label=1, ignore_flag=1),
        dict(bbox=[1.5, 2, 3.25, 4], bbox_label=0, ignore_flag=0)
    ]
    # VOC devkit convention: 1-based pixels, so (0, 0, 100, 80) is outside the image
    with pytest.raises(VOCXMLError, match=r'box \(-1, -1, 99, 79\) \(after coord_offset=1\)'):
        parse_voc_xml(path, CLASSES, coord_offset=1)
    path = write(tmp_path, doc(obj(), obj(box=(1, 1, 100, 80))), 'devkit.xml')
    assert [i['bbox']
            for i in parse_voc_xml(path, CLASSES, coord_offset=1)['instances']] == [[9, 19, 29, 39],
                                                                                    [0, 0, 99, 79]]


def test_name_map_and_unknown_classes(tmp_path):
    path = write(tmp_path, doc(obj('Dead'), obj('Alive'), obj('Rock')))
    with pytest.raises(VOCXMLError) as err:
        parse_voc_xml(path, CLASSES)
    msg = str(err.value)
    assert msg.startswith(f'{path}, line 4: <object> #1 (\'Dead\')')
    assert "class name 'Dead' is not one of the classes ['Tree', 'Shrub']" in msg
    with pytest.raises(
            VOCXMLError,
            match=r"line 6: <object> #3 \('Rock'\): class name 'Rock' "
            r"\(mapped to 'Stone' by name_map\)"):
        parse_voc_xml(path, CLASSES, name_map={'Dead': 'Tree', 'Alive': 'Tree', 'Rock': 'Stone'})
    out = parse_voc_xml(path, CLASSES, {'Dead': 'Tree', 'Alive': 'Shrub'}, 'skip')
    assert [i['bbox_label'] for i in out['instances']] == [0, 1] and out['skipped'] == 1


BAD = {
    'not well-formed': ('<annotation>\n<size><width>1</width>\n</annotation>',
                        r'not well-formed XML \(line 3, column 3: mismatched tag\)'),
    'empty file': ('', r'not well-formed XML \(line 1, column 1: no element found\)'),
    'root': ('<voc>\n</voc>', r'line 1: <voc>: the root element must be <annotation>'),
    'no size': (doc(obj(), size=''), r'line 1: <annotation>: has no <size>'),
    'no width': (doc(size='<size><height>80</height></size>'), r'line 3: <size>: has no <width>'),
    'bad height': (doc(size='<size><width>100</width><height>8O</height></size>'),
                   r"line 3: <size>: <height> is '8O', not a finite number"),
    'fractional width': (doc(size='<size><width>99.5</width><height>80</height></size>'),
                         r"<size>: <width> is '99.5', not a positive integer"),
    'no name': (doc(obj(), obj(drop=('name', ))), r'line 5: <object> #2: has no <name>'),
    'no bndbox': (doc(obj(drop=('bndbox', ))), r"line 4: <object> #1 \('Tree'\): has no <bndbox>"),
    'no xmax':
    (doc(obj(drop=('xmax', ))), r"line 4: <object> #1 \('Tree'\) <bndbox>: has no <xmax>"),
    'empty ymin': (doc(obj(box=(1, '', 3, 4))), r"<object> #1 \('Tree'\) <bndbox>: <ymin> is "
                   'empty'),
    'non-numeric': (doc(obj(), obj(box=(1, 2, 'abc', 4))),
                    r"line 5: <object> #2 \('Tree'\) <bndbox>: <xmax> is 'abc', not a finite "
                    'number'),
    'nan': (doc(obj(box=('nan', 2, 3, 4))), r"<xmin> is 'nan', not a finite number"),
    'xmin >= xmax': (doc(obj(box=(30, 20, 30, 40))),
                     r"line 4: <object> #1 \('Tree'\) <bndbox>: empty box: xmin 30 >= xmax 30"),
    'ymin >= ymax': (doc(obj(box=(10, 50, 30, 40))), r'empty box: ymin 50 >= ymax 40'),
    'outside': (doc(obj(box=(10, 20, 101, 40))),
                r'box \(10, 20, 101, 40\) \(after coord_offset=0\) is not inside the image '
                r'\(100x80 from <size>\)'),
    'difficult': (doc(obj(difficult='yes')),
                  r"line 4: <object> #1 \('Tree'\): <difficult> is 'yes', not 0 or 1"),
}


@pytest.mark.parametrize('case', list(BAD))
def test_malformed_files_name_file_line_and_element(tmp_path, case):
    text, pattern = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(VOCXMLError, match=pattern) as err:
        parse_voc_xml(path, CLASSES)
    assert str(err.value).startswith(path)
    if not case.startswith(('not well-formed', 'empty file')):  # expat gives its own position
        assert str(err.value).startswith(path + ', line ')


def _image(tmp_path, name='a.png', size=(100, 80)):
    Image.new('RGB', size).save(tmp_path / name)


def test_dataset_reads_a_folder_list_and_single_file(tmp_path):
    write(tmp_path, doc(obj(), filename='a.png'), 'a.xml')
    write(tmp_path, doc(filename='b.png'), 'b.xml')  # no objects
    _image(tmp_path, 'a.png')
    _image(tmp_path, 'b.png')
    (tmp_path / 'list.txt').write_text('b.xml\na.xml\n')
    common = dict(data_root=str(tmp_path), metainfo=dict(classes=CLASSES), pipeline=[])
    folder = VOCXMLDataset(**common)
    assert [folder.get_data_info(i)['img_name'] for i in range(len(folder))] == ['a', 'b']
    info = folder.get_data_info(0)
    assert info['img_path'] == str(tmp_path / 'a.png') and info['img_id'] == 0
    assert (info['width'], info['height']) == (100, 80)
    assert info['instances'] == [dict(bbox=[10, 20, 30, 40], bbox_label=0, ignore_flag=0)]
    listed = VOCXMLDataset(ann_file='list.txt', **common)
    assert [listed.get_data_info(i)['img_name'] for i in range(2)] == ['b', 'a']
    assert len(VOCXMLDataset(ann_file='a.xml', **common)) == 1
    assert len(VOCXMLDataset(xml_names=['b.xml'], **common)) == 1
    non_empty = VOCXMLDataset(filter_cfg=dict(filter_empty_gt=True), **common)
    assert [non_empty.get_data_info(i)['img_name'] for i in range(len(non_empty))] == ['a']


def test_dataset_checks_images_and_arguments(tmp_path):
    write(tmp_path, doc(obj(), filename='a.png'), 'a.xml')
    common = dict(data_root=str(tmp_path), metainfo=dict(classes=CLASSES), pipeline=[])
    with pytest.raises(VOCXMLError, match=r"a.xml: <filename> names 'a.png', which is not in"):
        VOCXMLDataset(**common)
    _image(tmp_path, 'a.png', size=(100, 81))
    with pytest.raises(VOCXMLError, match=r'a.xml: <size> says 100x80 but .*a.png is 100x81'):
        VOCXMLDataset(**common)
    assert len(VOCXMLDataset(check_images=False, **common)) == 1
    _image(tmp_path, 'a.jpg')
    assert VOCXMLDataset(img_suffix='.jpg', **common).get_data_info(0)['img_path'].endswith('a.jpg')
    with pytest.raises(ValueError, match=r'needs metainfo=dict\(classes='):
        VOCXMLDataset(data_root=str(tmp_path), pipeline=[])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='holds no .xml file'):
        VOCXMLDataset(data_root=str(tmp_path / 'empty'), metainfo=dict(classes=CLASSES))
    with pytest.raises(ValueError, match="on_unknown_class must be 'error' or 'skip'"):
        VOCXMLDataset(on_unknown_class='drop', **common)


# The real files: the deepforest wheel's NEON crops (installed by tools/setup_env.sh).
def neon_dir():
    from mmext.datasets.neon_trees import deepforest_data_dir
    try:
        return deepforest_data_dir()
    except FileNotFoundError as err:
        pytest.skip(f'the deepforest data is not installed ({err})')


@pytest.mark.parametrize('name,size,counts', [
    ('2019_YELL_2_528000_4978000_image_crop2', (2299, 2472), {
        'Tree': 574
    }),
    ('2019_YELL_2_541000_4977000_image_crop', (1249, 1035), {
        'Tree': 279
    }),
    ('OSBS_029', (400, 400), {
        'Tree': 61
    }),
    ('SOAP_061', (400, 400), {
        'Dead': 28,
        'Alive': 9
    }),
])
def test_real_neon_files(name, size, counts):
    """The counts the issue lists (DeepForest's own description of its data)."""
    classes = tuple(counts)
    out = parse_voc_xml(f'{neon_dir()}/{name}.xml', classes)
    assert (out['width'], out['height']) == size
    labels = np.array([i['bbox_label'] for i in out['instances']])
    assert {c: int((labels == k).sum()) for k, c in enumerate(classes)} == counts


def test_real_neon_boxes_equal_deepforests_csv():
    """OSBS_029 is shipped both as VOC XML and as DeepForest's CSV: the same boxes."""
    data = neon_dir()
    csv = np.genfromtxt(f'{data}/OSBS_029.csv', delimiter=',', skip_header=1, usecols=(1, 2, 3, 4))
    out = parse_voc_xml(f'{data}/OSBS_029.xml', ('Tree', ))
    boxes = np.array([i['bbox'] for i in out['instances']])
    assert boxes.shape == csv.shape == (61, 4)
    assert np.array_equal(np.unique(boxes, axis=0), np.unique(csv, axis=0))
