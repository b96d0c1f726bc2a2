"""The feature gathers outside distributed training (one process): identities with the right
gradient behaviour.  Their multi-rank semantics are tested through the losses under DDP in
tests/models/losses/test_ddp_contrastive.py."""
import torch

from mmext.models.utils import ScaleGrad, gather_features, gather_no_grad


def test_single_process_gathers_are_identities():
    x = torch.randn(3, 4, requires_grad=True)
    for with_grad in (True, False):
        out, offset = gather_features(x, with_grad=with_grad)
        assert out is x and offset == 0  # the local rows keep their gradient
    got = gather_no_grad(x)
    assert torch.equal(got, x) and not got.requires_grad


def test_scale_grad_scales_only_the_backward():
    x = torch.randn(3, 4, requires_grad=True)
    y = ScaleGrad.apply(x, 3.0)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 3.0))
