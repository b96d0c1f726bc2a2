"""tools/model_converters/*: every converter reports loading, reading and saving on stderr
(mmext.utils.progress; tests/tools/test_swin_converters.py checks swin_to_mmext.py)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools' / 'model_converters'))
# isort: off  (the converters are scripts: importable only once their folder is on sys.path)
import maskformer_keys  # noqa: E402
import vit_official_to_mmext  # noqa: E402
import vit_timm_to_mmext  # noqa: E402

from mmext.models.backbones.vision_transformer import VisionTransformer  # noqa: E402

# isort: on

ARCH = dict(embed_dims=48, num_layers=3, num_heads=4, feedforward_channels=96)


@pytest.fixture(autouse=True)
def report_every_step(monkeypatch):
    monkeypatch.setenv('MMEXT_PROGRESS_DELAY', '0')  # these quick runs would be silent
    monkeypatch.delenv('MMEXT_PROGRESS', raising=False)
    for key in ('RANK', 'OMPI_COMM_WORLD_RANK', 'SLURM_PROCID'):
        monkeypatch.delenv(key, raising=False)


def stage_lines(lines, desc):
    """The start and end lines of one stage, checked to be a complete report."""
    mine = [line for line in lines if line.startswith(desc)]
    assert len(mine) == 2, lines
    assert mine[0].endswith('...') and ': done in ' in mine[1]
    return mine


def test_vit_official_reads_array_by_array(tmp_path, monkeypatch, capsys):
    model = VisionTransformer(arch=ARCH, img_size=32, patch_size=8)
    arrays = vit_official_to_mmext.convert_mmext_to_official(model.state_dict(), ARCH['num_heads'])
    src, dst = tmp_path / 'vit.npz', tmp_path / 'mmext.pth'
    np.savez(src, **arrays)
    monkeypatch.setattr(sys, 'argv', ['vit_official_to_mmext.py', str(src), str(dst)])
    vit_official_to_mmext.main()
    err = capsys.readouterr().err.splitlines()
    n = len(arrays)
    reading = [line for line in err if line.startswith(f'reading {src}:')]
    assert reading[0].startswith(f'reading {src}:   0% (0/{n})')
    assert reading[-1].startswith(f'reading {src}: 100% ({n}/{n}), done in ')
    assert len(reading) <= 11
    stage_lines(err, f'saving {dst}')
    assert dst.is_file()


def test_vit_timm_and_maskformer_report_loading_and_saving(tmp_path, monkeypatch, capsys):
    model = VisionTransformer(arch=ARCH, img_size=32, patch_size=8)
    src, dst = tmp_path / 'mmext.pth', tmp_path / 'timm.pth'
    torch.save(dict(state_dict=model.state_dict()), src)
    monkeypatch.setattr(sys, 'argv', ['vit_timm_to_mmext.py', str(src), str(dst), '--reverse'])
    vit_timm_to_mmext.main()
    err = capsys.readouterr().err.splitlines()
    assert stage_lines(err, f'loading {src} (')[0].endswith(' MiB)...')
    stage_lines(err, f'saving {dst}')

    head = {'decode_head.query_embed.weight': torch.zeros(3, 4), 'backbone.x': torch.ones(2)}
    torch.save(dict(state_dict=head), tmp_path / 'tb.pth')
    maskformer_keys.main([str(tmp_path / 'tb.pth'), str(tmp_path / 'ours.pth'), '--to', 'mmext'])
    err = capsys.readouterr().err.splitlines()
    stage_lines(err, f'loading {tmp_path / "tb.pth"} (')
    stage_lines(err, f'saving {tmp_path / "ours.pth"}')
    assert list(torch.load(tmp_path / 'ours.pth', weights_only=True)['state_dict']) == [
        'decode_head.predictor.query_embed.weight', 'backbone.x'
    ]


def test_converters_are_silent_by_default_for_quick_files(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv('MMEXT_PROGRESS_DELAY')
    torch.save(dict(state_dict={'decode_head.cls_embed.weight': torch.zeros(2)}), tmp_path / 'a')
    maskformer_keys.main([str(tmp_path / 'a'), str(tmp_path / 'b'), '--to', 'mmext'])
    assert capsys.readouterr().err == ''
