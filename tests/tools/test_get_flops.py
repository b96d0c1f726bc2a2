"""tools/analysis/get_flops.py on the FCOS demo config and the SASRec config of real small runs."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from tool_modules import load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis/get_flops.py')


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_fcos_demo(tool, fcos_demo_run, capsys):
    config, opts = str(fcos_demo_run.config), fcos_demo_run.cfg_options
    dummy = tool.main([config, '--shape', '128', '128', '--cfg-options', *opts])
    out = capsys.readouterr().out
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(Config.fromfile(config).model)
    assert dummy.flops > 0 and dummy.activations > 0
    assert dummy.params == _num_params(model)
    assert dummy.input_desc == 'a dummy image batch (1, 3, 128, 128)'
    assert f'Parameters: {tool._si(dummy.params)} ({dummy.params:,})' in out
    assert f'FLOPs: {tool._si(dummy.flops)} ({dummy.flops:,})' in out
    table_rows = {line.split('|')[1].strip() for line in out.splitlines() if line.startswith('|')}
    assert {'model', 'backbone', 'neck', 'bbox_head'} <= table_rows
    # the stem's max pooling has no FLOP rule in mmengine: reported, not silently dropped
    assert dummy.not_counted['aten::max_pool2d'] == 1
    assert 'Not counted' in out and 'aten::max_pool2d (1)' in out

    # without --shape: the first test image (128x128) after the pipeline: the same shapes
    real = tool.main([config, '--cfg-options', *opts])
    assert 'the first test image, (1, 3, 128, 128)' in real.input_desc
    assert (real.flops, real.params) == (dummy.flops, dummy.params)
    # a dummy input is padded to the data preprocessor's pad_size_divisor (32), as images are
    inputs, samples, _ = tool.dummy_image_input(model, [90, 100])
    assert inputs.shape == (1, 3, 96, 128)
    assert samples[0].batch_input_shape == samples[0].img_shape == (96, 128)


def test_sasrec(tool, sasrec_demo_run, capsys):
    config, opts = str(sasrec_demo_run.config), sasrec_demo_run.cfg_options
    result = tool.main([config, '--cfg-options', *opts])
    out = capsys.readouterr().out
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(dict(cfg.model, dataset=cfg.train_dataloader.dataset))
    assert result.params == _num_params(model) > 0
    assert result.flops > 0
    assert result.input_desc == f'1 sequence(s) of max_len={cfg.max_len} item ids'
    assert 'Input: 1 sequence(s) of max_len=50 item ids' in out
    # embedding lookups are not FLOPs in mmengine's count; attention is, with our rule
    assert result.not_counted['aten::embedding'] > 0
    assert 'aten::scaled_dot_product_attention' not in result.not_counted
    # FLOPs grow with the batch
    assert tool.main([config, '--batch-size', '2', '--cfg-options', *opts]).flops == \
        2 * result.flops


def test_attention_rule_counts_both_products(tool):

    class Attention(nn.Module):

        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    flops = FlopAnalyzer(Attention(), (q, k, v)).set_op_handle(**tool.EXTRA_FLOP_RULES)
    flops.unsupported_ops_warnings(False)
    # q @ k^T: 5 x 7 dot products of width 8; attn @ v: 5 x 4 dot products of width 7
    assert flops.total() == 2 * 3 * (5 * 7 * 8 + 5 * 4 * 7)
