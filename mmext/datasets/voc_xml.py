"""Pascal VOC XML annotations (one file per image) read with checks that name the file and element.

mmdet's ``XMLDataset`` fits the VOC devkit layout only (an id list, ``JPEGImages/<id>.jpg``,
``Annotations/<id>.xml``) and, on a malformed file, fails with a bare ``AttributeError:
'NoneType' object has no attribute 'text'`` (a missing element), ``ValueError: could not convert
string to float`` (a non-numeric coordinate) or not at all: an unknown class name is skipped and a
box with ``xmin >= xmax`` is kept.  :func:`parse_voc_xml` raises a :class:`VOCXMLError` instead,
which names the file, the line, the ``<object>`` (its number and class) and the element, for:

* XML that is not well-formed, a root that is not ``<annotation>``;
* a missing ``<size>``, ``<width>``/``<height>`` that are missing or not positive integers;
* an ``<object>`` without ``<name>`` or ``<bndbox>``, a missing or non-numeric (or NaN/inf)
  ``<xmin>``/``<ymin>``/``<xmax>``/``<ymax>``, ``xmin >= xmax`` or ``ymin >= ymax``, a box
  outside the image, a ``<difficult>`` other than 0/1;
* a class name not in ``classes`` (after ``name_map``), unless ``on_unknown_class='skip'``;
* (:class:`VOCXMLDataset`) an image file that does not exist, or whose size differs from
  ``<size>``.

:class:`VOCXMLDataset` reads a folder (or a list) of such files into mmdet's data list format
(``img_path``, ``width``, ``height``, ``instances`` with ``bbox``, ``bbox_label``,
``ignore_flag``), so mmdet's pipelines (``LoadAnnotations``, ``PackDetInputs``) apply unchanged.
"""
import math
import os
import os.path as osp
import xml.parsers.expat
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from xml.etree import ElementTree as ET

from mmdet.datasets import BaseDetDataset
from mmengine.fileio import get_local_path, list_from_file

from mmext.registry import DATASETS

__all__ = ['VOCXMLError', 'parse_voc_xml', 'VOCXMLDataset']

_BOX_KEYS = ('xmin', 'ymin', 'xmax', 'ymax')


class VOCXMLError(ValueError):
    """A Pascal VOC XML annotation file is malformed; the message names the file and element."""


def _parse_with_lines(path: str) -> Tuple[ET.Element, Dict[int, int]]:
    """``path`` as an ElementTree, with the line of each element (``{id(element): line}``):
    ElementTree itself does not keep line numbers."""
    builder = ET.TreeBuilder()
    lines: Dict[int, int] = {}
    parser = xml.parsers.expat.ParserCreate()

    def start(tag: str, attrs: Dict[str, str]) -> None:
        lines[id(builder.start(tag, attrs))] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with open(path, 'rb') as f:
            parser.ParseFile(f)
        root = builder.close()
    except xml.parsers.expat.ExpatError as err:
        raise VOCXMLError(
            f'{path}: not well-formed XML (line {err.lineno}, column '
            f'{err.offset + 1}: {xml.parsers.expat.errors.messages[err.code]})') from err
    return root, lines


class _Reader:
    """Error messages for one file: ``<path>, line <n>: <where>: <what>``."""

    def __init__(self, path: str, lines: Dict[int, int]) -> None:
        self.path = path
        self.lines = lines

    def error(self, element: ET.Element, where: str, what: str) -> VOCXMLError:
        line = self.lines.get(id(element))
        at = f', line {line}' if line is not None else ''
        return VOCXMLError(f'{self.path}{at}: {where}: {what}')

    def child(self, parent: ET.Element, tag: str, where: str) -> ET.Element:
        found = parent.find(tag)
        if found is None:
            raise self.error(parent, where, f'has no <{tag}>')
        return found

    def text(self, parent: ET.Element, tag: str, where: str) -> str:
        text = (self.child(parent, tag, where).text or '').strip()
        if not text:
            raise self.error(parent.find(tag), where, f'<{tag}> is empty')
        return text

    def number(self, parent: ET.Element, tag: str, where: str) -> float:
        text = self.text(parent, tag, where)
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise self.error(parent.find(tag), where, f'<{tag}> is {text!r}, not a finite number')
        return value

    def positive_int(self, parent: ET.Element, tag: str, where: str) -> int:
        value = self.number(parent, tag, where)
        if value != int(value) or value < 1:
            raise self.error(
                parent.find(tag), where,
                f'<{tag}> is {self.text(parent, tag, where)!r}, not a positive '
                'integer')
        return int(value)


def parse_voc_xml(path: str,
                  classes: Sequence[str],
                  name_map: Optional[Mapping[str, str]] = None,
                  on_unknown_class: str = 'error',
                  coord_offset: float = 0.) -> Dict[str, Any]:
    """Read one Pascal VOC XML annotation file, checking every element that is used.

    Args:
        path: The ``.xml`` file (local).
        classes: Class names; a box's ``bbox_label`` is the index of its (mapped) name here.
        name_map: Renames class names before the lookup, e.g. ``{'Dead': 'Tree', 'Alive':
            'Tree'}`` to read two classes as one. Names it does not hold stay as they are.
        on_unknown_class: ``'error'`` (default) raises for a name not in ``classes``;
            ``'skip'`` leaves such objects out (their count is returned as ``skipped``).
        coord_offset: Subtracted from every coordinate: 0 (default) reads them as pixel edges,
            as DeepForest does (``xmax`` may equal ``<width>``); 1 reads the VOC devkit's
            1-based pixels as mmdet's ``XMLDataset`` does.

    Returns:
        dict: ``filename`` (``<filename>``'s text, or None when absent), ``width``, ``height``,
        ``instances`` (list of ``dict(bbox=[x1, y1, x2, y2], bbox_label=int, ignore_flag=0|1)``;
        ``<difficult>1</difficult>`` sets ``ignore_flag``) and ``skipped`` (objects of unknown
        classes left out).

    Raises:
        VOCXMLError: The file is malformed (see the module docstring); the message names the
            file, the line and the element.
    """
    if on_unknown_class not in ('error', 'skip'):
        raise ValueError(f"on_unknown_class must be 'error' or 'skip', got {on_unknown_class!r}")
    name_map = dict(name_map or {})
    cat2label = {name: i for i, name in enumerate(classes)}
    root, lines = _parse_with_lines(path)
    r = _Reader(path, lines)
    if root.tag != 'annotation':
        raise r.error(root, f'<{root.tag}>', 'the root element must be <annotation>')
    size = r.child(root, 'size', '<annotation>')
    width = r.positive_int(size, 'width', '<size>')
    height = r.positive_int(size, 'height', '<size>')
    filename = (root.findtext('filename') or '').strip() or None

    instances, skipped = [], 0
    for k, obj in enumerate(root.findall('object'), start=1):
        where = f'<object> #{k}'
        name = r.text(obj, 'name', where)
        where = f'<object> #{k} ({name!r})'
        mapped = name_map.get(name, name)
        if mapped not in cat2label:
            if on_unknown_class == 'skip':
                skipped += 1
                continue
            also = f' (mapped to {mapped!r} by name_map)' if mapped != name else ''
            raise r.error(
                obj, where, f'class name {name!r}{also} is not one of the classes '
                f"{list(classes)}; set name_map, or on_unknown_class='skip' to leave such "
                'objects out')
        difficult = obj.find('difficult')
        flag = 0
        if difficult is not None and (difficult.text or '').strip():
            flag_text = difficult.text.strip()
            if flag_text not in ('0', '1'):
                raise r.error(difficult, where, f'<difficult> is {flag_text!r}, not 0 or 1')
            flag = int(flag_text)
        box_el = r.child(obj, 'bndbox', where)
        x1, y1, x2, y2 = (
            r.number(box_el, key, f'{where} <bndbox>') - coord_offset for key in _BOX_KEYS)
        if x1 >= x2 or y1 >= y2:
            raise r.error(
                box_el, f'{where} <bndbox>',
                f'empty box: xmin {x1 + coord_offset:g} >= xmax {x2 + coord_offset:g}' if x1 >= x2
                else f'empty box: ymin {y1 + coord_offset:g} >= ymax {y2 + coord_offset:g}')
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise r.error(
                box_el, f'{where} <bndbox>', f'box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) (after '
                f'coord_offset={coord_offset:g}) is not inside the image ({width}x{height} from '
                '<size>)')
        instances.append(
            dict(bbox=[x1, y1, x2, y2], bbox_label=cat2label[mapped], ignore_flag=flag))
    return dict(filename=filename, width=width, height=height, instances=instances, skipped=skipped)


def _image_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of an image file from its header (the pixels are not decoded)."""
    from PIL import Image
    with Image.open(path) as img:
        return img.size


@DATASETS.register_module()
class VOCXMLDataset(BaseDetDataset):
    """Detection dataset of Pascal VOC XML files, one per image, checked by
    :func:`parse_voc_xml`.

    Args:
        ann_file: A ``.xml`` file, a folder of them, or a text file listing ``.xml`` paths (one
            a line, relative to the list's folder). Relative to ``data_root``; empty: the
            ``data_root`` folder itself.
        xml_names: With a folder: the files to read, in this order (default: every ``*.xml``
            there, sorted by name).
        name_map: Renames class names before the lookup in ``metainfo['classes']``
            (see :func:`parse_voc_xml`).
        on_unknown_class: ``'error'`` (default) or ``'skip'`` for names not in the classes.
        coord_offset: Subtracted from every coordinate (0: pixel edges; 1: VOC devkit).
        check_images: Check that each image exists and that its size (read from its header)
            matches ``<size>``. Defaults to True.
        data_prefix: ``dict(img=folder)``: where the images are (relative to ``data_root``);
            empty (default): beside each XML file. The file name is ``<filename>``, or the XML's
            name with ``img_suffix`` when that is set.
        img_suffix: When set (e.g. ``'.png'``), the image of ``x.xml`` is ``x<img_suffix>``,
            whatever ``<filename>`` says.
        **kwargs: Passed to ``mmdet.BaseDetDataset`` (``metainfo`` with ``classes`` is
            required, ``pipeline``, ``test_mode``, ``filter_cfg``, ...).

    Each data info holds ``img_path``, ``img_id`` (its index), ``img_name`` (the XML's stem),
    ``xml_path``, ``width``, ``height`` and ``instances``.  ``filter_cfg=dict(filter_empty_gt=
    True)`` leaves out images without boxes (when not ``test_mode``).
    """

    METAINFO: dict = dict(classes=None)

    def __init__(self,
                 ann_file: str = '',
                 xml_names: Optional[Sequence[str]] = None,
                 name_map: Optional[Mapping[str, str]] = None,
                 on_unknown_class: str = 'error',
                 coord_offset: float = 0.,
                 check_images: bool = True,
                 data_prefix: dict = dict(img=''),
                 img_suffix: Optional[str] = None,
                 **kwargs: Any) -> None:
        if on_unknown_class not in ('error', 'skip'):
            raise ValueError("on_unknown_class must be 'error' or 'skip', got "
                             f'{on_unknown_class!r}')
        self.xml_names = list(xml_names) if xml_names is not None else None
        self.name_map = dict(name_map or {})
        self.on_unknown_class = on_unknown_class
        self.coord_offset = coord_offset
        self.check_images = check_images
        self.img_suffix = img_suffix
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    def xml_files(self) -> List[str]:
        """The annotation files to read, from ``ann_file`` (and ``xml_names``)."""
        source = self.ann_file or self.data_root
        if not source:
            raise ValueError(f'{type(self).__name__}: set ann_file (a .xml file, a folder of '
                             'them or a list file) or data_root')
        if osp.isdir(source):
            names = self.xml_names
            if names is None:
                names = sorted(n for n in os.listdir(source) if n.lower().endswith('.xml'))
                if not names:
                    raise ValueError(f'{source}: holds no .xml file')
            return [osp.join(source, n) for n in names]
        if self.xml_names is not None:
            raise ValueError(f'xml_names needs ann_file to be a folder; {source} is not one')
        if not osp.isfile(source):
            raise FileNotFoundError(f'{type(self).__name__}: {source} does not exist')
        if source.lower().endswith('.xml'):
            return [source]
        listed = [line.strip() for line in list_from_file(source) if line.strip()]
        if not listed:
            raise ValueError(f'{source}: the list of .xml files is empty')
        return [osp.join(osp.dirname(source), p) for p in listed]

    def load_data_list(self) -> List[dict]:
        classes = self.metainfo.get('classes')
        if not classes:
            raise ValueError(f"{type(self).__name__} needs metainfo=dict(classes=(...)): the "
                             'class names that <object>/<name> may hold, in label order')
        data_list = []
        for xml_path in self.xml_files():
            with get_local_path(xml_path, backend_args=self.backend_args) as local:
                parsed = parse_voc_xml(local, classes, self.name_map, self.on_unknown_class,
                                       self.coord_offset)
            data_list.append(self._data_info(xml_path, parsed, len(data_list)))
        return data_list

    def _data_info(self, xml_path: str, parsed: dict, index: int) -> dict:
        stem = osp.splitext(osp.basename(xml_path))[0]
        if self.img_suffix is not None:
            file_name = stem + self.img_suffix
        elif parsed['filename'] is not None:
            file_name = parsed['filename']
        else:
            raise VOCXMLError(f'{xml_path}: <annotation> has no <filename>; set img_suffix to '
                              'name the image after the XML file')
        img_dir = self.data_prefix.get('img') or osp.dirname(xml_path)
        img_path = osp.join(img_dir, file_name)
        if self.check_images:
            if not osp.isfile(img_path):
                what = f'<filename> names {file_name!r}' if self.img_suffix is None else \
                    f'img_suffix={self.img_suffix!r} gives {file_name!r}'
                raise VOCXMLError(f'{xml_path}: {what}, which is not in {img_dir}')
            size = _image_size(img_path)
            if size != (parsed['width'], parsed['height']):
                raise VOCXMLError(f'{xml_path}: <size> says {parsed["width"]}x{parsed["height"]}'
                                  f' but {img_path} is {size[0]}x{size[1]}')
        return dict(
            img_path=img_path,
            img_id=index,
            img_name=stem,
            xml_path=xml_path,
            width=parsed['width'],
            height=parsed['height'],
            instances=parsed['instances'])

    def filter_data(self) -> List[dict]:
        """``filter_empty_gt`` (images without a kept box) and ``min_size``, as mmdet's."""
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        filter_empty = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)
        return [
            d for d in self.data_list
            if not (filter_empty and not any(not i['ignore_flag'] for i in d['instances']))
            and min(d['width'], d['height']) >= min_size
        ]
