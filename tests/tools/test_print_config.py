"""tools/misc/print_config.py on a config that inherits mmdet's."""
import pytest
from mmengine.config import Config
from tool_modules import ROOT, load_tool

DINO = ROOT / 'configs' / 'dino' / 'dino-4scale_r50_8xb2-12e_coco.py'


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/misc/print_config.py')


def test_resolves_mmdet_bases_and_cfg_options(tool, tmp_path, capsys):
    saved = tmp_path / 'out' / 'dino_resolved.py'
    cfg = tool.main([
        str(DINO), '--cfg-options', 'train_cfg.max_epochs=3', 'model.num_queries=300',
        '--save-path',
        str(saved)
    ])
    out = capsys.readouterr().out
    # ours, over mmdet's dino config, over mmdet's coco_detection and default_runtime bases
    assert cfg.model.type == 'mmext.DINO' and cfg.model.bbox_head.type == 'mmext.DINOHead'
    assert cfg.model.backbone.type == 'ResNet' and cfg.model.encoder.num_layers == 6
    assert cfg.train_dataloader.dataset.type == 'mmext.CheckedCocoDataset'
    assert cfg.default_hooks.checkpoint.type == 'CheckpointHook'  # from default_runtime
    assert cfg.train_cfg.max_epochs == 3 and cfg.model.num_queries == 300
    assert '_base_' not in cfg.to_dict()
    assert out.startswith('Config:\n') and f'saved to {saved}' in out
    assert 'max_epochs=3' in out and "type='mmext.DINO'" in out

    reloaded = Config.fromfile(str(saved))  # stand-alone: no _base_ left to resolve
    assert reloaded.train_cfg.max_epochs == 3 and reloaded.model.type == 'mmext.DINO'
    assert reloaded.model.num_queries == 300
    assert 'mmdet::' not in saved.read_text()


def test_save_path_suffix(tool, tmp_path):
    with pytest.raises(SystemExit, match='--save-path must end with'):
        tool.main([str(DINO), '--save-path', str(tmp_path / 'x.txt')])
