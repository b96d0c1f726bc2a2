"""The sigmoid focal loss op (fused on CPU, plain elsewhere) against mmdet's FocalLoss."""
import importlib

import pytest
import torch
from mmdet.models.losses import FocalLoss

from mmext.models.losses import SigmoidFocalLossSum, focal_loss_from_labels
from mmext.ops import sigmoid_focal_loss_sum

focal_op = importlib.import_module('mmext.ops.sigmoid_focal_loss')


@pytest.mark.parametrize('gamma,alpha', [(2.0, 0.25), (1.5, 0.4), (0.0, 0.5)])
def test_fused_focal_loss_matches_mmdet(gamma, alpha):
    """Value and analytic gradient of the CPU focal-loss path against mmdet's FocalLoss under
    autograd, in float64, including saturated logits; plus a finite-difference gradcheck."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64) * 4
    x[:2] = torch.tensor([-100., -30., 0., 30., 100.])
    labels = torch.randint(0, 6, (64, ), generator=gen)  # 5 = background
    labels[:2] = torch.tensor([4, 0])
    x_ref = x.clone().requires_grad_()
    ref = FocalLoss(gamma=gamma, alpha=alpha, reduction='sum')(x_ref, labels)
    ref.backward()
    x_ours = x.clone().requires_grad_()
    ours = SigmoidFocalLossSum.apply(x_ours, labels, gamma, alpha)
    ours.backward()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    torch.autograd.gradcheck(lambda t: SigmoidFocalLossSum.apply(t, labels[2:], gamma, alpha),
                             (x[2:].clone().requires_grad_(), ))


@pytest.mark.parametrize(
    'loss_cfg,dtype',
    [
        (dict(), torch.float32),  # fused
        (dict(loss_weight=2.5, gamma=1.0, alpha=0.4), torch.float32),  # fused
        (dict(activated=True), torch.float32),  # probabilities in: falls back
        (dict(), torch.bfloat16),  # low precision: falls back
    ])
def test_dispatch_equals_configured_loss(loss_cfg, dtype):
    """focal_loss_from_labels returns what the configured mmdet loss returns."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 4, generator=gen)
    if loss_cfg.get('activated'):
        x = x.sigmoid()
    x = x.to(dtype)
    labels = torch.randint(0, 5, (200, ), generator=gen)
    module = FocalLoss(**loss_cfg)
    ours = focal_loss_from_labels(module, x, labels, avg_factor=17.0)
    ref = module(x, labels, avg_factor=17.0)
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
    torch.testing.assert_close(ours.float(), ref.float(), rtol=tol, atol=tol)


def _logits_labels(seed, dtype=torch.float32, n=300, c=7):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, generator=gen) * 3).to(dtype)
    return x, torch.randint(0, c + 1, (n, ), generator=gen)  # c = background


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_op_takes_the_fused_function_on_cpu(dtype):
    """CPU float32/64: the op is exactly SigmoidFocalLossSum (value and gradient)."""
    x, labels = _logits_labels(2, dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = sigmoid_focal_loss_sum(a, labels, 1.5, 0.3)
    ref = SigmoidFocalLossSum.apply(b, labels, 1.5, 0.3)
    got.backward()
    ref.backward()
    assert torch.equal(got, ref) and torch.equal(a.grad, b.grad)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_plain_path_is_mmdets_cpu_loss_bit_for_bit(dtype):
    """The op's plain backend does mmdet's CPU arithmetic (one-hot BCE x focal weight): the
    same bits as mmdet's FocalLoss, value and gradient; half types take it through the op."""
    x, labels = _logits_labels(3, dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = (sigmoid_focal_loss_sum if dtype != torch.float32 else focal_op._torch_one_hot)(a, labels,
                                                                                          2.0, 0.25)
    ref = FocalLoss(gamma=2.0, alpha=0.25, reduction='sum')(b, labels)
    got.backward()
    ref.backward()
    assert got.dtype == dtype and torch.equal(got, ref) and torch.equal(a.grad, b.grad)


def test_non_cuda_devices_never_need_mmcv(monkeypatch):
    monkeypatch.setattr(focal_op, '_mmcv_cuda_kernel', lambda: pytest.fail('mmcv asked'))
    x, labels = _logits_labels(4, torch.bfloat16)
    assert torch.isfinite(sigmoid_focal_loss_sum(x, labels))


@pytest.mark.cuda
def test_cuda_takes_mmcvs_kernel_as_mmdet_does():
    x, labels = _logits_labels(5)
    x, labels = x.cuda(), labels.cuda()
    ref = FocalLoss(reduction='sum')(x, labels)
    assert torch.equal(sigmoid_focal_loss_sum(x, labels), ref)
