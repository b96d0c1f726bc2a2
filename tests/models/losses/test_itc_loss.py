"""ITCLoss against hand-written ALBEF equations (Li et al., 2021, eqs. 1-3 and 6) on small tensors,
and against mmpretrain's ITCHead (same inputs, queue and temperature)."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models.heads import ITCHead as MMPretrainITCHead
from mmpretrain.structures import DataSample

from mmext.models.losses import CLIPLoss, ITCLoss


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def albef_reference(img,
                    txt,
                    img_m,
                    txt_m,
                    temp,
                    queue_img=None,
                    queue_txt=None,
                    idx=None,
                    queue_idx=None,
                    alpha=0.0):
    """ALBEF's ITC written out: keys [momentum batch ; queue], targets hard / idx / soft."""
    n = img.shape[0]
    # ALBEF normalises the projections g_v, g_w and their momentum copies
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    img_m, txt_m = F.normalize(img_m, dim=-1), F.normalize(txt_m, dim=-1)
    txt_all = txt_m if queue_txt is None else torch.cat([txt_m, queue_txt])
    img_all = img_m if queue_img is None else torch.cat([img_m, queue_img])
    if idx is None:
        hard = torch.zeros(n, txt_all.shape[0])
        hard[:, :n] = torch.eye(n)
    else:
        ids_all = idx if queue_idx is None else torch.cat([idx, queue_idx])
        pos = (idx.view(-1, 1) == ids_all.view(1, -1)).float()
        hard = pos / pos.sum(1, keepdim=True)
    s_i2t, s_t2i = img @ txt_all.t() / temp, txt @ img_all.t() / temp
    with torch.no_grad():  # pseudo-targets are constants (eq. 6)
        y_i2t = alpha * F.softmax(img_m @ txt_all.t() / temp, 1) + (1 - alpha) * hard
        y_t2i = alpha * F.softmax(txt_m @ img_all.t() / temp, 1) + (1 - alpha) * hard
    l_i2t = -(F.log_softmax(s_i2t, 1) * y_i2t).sum(1).mean()
    l_t2i = -(F.log_softmax(s_t2i, 1) * y_t2i).sum(1).mean()
    return (l_i2t + l_t2i) / 2


def _inputs(n=5, d=8):
    g = torch.Generator().manual_seed(1)
    img = torch.randn(n, d, generator=g).requires_grad_()  # raw projections
    txt = torch.randn(n, d, generator=g).requires_grad_()
    return img, txt, _unit(n, d, seed=3), _unit(n, d, seed=4)


def _check_against(ref_fn, loss_fn, img, txt, *args, **kwargs):
    loss = loss_fn(img, txt, *args, **kwargs)
    g_ours = torch.autograd.grad(loss, [img, txt, loss_fn.temp])
    temp = loss_fn.temp.detach().clone().requires_grad_()
    ref = ref_fn(temp)
    g_ref = torch.autograd.grad(ref, [img, txt, temp])
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_hard_targets_no_queue():
    img, txt, img_m, txt_m = _inputs()
    loss_fn = ITCLoss(8, use_distill=False)
    _check_against(lambda t: albef_reference(img, txt, img_m, txt_m, t), loss_fn, img, txt, img_m,
                   txt_m)


def _filled(loss_fn, k, d=8, ids=None, seed=10):
    qi, qt = _unit(k, d, seed=seed), _unit(k, d, seed=seed + 1)
    qidx = ids if ids is not None else torch.full((k, ), -1)
    loss_fn.queue.enqueue(dict(image=qi, text=qt), qidx)
    return qi, qt, qidx


def test_soft_targets_with_queue():
    img, txt, img_m, txt_m = _inputs()
    loss_fn = ITCLoss(8, queue_size=6, use_distill=True, alpha=0.4)
    qi, qt, _ = _filled(loss_fn, 6)
    _check_against(lambda t: albef_reference(img, txt, img_m, txt_m, t, qi, qt, alpha=0.4), loss_fn,
                   img, txt, img_m, txt_m)


def test_idx_targets_with_queue_and_soft():
    img, txt, img_m, txt_m = _inputs()
    idx = torch.tensor([3, 1, 3, 0, 7])  # captions 0 and 2 describe the same image
    qidx = torch.tensor([7, 9, 3, 2])  # ... and the queue holds older captions of 3 and 7
    loss_fn = ITCLoss(8, queue_size=4, use_distill=True, alpha=0.3)
    qi, qt, _ = _filled(loss_fn, 4, ids=qidx)
    _check_against(
        lambda t: albef_reference(img, txt, img_m, txt_m, t, qi, qt, idx, qidx, alpha=0.3),
        loss_fn,
        img,
        txt,
        img_m,
        txt_m,
        idx=idx)


def test_partly_filled_queue_uses_only_written_slots():
    img, txt, img_m, txt_m = _inputs()
    loss_fn = ITCLoss(8, queue_size=10, use_distill=False)
    qi, qt, _ = _filled(loss_fn, 3)
    _check_against(lambda t: albef_reference(img, txt, img_m, txt_m, t, qi, qt), loss_fn, img, txt,
                   img_m, txt_m)


def test_enqueue_after_loss_and_wrap_around():
    loss_fn = ITCLoss(4, queue_size=5, use_distill=False)
    ring = [None] * 5
    ptr = 0
    for step, n in enumerate([3, 3, 2, 7]):  # sizes unrelated to the queue size; 7 > 5
        img, txt, img_m, txt_m = (_unit(n, 4, seed=10 * step + k) for k in range(4))
        idx = torch.arange(n) + 100 * step
        loss_fn(img, txt, img_m, txt_m, idx=idx)
        for j in range(n):
            ring[(ptr + j) % 5] = (txt_m[j], int(idx[j]))
        ptr = (ptr + n) % 5
        filled = [r for r in ring if r is not None]
        assert len(loss_fn.queue) == len(filled)
        assert int(loss_fn.queue.ptr) == ptr
        for slot, entry in enumerate(ring):
            if entry is None:
                continue
            feat, i = entry
            torch.testing.assert_close(loss_fn.queue.text_queue[slot], feat)
            assert int(loss_fn.queue.idx_queue[slot]) == i


def test_loss_uses_queue_state_before_enqueue():
    img, txt, img_m, txt_m = _inputs()
    loss_fn = ITCLoss(8, queue_size=10, use_distill=False)
    qi, qt, _ = _filled(loss_fn, 2)
    loss = loss_fn(img, txt, img_m, txt_m)
    ref = albef_reference(img, txt, img_m, txt_m, loss_fn.temp.detach(), qi, qt)
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    assert len(loss_fn.queue) == 2 + img.shape[0]
    torch.testing.assert_close(loss_fn.queue.get('text')[2:], txt_m)


def test_eval_mode_does_not_enqueue():
    img, txt, img_m, txt_m = _inputs()
    loss_fn = ITCLoss(8, queue_size=6).eval()
    loss_fn(img, txt, img_m, txt_m)
    assert len(loss_fn.queue) == 0


def test_temperature_init_clamp_and_gradient():
    loss_fn = ITCLoss(8, use_distill=False)
    assert loss_fn.temp.item() == pytest.approx(0.07)
    img, txt, img_m, txt_m = _inputs()
    with torch.no_grad():
        loss_fn.temp.fill_(3.0)
    loss_fn(img, txt, img_m, txt_m).backward()
    assert loss_fn.temp.item() == pytest.approx(0.5)
    assert loss_fn.temp.grad is not None and loss_fn.temp.grad.abs() > 0
    with torch.no_grad():
        loss_fn.temp.fill_(1e-6)
    loss_fn(img, txt, img_m, txt_m)
    assert loss_fn.temp.item() == pytest.approx(0.001)


def test_online_keys_without_momentum_equal_albef_with_keys_online():
    img, txt, _, _ = _inputs()
    loss_fn = ITCLoss(8, use_distill=False)
    _check_against(lambda t: albef_reference(img, txt, img, txt, t), loss_fn, img, txt)


def test_alpha_zero_equals_hard_targets():
    img, txt, img_m, txt_m = _inputs()
    soft0 = ITCLoss(8, use_distill=True, alpha=0.0)(img, txt, img_m, txt_m)
    hard = ITCLoss(8, use_distill=False)(img, txt, img_m, txt_m)
    torch.testing.assert_close(soft0, hard)


@pytest.mark.parametrize('bad,match', [
    (dict(image_feat=torch.zeros(5, 7)), 'image_feat must have shape'),
    (dict(text_feat=torch.full((5, 8), float('nan'))), 'NaN'),
    (dict(idx=torch.tensor([0, 1, -1, 2, 3])), 'non-negative'),
    (dict(idx=torch.tensor([0, 1])), 'idx must have 5'),
    (dict(image_feat_m=None), 'both image_feat_m and text_feat_m'),
])
def test_bad_input_raises(bad, match):
    img, txt, img_m, txt_m = _inputs()
    kwargs = dict(image_feat=img, text_feat=txt, image_feat_m=img_m, text_feat_m=txt_m)
    kwargs.update(bad)
    with pytest.raises(ValueError, match=match):
        ITCLoss(8, use_distill=False)(**kwargs)


def test_distill_without_momentum_raises():
    img, txt, _, _ = _inputs()
    with pytest.raises(ValueError, match='use_distill=True needs'):
        ITCLoss(8, use_distill=True)(img, txt)


def test_bad_config_raises():
    with pytest.raises(ValueError, match='queue_size'):
        ITCLoss(8, queue_size=-1)
    with pytest.raises(ValueError, match='temperature'):
        ITCLoss(8, temperature=0.9)
    with pytest.raises(ValueError, match='alpha'):
        ITCLoss(8, alpha=1.5)


def _samples(ids):
    return [DataSample(image_id=int(i)) for i in ids]


def test_parity_with_mmpretrain_itchead_distill_on():
    """Same queue, temperature and inputs: loss, gradients and the queue after enqueue match
    mmpretrain's ITCHead (queue size a multiple of the batch, where theirs works)."""
    torch.manual_seed(0)
    n, d, k = 4, 8, 8
    theirs = MMPretrainITCHead(embed_dim=d, queue_size=k, alpha=0.4)
    ours = ITCLoss(d, queue_size=k, use_distill=True, alpha=0.4)
    ours.queue.enqueue(
        dict(image=theirs.image_queue.t().clone(), text=theirs.text_queue.t().clone()),
        theirs.idx_queue[0].clone())
    theirs.idx_queue[0, :3] = torch.tensor([5, 1, 5])  # some queued positives, in both
    ours.queue.idx_queue[:3] = torch.tensor([5, 1, 5])
    img, txt, img_m, txt_m = _inputs(n, d)
    ids = [5, 2, 1, 2]
    # BlipRetrieval hands the heads normalised features; gradients are taken w.r.t. the raw ones
    feats = ([F.normalize(img, dim=-1), F.normalize(txt, dim=-1), img_m, txt_m], )
    l_theirs = theirs.loss(feats, _samples(ids))['itc_loss']
    g_theirs = torch.autograd.grad(l_theirs, [img, txt, theirs.temp], retain_graph=True)
    l_ours = ours.loss(feats, _samples(ids))['itc_loss']
    g_ours = torch.autograd.grad(l_ours, [img, txt, ours.temp])
    torch.testing.assert_close(l_ours, l_theirs, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # both wrote the momentum batch at slot 0..n-1
    torch.testing.assert_close(ours.queue.image_queue, theirs.image_queue.t())
    torch.testing.assert_close(ours.queue.text_queue, theirs.text_queue.t())
    assert ours.queue.idx_queue.tolist() == theirs.idx_queue[0].tolist()


def test_distill_off_works_where_mmpretrain_itchead_fails():
    img, txt, img_m, txt_m = _inputs(4, 8)
    feats = ([F.normalize(img, dim=-1), F.normalize(txt, dim=-1), img_m, txt_m], )
    theirs = MMPretrainITCHead(embed_dim=8, use_distill=False)
    with pytest.raises(AttributeError):  # it never created its queues
        theirs.loss(feats, _samples([0, 1, 2, 3]))
    ours = ITCLoss(8, queue_size=16, use_distill=False)
    loss = ours.loss(feats, _samples([0, 1, 2, 3]))['itc_loss']
    ref = albef_reference(img, txt, img_m, txt_m, ours.temp.detach(), idx=torch.arange(4))
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)


def test_queue_not_multiple_of_batch_where_mmpretrain_asserts():
    img, txt, img_m, txt_m = _inputs(3, 8)
    feats = ([F.normalize(img, dim=-1), F.normalize(txt, dim=-1), img_m, txt_m], )
    theirs = MMPretrainITCHead(embed_dim=8, queue_size=8)
    with pytest.raises(AssertionError):
        theirs.loss(feats, _samples([0, 1, 2]))
    ours = ITCLoss(8, queue_size=8)
    for _ in range(4):  # 12 writes into 8 slots
        ours.loss(feats, _samples([0, 1, 2]))
    assert len(ours.queue) == 8 and int(ours.queue.ptr) == 12 % 8


@pytest.mark.cuda
def test_cuda_matches_cpu():
    """ITCLoss (soft targets, idx, queue) and CLIPLoss on CUDA give the CPU loss and gradients."""
    img, txt, img_m, txt_m = _inputs()
    idx = torch.tensor([3, 1, 3, 0, 7])
    for make in (lambda: ITCLoss(8, queue_size=7, alpha=0.4), lambda: CLIPLoss()):
        results = []
        for device in ('cpu', 'cuda'):
            loss_fn = make().to(device)
            leaves = [t.detach().to(device).requires_grad_() for t in (img, txt)]
            for _ in range(2):  # the second call sees a partly filled queue
                if isinstance(loss_fn, ITCLoss):
                    loss = loss_fn(*leaves, img_m.to(device), txt_m.to(device), idx=idx.to(device))
                else:
                    loss = loss_fn(*leaves)
            grads = torch.autograd.grad(loss, leaves)
            results.append([loss.cpu()] + [g.cpu() for g in grads])
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
