"""The fused CPU sigmoid focal loss against mmdet's FocalLoss."""
import pytest
import torch
from mmdet.models.losses import FocalLoss

from mmext.models.losses import SigmoidFocalLossSum, focal_loss_from_labels


@pytest.mark.parametrize('gamma,alpha', [(2.0, 0.25), (1.5, 0.4), (0.0, 0.5)])
def test_fused_focal_loss_matches_mmdet(gamma, alpha):
    """Value and analytic gradient of the CPU focal-loss path against mmdet's FocalLoss under
    autograd, in float64, including saturated logits; plus a finite-difference gradcheck."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64) * 4
    x[:2] = torch.tensor([-100., -30., 0., 30., 100.])
    labels = torch.randint(0, 6, (64,), generator=gen)  # 5 = background
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
                             (x[2:].clone().requires_grad_(),))


@pytest.mark.parametrize('loss_cfg,dtype', [
    (dict(), torch.float32),                              # fused
    (dict(loss_weight=2.5, gamma=1.0, alpha=0.4), torch.float32),  # fused
    (dict(activated=True), torch.float32),                # probabilities in: falls back
    (dict(), torch.bfloat16),                             # low precision: falls back
])
def test_dispatch_equals_configured_loss(loss_cfg, dtype):
    """focal_loss_from_labels returns what the configured mmdet loss returns."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 4, generator=gen)
    if loss_cfg.get('activated'):
        x = x.sigmoid()
    x = x.to(dtype)
    labels = torch.randint(0, 5, (200,), generator=gen)
    module = FocalLoss(**loss_cfg)
    ours = focal_loss_from_labels(module, x, labels, avg_factor=17.0)
    ref = module(x, labels, avg_factor=17.0)
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
    torch.testing.assert_close(ours.float(), ref.float(), rtol=tol, atol=tol)
