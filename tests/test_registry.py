"""mmext's registry nodes: reachable from every toolbox's scope, and able to reach theirs."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mmengine import DefaultScope
from mmengine.config import Config

import mmext
from mmext.registry import MODELS, TRANSFORMS, UnknownTypeError

ROOT = Path(__file__).resolve().parents[1]

HEAD = dict(
    num_classes=3,
    in_channels=32,
    feat_channels=32,
    stacked_convs=1,
    norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
    loss_cls=dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type='mmdet.IoULoss', loss_weight=1.0),
    loss_centerness=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0))


def toolbox_models(scope):
    module = __import__(f'{scope}.registry', fromlist=['MODELS'])
    return module.MODELS


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_mmext_type_resolves_from_toolbox_scope(scope):
    from mmext.models.dense_heads import FCOSHead
    with DefaultScope.overwrite_default_scope(scope):
        head = toolbox_models(scope).build(dict(type='mmext.FCOSHead', **HEAD))
    assert type(head) is FCOSHead


@pytest.mark.parametrize('name,module', [('mmdet.ResNet', 'mmdet.models'),
                                         ('mmseg.ResNetV1c', 'mmseg.models'),
                                         ('mmpretrain.ResNet', 'mmpretrain.models')])
def test_toolbox_parts_build_from_mmext_scope(name, module):
    with DefaultScope.overwrite_default_scope('mmext'):
        net = MODELS.build(dict(type=name, depth=18))
    assert type(net).__module__.startswith(module)


def test_toolbox_transform_from_mmext_scope():
    with DefaultScope.overwrite_default_scope('mmext'):
        t = TRANSFORMS.build(dict(type='mmdet.PackDetInputs'))
    assert type(t).__module__.startswith('mmdet.')


def test_unknown_type_names_registry_scope_and_close_matches():
    with pytest.raises(UnknownTypeError) as err:
        MODELS.build(dict(type='FCOSHaed', **HEAD))
    msg = str(err.value)
    assert "'FCOSHaed' is not in the mmext::model registry" in msg
    assert "'FCOSHead'" in msg  # ours (and mmdet.FCOSHead once mmdet is imported)


def test_unknown_mmext_type_from_mmdet_scope():
    with DefaultScope.overwrite_default_scope('mmdet'), pytest.raises(KeyError) as err:
        toolbox_models('mmdet').build(dict(type='mmext.FCOSHeadd', **HEAD))
    assert 'mmext::model' in str(err.value) and 'FCOSHead' in str(err.value)


def test_forgotten_scope_prefix_suggests_it():
    import mmdet.models  # noqa: F401  (registers mmdet's names, as any mmdet config would)
    with pytest.raises(UnknownTypeError, match=r"'mmdet\.RetinaHead'"):
        MODELS.get('RetinaHead')


def test_membership_does_not_raise():
    assert 'FCOSHead' in MODELS
    assert 'NoSuchThing' not in MODELS


def test_register_all_modules_sets_scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.warns(UserWarning, match="from 'mmdet' to 'mmext'"):
            mmext.register_all_modules(init_default_scope=True)
        assert DefaultScope.get_current_instance().scope_name == 'mmext'


def test_inherited_scope_trap(tmp_path):
    """A model inherited from an ``mmdet::`` config carries ``_scope_='mmdet'``: an unprefixed
    override would build mmdet's FCOSHead; ``type='mmext.FCOSHead'`` builds ours."""
    from mmdet.models.dense_heads import FCOSHead as MMDetFCOSHead

    from mmext.models.dense_heads import FCOSHead
    for type_name, expected in [('mmext.FCOSHead', FCOSHead), ('FCOSHead', MMDetFCOSHead)]:
        cfg_file = tmp_path / f'{type_name}.py'
        cfg_file.write_text(
            textwrap.dedent(f"""
            _base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
            custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
            default_scope = 'mmext'
            model = dict(backbone=dict(depth=18, init_cfg=None),
                         neck=dict(in_channels=[64, 128, 256, 512]),
                         bbox_head=dict(type='{type_name}'))
            """))
        cfg = Config.fromfile(str(cfg_file))
        assert cfg.model._scope_ == 'mmdet'
        with DefaultScope.overwrite_default_scope('mmext'):
            model = MODELS.build(cfg.model)
        assert type(model.bbox_head) is expected, type_name


def test_our_fcos_config_builds_our_head():
    from mmext.models.dense_heads import FCOSHead
    cfg = Config.fromfile(str(ROOT / 'configs' / 'fcos' / 'fcos_r50_fpn_tricks.py'))
    assert cfg.default_scope == 'mmext'
    assert cfg.train_dataloader.dataset._scope_ == 'mmdet'  # inherited mmdet dataset base
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(cfg.model)
    assert type(model.bbox_head) is FCOSHead
    assert model.bbox_head.center_sampling and model.bbox_head.norm_on_bbox


def test_custom_imports_in_a_fresh_interpreter(tmp_path):
    """What an mmdet user does: their own default scope, mmext reached through custom_imports."""
    cfg_file = tmp_path / 'user_cfg.py'
    cfg_file.write_text(
        textwrap.dedent(f"""
        default_scope = 'mmdet'
        custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
        head = dict(type='mmext.FCOSHead', **{HEAD!r})
        """))
    code = textwrap.dedent(f"""
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        cfg = Config.fromfile({str(cfg_file)!r})
        init_default_scope(cfg.default_scope)
        from mmdet.registry import MODELS
        head = MODELS.build(cfg.head)
        print(type(head).__module__)
        """)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith('mmext.models.dense_heads.fcos_head')


def test_build_with_fallback_prefers_mmext_then_toolbox():
    from mmdet.models.task_modules.coders import DistancePointBBoxCoder

    from mmext.models.dense_heads import FCOSHead
    from mmext.registry import TASK_UTILS, build_with_fallback
    head = build_with_fallback(MODELS, dict(type='FCOSHead', **HEAD))
    assert type(head) is FCOSHead  # ours, although mmdet has a FCOSHead too
    coder = build_with_fallback(TASK_UTILS, dict(type='DistancePointBBoxCoder'))
    assert type(coder) is DistancePointBBoxCoder  # mmext has none: mmdet's
    seg = build_with_fallback(MODELS, dict(type='CrossEntropyLoss'), fallback_scope='mmseg')
    assert type(seg).__module__.startswith('mmseg.')


def test_toolbox_part_builds_its_subparts_in_its_own_scope():
    """mmdet's HungarianAssigner names its match costs without a scope; built through
    build_with_fallback from the mmext scope, they must still be mmdet's."""
    from mmdet.models.task_modules.assigners import HungarianAssigner
    from mmdet.models.task_modules.assigners.match_cost import ClassificationCost

    from mmext.registry import TASK_UTILS, build_with_fallback
    with DefaultScope.overwrite_default_scope('mmext'):
        assigner = build_with_fallback(
            TASK_UTILS,
            dict(type='mmdet.HungarianAssigner', match_costs=[dict(type='ClassificationCost')]))
        assert DefaultScope.get_current_instance().scope_name == 'mmext'  # restored after
    assert type(assigner) is HungarianAssigner
    assert type(assigner.match_costs[0]) is ClassificationCost


def test_real_image_parts_resolve_by_name_alone():
    """The VOC/tiling/NEON datasets, LoadImageCrop, the sliding-window wrapper and DeepForest's
    metric are found from their names in a fresh interpreter: their areas are listed."""
    code = textwrap.dedent("""
        from mmext.registry import DATASETS, METRICS, MODELS, TRANSFORMS
        for node, name in [(DATASETS, 'TiledDataset'), (DATASETS, 'VOCXMLDataset'),
                           (DATASETS, 'NeonTreesDataset'), (TRANSFORMS, 'LoadImageCrop'),
                           (MODELS, 'SlidingWindowDetector'), (METRICS, 'BoxPrecisionRecall')]:
            print(name, node.get(name).__module__)
        """)
    # cwd: this checkout's mmext comes first on sys.path
    out = subprocess.run([sys.executable, '-c', code],
                         capture_output=True,
                         text=True,
                         timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split('\n')[:6] == [
        'TiledDataset mmext.datasets.tiled', 'VOCXMLDataset mmext.datasets.voc_xml',
        'NeonTreesDataset mmext.datasets.neon_trees',
        'LoadImageCrop mmext.datasets.transforms.load_image_crop',
        'SlidingWindowDetector mmext.models.detectors.sliding_window',
        'BoxPrecisionRecall mmext.evaluation.metrics.box_precision_recall'
    ]
