"""Parity of ``mmext.MaskFormerHead`` with mmseg 1.2's ``MaskFormerHead`` (semantic mode).

Both heads share random weights (mmseg's state dict is loaded into ours unchanged, through the
legacy-key hook) and get the same backbone features and ``gt_sem_seg``: the losses of every
decoder layer, the gradients of every parameter and of the input features, and the semantic
``seg_logits`` must agree (atol 1e-5).  The reference matches with mmdet's per-image
HungarianAssigner and match costs, ours with mmext's batched ones over all layers at once.
"""
import pytest
import torch
from conftest import build_seg_pair, feats, seg_samples
from mmdet.utils import register_all_modules as register_det
from mmseg.utils import register_all_modules as register_seg

register_det(init_default_scope=False)
register_seg(init_default_scope=False)


def _param_grads(module, legacy=False):
    out = {}
    for name, p in module.named_parameters():
        key = name.replace('predictor.', '') if not legacy else name
        out[key] = p.grad
    return out


@pytest.mark.parametrize('encoder', [True, False])
def test_losses_and_gradients_match_mmseg(encoder, fresh):
    ref, ours = build_seg_pair(num_classes=5, encoder=encoder)
    samples = seg_samples(5, batch=3, all_ignored_last=True)
    x_ref, x_ours = feats(3, requires_grad=True), feats(3, requires_grad=True)
    l_ref = ref.loss(x_ref, fresh(samples), {})
    l_ours = ours.loss(x_ours, fresh(samples), {})
    assert sorted(l_ref) == sorted(l_ours)
    assert len(l_ours) == 3 * 3  # cls/mask/dice for the last layer and two auxiliary layers
    for k in l_ref:
        # mmdet's mask losses are [1]-shaped (a tensor avg_factor), ours are scalars
        torch.testing.assert_close(l_ours[k], l_ref[k].reshape(()), atol=1e-5, rtol=1e-5, msg=k)
    sum(l_ref.values()).backward()
    sum(l_ours.values()).backward()
    g_ref, g_ours = _param_grads(ref, True), _param_grads(ours)
    assert set(g_ref) == set(g_ours)
    for k in g_ref:
        if g_ref[k] is None:
            assert g_ours[k] is None or g_ours[k].abs().max() == 0, k
            continue
        torch.testing.assert_close(g_ours[k], g_ref[k], atol=1e-5, rtol=1e-4, msg=k)
    for a, b in zip(x_ours, x_ref):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)


def test_semantic_outputs_match_mmseg(fresh):
    ref, ours = build_seg_pair(num_classes=4, encoder=True, seed=1)
    ref.eval()
    ours.eval()
    x = feats(2, seed=3)
    metas = [s.metainfo for s in seg_samples(4, batch=2)]
    with torch.no_grad():
        a = ref.predict(x, fresh(metas), {})
        b = ours.predict(x, fresh(metas), {})
    assert b.shape == (2, 4, 64, 64)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_mmseg_checkpoint_keys_load_unchanged():
    ref, ours = build_seg_pair(num_classes=3)
    legacy = set(ref.state_dict())
    ours_keys = {k.replace('predictor.', '') for k in ours.state_dict()}
    assert legacy == ours_keys
    for k, v in ref.state_dict().items():
        mapped = k if k.startswith('pixel_decoder') else f'predictor.{k}'
        assert torch.equal(ours.state_dict()[mapped], v)
