"""CLIPLoss against CLIP's pseudo-code (Radford et al., 2021, Fig. 3) on small tensors."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmext.models.losses import CLIPLoss


def clip_reference(img, txt, t):
    """Fig. 3 of the CLIP paper: symmetric cross-entropy over exp(t)-scaled cosine logits."""
    i_e, t_e = F.normalize(img, dim=1), F.normalize(txt, dim=1)
    logits = i_e @ t_e.t() * t.exp()
    labels = torch.arange(img.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def _inputs(n=6, d=5):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, d,
                        generator=g).requires_grad_(), torch.randn(n, d,
                                                                   generator=g).requires_grad_())


@pytest.mark.parametrize('local_loss,gather_with_grad', [(False, False), (False, True),
                                                         (True, True)])
def test_matches_clip_pseudocode(local_loss, gather_with_grad):
    img, txt = _inputs()
    loss_fn = CLIPLoss(local_loss=local_loss, gather_with_grad=gather_with_grad)
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    loss = loss_fn(img, txt)
    t = loss_fn.logit_scale.detach().clone().requires_grad_()
    ref = clip_reference(img, txt, t)
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    g = torch.autograd.grad(loss, [img, txt, loss_fn.logit_scale])
    g_ref = torch.autograd.grad(ref, [img, txt, t])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_logit_scale_clamped_at_100():
    img, txt = _inputs()
    loss_fn = CLIPLoss()
    with torch.no_grad():
        loss_fn.logit_scale.fill_(10.0)
    loss = loss_fn(img, txt)
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(100))
    torch.testing.assert_close(loss, clip_reference(img, txt, torch.tensor(math.log(100))))


def test_local_loss_without_gather_with_grad_is_refused():
    with pytest.raises(ValueError, match='gather_with_grad=True'):
        CLIPLoss(local_loss=True, gather_with_grad=False)


def test_bad_input_raises():
    img, txt = _inputs()
    with pytest.raises(ValueError, match='same'):
        CLIPLoss()(img, txt[:3])
    with pytest.raises(ValueError, match='NaN'):
        CLIPLoss()(img, torch.full_like(txt, float('nan')))
    with pytest.raises(ValueError, match='logit_scale_init'):
        CLIPLoss(logit_scale_init=10.0)
