"""NEON tree crowns: the annotated airborne RGB crops that the ``deepforest`` wheel carries.

DeepForest (Weinstein et al., MIT licence, https://github.com/weecology/DeepForest) ships, in
``deepforest/data/``, crops of the US National Ecological Observatory Network's (NEON) 10 cm
airborne RGB imagery with tree-crown boxes in Pascal VOC XML.  mmext reads them from the installed
wheel (``pip install --no-deps deepforest==2.1.0``: its code is never imported, and its
dependencies are not needed) and never ships them.

========== ============================================ =========== ===== ================
key        file (``deepforest/data/``)                  size (px)   boxes classes
========== ============================================ =========== ===== ================
yell_large ``2019_YELL_2_528000_4978000_image_crop2``   2299x2472   574   Tree
yell_small ``2019_YELL_2_541000_4977000_image_crop``    1249x1035   279   Tree
osbs       ``OSBS_029`` (``.tif``)                       400x400    61    Tree
soap       ``SOAP_061``                                  400x400    37    Dead 28, Alive 9
========== ============================================ =========== ===== ================

The fixed split (:data:`NEON_TREES_SPLITS`): in each Yellowstone crop, the bottom quarter
(``y >= 0.75 H``: rows 1854-2471 and 776-1034) is for validation, the rows above ``0.75 H - 64``
for training; the 64-px band between them is used by neither, so no tree box reaches into both
parts (the tallest box is 108 px; with this band none does, checked by the tests) and no
training tile can overlap a validation tile.  The OSBS and SOAP crops (other sites) are for
cross-site evaluation.
"""
import importlib.util
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from mmext.registry import DATASETS
from mmext.utils.tiles import crop_instances

from .tiled import check_crop_pipeline
from .voc_xml import VOCXMLDataset, VOCXMLError

__all__ = [
    'DEEPFOREST_REQUIREMENT', 'NEON_TREES_FILES', 'NEON_TREES_SPLITS', 'NEON_TREES_METAINFO',
    'deepforest_data_dir', 'NeonTreesDataset'
]

#: The wheel whose data mmext reads (installed by tools/setup_env.sh from requirements/nodeps.txt).
DEEPFOREST_REQUIREMENT = 'deepforest==2.1.0'
_HINT = ('install the deepforest wheel without its dependencies, which only brings the data '
         f"files: pip install --no-deps '{DEEPFOREST_REQUIREMENT}'")

#: key -> (XML file in ``deepforest/data/``, (width, height)).
NEON_TREES_FILES: Dict[str, Tuple[str, Tuple[int, int]]] = {
    'yell_large': ('2019_YELL_2_528000_4978000_image_crop2.xml', (2299, 2472)),
    'yell_small': ('2019_YELL_2_541000_4977000_image_crop.xml', (1249, 1035)),
    'osbs': ('OSBS_029.xml', (400, 400)),
    'soap': ('SOAP_061.xml', (400, 400)),
}

# The Yellowstone split: validation from 0.75 H down, training above 0.75 H - _GAP.
_GAP = 64
Region = Optional[Tuple[int, int, int, int]]
#: split -> ((file key, region (x1, y1, x2, y2) or None for the whole crop), ...).
NEON_TREES_SPLITS: Dict[str, Tuple[Tuple[str, Region], ...]] = {
    'train': (('yell_large', (0, 0, 2299, 1854 - _GAP)), ('yell_small', (0, 0, 1249, 776 - _GAP))),
    'val': (('yell_large', (0, 1854, 2299, 2472)), ('yell_small', (0, 776, 1249, 1035))),
    'yellowstone': (('yell_large', None), ('yell_small', None)),
    'osbs': (('osbs', None), ),
    'soap': (('soap', None), ),
}

#: One class: SOAP's ``Dead``/``Alive`` are read as ``Tree`` (``name_map`` of the dataset).
NEON_TREES_METAINFO: Dict[str, Any] = dict(classes=('Tree', ), palette=[(0, 160, 0)])
_TREE_NAMES = {'Dead': 'Tree', 'Alive': 'Tree'}


def deepforest_data_dir() -> str:
    """``deepforest/data`` of the installed deepforest wheel.

    The package is located with :func:`importlib.util.find_spec` only: importing deepforest would
    need its dependencies (Lightning, geopandas, ...), which mmext does not install.
    """
    try:
        spec = importlib.util.find_spec('deepforest')
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise FileNotFoundError('The NEON tree-crown crops are read from the deepforest '
                                f'package, which is not installed: {_HINT}')
    roots = list(spec.submodule_search_locations or [])
    for root in roots:
        data = osp.join(root, 'data')
        if all(osp.isfile(osp.join(data, f)) for f, _ in NEON_TREES_FILES.values()):
            return data
    missing = [f for f, _ in NEON_TREES_FILES.values()]
    raise FileNotFoundError(f'deepforest is installed at {roots} but its data/ folder lacks some '
                            f'of {missing}; {_HINT}')


@DATASETS.register_module()
class NeonTreesDataset(VOCXMLDataset):
    """The NEON tree-crown crops of the deepforest wheel, by split (see the module docstring).

    Args:
        split: A key of :data:`NEON_TREES_SPLITS` (``'train'``, ``'val'``, ``'yellowstone'``,
            ``'osbs'``, ``'soap'``) or a sequence of them (e.g. ``('osbs', 'soap')``).
        min_visible: For a region of a crop (the train/val parts): a tree box cut by the
            region's edge is kept when at least this fraction of its area is inside.
        partial: ``'drop'`` or ``'ignore'`` (kept with ``ignore_flag=1``) for boxes cut below
            ``min_visible`` (:func:`mmext.utils.tiles.crop_instances`).
        data_root: The folder of the XML and image files; default: the installed wheel's
            (:func:`deepforest_data_dir`).
        metainfo: Default :data:`NEON_TREES_METAINFO` (one class, ``Tree``).
        name_map: Default ``{'Dead': 'Tree', 'Alive': 'Tree'}``; with
            ``metainfo=dict(classes=('Dead', 'Alive'))`` pass ``name_map={}`` to keep SOAP's two
            classes.
        **kwargs: Passed to :class:`VOCXMLDataset` (``pipeline``, ``test_mode``, ...).

    A data info of a region has ``crop=(x1, y1, x2, y2)`` (in the crop's pixels), ``width`` and
    ``height`` of the region and its instances in the region's coordinates: load it with
    ``mmext.LoadImageCrop`` (the pipeline is checked for that), or tile it with
    :class:`mmext.datasets.TiledDataset`.
    """

    def __init__(self,
                 split: Union[str, Sequence[str]] = 'train',
                 min_visible: float = 0.5,
                 partial: str = 'drop',
                 data_root: Optional[str] = None,
                 metainfo: Optional[dict] = None,
                 name_map: Optional[Mapping[str, str]] = None,
                 **kwargs: Any) -> None:
        splits = (split, ) if isinstance(split, str) else tuple(split)
        unknown = [s for s in splits if s not in NEON_TREES_SPLITS]
        if unknown or not splits:
            raise ValueError(f'split must be one or more of {sorted(NEON_TREES_SPLITS)}, got '
                             f'{split!r}')
        self.splits = splits
        self.entries = [entry for s in splits for entry in NEON_TREES_SPLITS[s]]
        self.min_visible = min_visible
        self.partial = partial
        keys = list(dict.fromkeys(key for key, _ in self.entries))
        super().__init__(
            ann_file='',
            xml_names=[NEON_TREES_FILES[k][0] for k in keys],
            name_map=_TREE_NAMES if name_map is None else name_map,
            data_root=deepforest_data_dir() if data_root is None else data_root,
            metainfo=NEON_TREES_METAINFO if metainfo is None else metainfo,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        by_name = {osp.basename(d['xml_path']): d for d in super().load_data_list()}
        data_list = []
        for key, region in self.entries:
            file_name, size = NEON_TREES_FILES[key]
            info = by_name[file_name]
            if (info['width'], info['height']) != size:
                raise VOCXMLError(
                    f"{info['xml_path']}: is {info['width']}x{info['height']} px, but the NEON "
                    f'split is defined for {size[0]}x{size[1]} ({DEEPFOREST_REQUIREMENT}); '
                    'another deepforest version ships other crops')
            info = dict(info, img_id=len(data_list))
            if region is not None:
                x1, y1, x2, y2 = region
                info.update(
                    img_name=f"{info['img_name']}[x{x1}:{x2},y{y1}:{y2}]",
                    crop=region,
                    width=x2 - x1,
                    height=y2 - y1,
                    instances=crop_instances(info['instances'], region, self.min_visible,
                                             self.partial))
            data_list.append(info)
        if any('crop' in d for d in data_list):
            check_crop_pipeline(self.pipeline, type(self).__name__)
        return data_list
