"""mmext.DiceLoss: properties (hypothesis), parity with mmdet's and mmseg's DiceLoss, errors."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdet.models.losses import DiceLoss as MMDetDiceLoss
from mmseg.models.losses import DiceLoss as MMSegDiceLoss

from mmext.models.losses import DiceLoss
from mmext.registry import MODELS

SETTINGS = dict(max_examples=25, deadline=None)


def _inputs(seed, n, c, h, w, ignore_frac=0.0, ignore=255):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g) * 3
    labels = torch.randint(0, c, (n, h, w), generator=g)
    if ignore_frac:
        drop = torch.rand(n, h, w, generator=g) < ignore_frac
        labels[drop] = ignore
    return logits, labels


@settings(**SETTINGS)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 3),
    c=st.integers(2, 5),
    naive=st.booleans(),
    sigmoid=st.booleans(),
    frac=st.sampled_from([0.0, 0.3, 1.0]))
def test_properties_label_map(seed, n, c, naive, sigmoid, frac):
    logits, labels = _inputs(seed, n, c, 5, 6, frac)
    logits.requires_grad_(True)
    loss_fn = DiceLoss(use_sigmoid=sigmoid, naive_dice=naive)
    loss = loss_fn(logits, labels)
    assert 0.0 <= loss.item() <= 1.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    if frac == 1.0:  # every pixel ignored -> exactly 0 (not 0.5/1) and no gradient
        assert loss.item() == 0.0
        assert logits.grad.abs().sum().item() == 0.0


@settings(**SETTINGS)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 4),
    naive=st.booleans(),
    eps=st.sampled_from([1e-3, 1.0]),
    scale=st.sampled_from([0.1, 3.0, 30.0]))
def test_properties_binary_masks(seed, n, naive, eps, scale):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, 7, 9, generator=g) * scale).requires_grad_(True)
    target = (torch.rand(n, 7, 9, generator=g) > 0.5).long()
    loss = DiceLoss(naive_dice=naive, eps=eps)(logits, target)
    assert 0.0 <= loss.item() <= 1.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@settings(**SETTINGS)
@given(seed=st.integers(0, 10_000), naive=st.booleans(), frac=st.sampled_from([0.2, 0.6]))
def test_invariant_to_ignored_pixels(seed, naive, frac):
    logits, labels = _inputs(seed, 2, 3, 6, 6, frac)
    ignored = (labels == 255).unsqueeze(1).expand_as(logits)
    other = torch.where(ignored, torch.randn_like(logits) * 10, logits)
    loss_fn = DiceLoss(use_sigmoid=False, naive_dice=naive)
    assert torch.allclose(loss_fn(logits, labels), loss_fn(other, labels), atol=1e-6)
    # the binary layout ignores the same way
    masks = torch.randint(0, 2, (3, 7, 7)).long()
    masks[:, :2] = 255
    pred = torch.randn(3, 7, 7)
    pred2 = pred.clone()
    pred2[:, :2] = 50.0
    fn = DiceLoss(naive_dice=naive)
    assert torch.allclose(fn(pred, masks), fn(pred2, masks), atol=1e-6)


@settings(**SETTINGS)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 4))
def test_perfect_prediction_is_zero(seed, n):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, 8, 8, generator=g) > 0.5).float()
    target[:, 0, 0] = 1  # non-empty masks
    naive = DiceLoss(activate=False, naive_dice=True)
    assert naive(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
    vnet = DiceLoss(activate=False, naive_dice=False, eps=1e-6)
    assert vnet(target.clone(), target).item() == pytest.approx(0.0, abs=1e-5)
    labels = torch.randint(0, 3, (n, 4, 4), generator=g)
    probs = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    assert naive(probs, labels).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize('naive', [True, False])
@pytest.mark.parametrize('eps', [1e-3, 1.0])
@pytest.mark.parametrize('avg', [None, 3.0])
def test_parity_mmdet_binary(naive, eps, avg):
    torch.manual_seed(0)
    pred = torch.randn(5, 9, 11)
    target = (torch.rand(5, 9, 11) > 0.6).long()
    weight = torch.rand(5)
    ours = DiceLoss(naive_dice=naive, eps=eps, loss_weight=2.0)
    ref = MMDetDiceLoss(naive_dice=naive, eps=eps, loss_weight=2.0)
    for w in (None, weight):
        p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        a = ours(p1, target, weight=w, avg_factor=avg)
        b = ref(p2, target, weight=w, avg_factor=avg)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        a.backward()
        b.backward()
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-5, rtol=0)
    for red in ('none', 'sum'):
        torch.testing.assert_close(
            ours(pred, target, reduction_override=red),
            ref(pred, target, reduction_override=red),
            atol=1e-5,
            rtol=0)


@pytest.mark.parametrize('naive', [True, False])
def test_soft_mask_targets_are_accepted_as_mmdet_does(naive):
    """Targets of pred's shape may be soft (values in [0, 1], e.g. resized masks), as the docs
    say; the loss equals mmdet's on them.  Values outside [0, 1] (other than ignore_index)
    raise."""
    torch.manual_seed(0)
    pred = torch.randn(4, 6, 7)
    soft = torch.rand(4, 6, 7)
    ours = DiceLoss(naive_dice=naive)
    ref = MMDetDiceLoss(naive_dice=naive)
    torch.testing.assert_close(ours(pred, soft), ref(pred, soft), atol=1e-5, rtol=0)
    for bad in (soft + 0.5, soft - 0.5):
        with pytest.raises(ValueError, match=r'binary or soft masks, values in \[0, 1\]'):
            ours(pred, bad)


def test_softmax_on_mask_layout_raises_like_mmdet():
    """use_sigmoid=False on mmdet's (N, H, W) mask layout would take the softmax over H: mmdet
    raises NotImplementedError, and so do we, naming the layout a softmax needs."""
    pred = torch.randn(3, 8, 8)
    masks = (torch.rand(3, 8, 8) > 0.5).long()
    with pytest.raises(NotImplementedError):
        MMDetDiceLoss(use_sigmoid=False)(pred, masks)
    with pytest.raises(
            NotImplementedError,
            match=r'label-map layout: \(N, C, \.\.\.\) logits '
            r'with an \(N, \.\.\.\) integer target'):
        DiceLoss(use_sigmoid=False)(pred, masks)
    # probabilities given as such, and label maps, still work with use_sigmoid=False
    probs = pred.sigmoid()
    torch.testing.assert_close(
        DiceLoss(use_sigmoid=False, activate=False)(probs, masks),
        DiceLoss(activate=False)(probs, masks))
    logits = torch.randn(3, 4, 8, 8)
    assert torch.isfinite(DiceLoss(use_sigmoid=False)(logits, torch.randint(0, 4, (3, 8, 8))))


@pytest.mark.parametrize('sigmoid', [True, False])
@pytest.mark.parametrize('naive', [True, False])
def test_parity_mmseg_label_map(sigmoid, naive):
    """Where the semantics agree (no ignored pixel), our label-map mode equals mmseg's."""
    logits, labels = _inputs(3, 2, 4, 8, 8)
    ours = DiceLoss(use_sigmoid=sigmoid, naive_dice=naive, loss_name='loss_x')
    ref = MMSegDiceLoss(use_sigmoid=sigmoid, naive_dice=naive, loss_name='loss_x')
    p1, p2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    a, b = ours(p1, labels), ref(p2, labels)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    a.backward()
    b.backward()
    torch.testing.assert_close(p1.grad, p2.grad, atol=1e-5, rtol=0)
    assert ours.loss_name == ref.loss_name == 'loss_x'


def test_ignored_pixels_differ_from_mmseg():
    """mmseg keeps ignored pixels as all-zero targets; we drop them (documented difference)."""
    logits, labels = _inputs(4, 1, 3, 8, 8, ignore_frac=1.0)
    assert DiceLoss(use_sigmoid=False)(logits, labels).item() == 0.0
    assert MMSegDiceLoss(use_sigmoid=False)(logits, labels).item() > 0.0
    # on the valid pixels only, our loss equals mmseg's loss on the cropped input
    logits, labels = _inputs(5, 1, 3, 8, 8)
    labels[..., 4:] = 255
    ours = DiceLoss(use_sigmoid=False, naive_dice=True)(logits, labels)
    ref = MMSegDiceLoss(use_sigmoid=False, naive_dice=True)(logits[..., :4], labels[..., :4])
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_builds_from_configs_of_both_toolboxes():
    det = MODELS.build(
        dict(
            type='mmext.DiceLoss',
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            loss_weight=1.0,
            eps=1.0))
    seg = MODELS.build(
        dict(type='mmext.DiceLoss', ignore_index=255, loss_name='loss_dice', use_sigmoid=False))
    assert isinstance(det, DiceLoss) and isinstance(seg, DiceLoss)
    assert seg.loss_name == 'loss_dice' and det.eps == 1.0


def test_bad_inputs_raise():
    fn = DiceLoss()
    with pytest.raises(ValueError, match='NaN'):
        fn(torch.full((2, 4), float('nan')), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='binary'):
        fn(torch.zeros(2, 4), torch.full((2, 4), 3))
    with pytest.raises(ValueError, match='label-map target values'):
        fn(torch.zeros(2, 3, 4), torch.full((2, 4), 7))
    with pytest.raises(ValueError, match='fits neither'):
        fn(torch.zeros(2, 3, 4), torch.zeros(5))
    with pytest.raises(ValueError, match='C>=2'):
        DiceLoss(use_sigmoid=False)(torch.zeros(2, 1, 4), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match='reduction'):
        DiceLoss(reduction='avg')
