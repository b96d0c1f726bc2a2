"""SASRec (mmext.models.recommenders.sasrec): masking, losses by hand, errors, a short training run.

Everything runs on random weights and synthetic sequences; the end-to-end test writes a small
RecBole atomic file whose users walk the item ring (next = previous + 1, with noise), trains two
epochs through mmengine's Runner and must beat the popularity ranking on the held-out items.
"""
import math

import numpy as np
import pytest
import torch
from mmengine import DefaultScope

from mmext.models.recommenders import SASRec
from mmext.models.recommenders import sasrec as mmext_sasrec
from mmext.registry import MODELS

N_ITEMS, L, D = 30, 8, 16


def make_model(**kwargs):
    torch.manual_seed(0)
    cfg = dict(num_items=N_ITEMS, max_len=L, embed_dims=D, num_blocks=2, num_heads=2, dropout=0.1)
    cfg.update(kwargs)
    return SASRec(**cfg).eval()


def random_seqs(batch=4, seed=0, min_len=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, N_ITEMS + 1, (batch, L), generator=g)
    for b in range(batch):  # left padding of random length
        n = int(torch.randint(min_len, L + 1, (1, ), generator=g))
        seq[b, :L - n] = 0
    return seq


def test_registered_and_builds_from_config():
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(dict(type='SASRec', num_items=N_ITEMS, max_len=L, embed_dims=D))
    assert isinstance(model, SASRec)
    assert model.item_embedding.weight.shape == (N_ITEMS + 1, D)
    assert torch.all(model.item_embedding.weight[0] == 0)


@pytest.mark.parametrize('norm', ['pre', 'query_only', 'post'])
def test_causal_future_items_do_not_change_earlier_outputs(norm):
    model = make_model(norm=norm)
    seq = random_seqs(batch=3, min_len=L)  # full rows: every position valid
    with torch.no_grad():
        base = model.encode(seq)
        for t in range(1, L):
            changed = seq.clone()
            changed[:, t:] = (changed[:, t:] % N_ITEMS) + 1  # different items from t on
            out = model.encode(changed)
            torch.testing.assert_close(out[:, :t], base[:, :t], atol=1e-6, rtol=0)
            assert not torch.allclose(out[:, t], base[:, t])


@pytest.mark.parametrize('norm', ['pre', 'query_only', 'post'])
def test_padding_is_masked_everywhere(norm):
    model = make_model(norm=norm)
    seq = random_seqs(batch=5, seed=1)
    with torch.no_grad():
        out = model.encode(seq)
        # padded positions are exactly zero and never NaN (a padded query sees no real key)
        assert torch.isfinite(out).all()
        assert torch.all(out[seq == 0] == 0)
        # each row alone equals the row in the batch (no leak across rows)
        for b in range(seq.size(0)):
            torch.testing.assert_close(model.encode(seq[b:b + 1])[0], out[b], atol=1e-6, rtol=0)
        # fewer leading pads (a shorter window, right-aligned) give the same valid outputs
        n = int((seq[0] > 0).sum())
        short = model.encode(seq[:1, L - n:])
        torch.testing.assert_close(short[0], out[0, L - n:], atol=1e-6, rtol=0)
    # the padding embedding gets no gradient and padded positions no loss
    model.train()
    target = torch.where(seq > 0, (seq % N_ITEMS) + 1, torch.zeros_like(seq))
    model.zero_grad()
    model(dict(seq=seq, target=target), mode='loss')['loss'].backward()
    assert torch.all(model.item_embedding.weight.grad[0] == 0)


def test_padding_keys_do_not_influence_valid_positions():
    model = make_model()
    seq = random_seqs(batch=1, seed=2, min_len=3)
    seq[0, :3] = 0
    with torch.no_grad():
        base = model.encode(seq)
        # perturb what a padded slot would contribute if it were attended: its position vector
        model.pos_embedding.weight[:3] += 5.0
        out = model.encode(seq)
    torch.testing.assert_close(out[0, 3:], base[0, 3:], atol=1e-6, rtol=0)


def _hand_hidden(model, seq):
    with torch.no_grad():
        return model.encode(seq)


def _hand_post_ln_encode(model, seq):
    """RecBole's (BERT) layout written out with plain tensor ops: input LayerNorm of item +
    position embeddings, then per block LN(x + MHA(x)) and LN(x + FFN(x)), no final norm."""

    def ln(x, mod):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu)**2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + mod.eps) * mod.weight + mod.bias

    length, d = seq.size(1), model.embed_dims
    valid = seq > 0
    pos = model.pos_embedding.weight[L - length:]
    x = ln(model.item_embedding.weight[seq] + pos, model.input_norm)
    x = x * valid[..., None]
    for blk in model.blocks:
        h = blk.num_heads
        q, k, v = (x @ blk.qkv.weight.t() + blk.qkv.bias).chunk(3, dim=-1)
        q, k, v = (t.view(*x.shape[:2], h, d // h).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
        allowed = torch.ones(length, length, dtype=torch.bool).tril() & valid[:, None, None, :]
        allowed = allowed | torch.eye(length, dtype=torch.bool)
        attn = scores.masked_fill(~allowed, float('-inf')).softmax(-1) @ v
        attn = attn.transpose(1, 2).reshape(*x.shape) @ blk.out_proj.weight.t() + \
            blk.out_proj.bias
        x = ln(x + attn, blk.attn_norm)
        lin1, lin2 = blk.ffn[0], blk.ffn[3]
        ffn = torch.nn.functional.gelu(x @ lin1.weight.t() + lin1.bias) @ lin2.weight.t() + \
            lin2.bias
        x = ln(x + ffn, blk.ffn_norm) * valid[..., None]
    return x


def test_post_ln_layout_matches_hand_computation():
    model = make_model(norm='post', act='gelu', ffn_dims=24, init_std=0.3)
    assert not hasattr(model, 'final_norm') and hasattr(model, 'input_norm')
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    seq = random_seqs(batch=4, seed=11)
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode(seq), _hand_post_ln_encode(model, seq), atol=1e-5, rtol=0)


@pytest.mark.parametrize('norm', ['pre', 'post'])
def test_position_origin_left_is_right_with_shifted_positions(norm):
    """``'left'`` gives the oldest item of a short history position 0 (RecBole); ``'right'``
    gives the newest ``max_len - 1`` (official code). Moving the learned position rows so
    that ``'right'`` reads what ``'left'`` reads must give the same outputs."""
    left = make_model(norm=norm, position_origin='left')
    seq = torch.zeros(1, L, dtype=torch.long)
    n = 3
    seq[0, L - n:] = torch.tensor([4, 9, 2])
    right = make_model(norm=norm, position_origin='right')
    with torch.no_grad():
        right.pos_embedding.weight[L - n:] = left.pos_embedding.weight[:n]
        torch.testing.assert_close(right.encode(seq), left.encode(seq), atol=1e-6, rtol=0)
        full = random_seqs(batch=3, seed=5, min_len=L)  # full histories: both conventions agree
        torch.testing.assert_close(
            make_model(norm=norm, position_origin='right').encode(full),
            left.encode(full),
            atol=0,
            rtol=0)
        assert not torch.allclose(make_model(norm=norm).encode(seq), left.encode(seq))


@pytest.mark.parametrize('norm', ['pre', 'query_only', 'post'])
def test_newest_positions_only_in_the_last_block_is_exact(norm):
    """``encode(seq, first)`` computes positions before ``first`` only as keys in the last
    block; the loss uses it for windows whose targets are the newest positions. Outputs,
    the loss and every gradient must equal those of the full computation."""
    model = make_model(norm=norm, loss='ce', init_std=0.3)
    seq = random_seqs(batch=5, seed=21)
    with torch.no_grad():
        full = model.encode(seq)
        for first in (1, L - 3, L - 1):
            torch.testing.assert_close(model.encode(seq, first), full[:, first:], atol=1e-6, rtol=0)
    target = torch.zeros_like(seq)
    target[:, L - 3:] = torch.randint(1, N_ITEMS + 1, (5, 3))
    target[seq == 0] = 0
    target[0, -1] = 4  # some row keeps a target even if its history is short
    seq[0, -1] = 7
    loss = model(dict(seq=seq, target=target), mode='loss')['loss']
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    hidden = model.encode(seq)[target > 0]
    ref = torch.nn.functional.cross_entropy(hidden @ model.item_embedding.weight[1:].t(),
                                            target[target > 0] - 1)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=0)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        if r is None:
            assert g is None or not g.any(), name
        else:
            torch.testing.assert_close(g, r, atol=1e-6, rtol=0, msg=name)
    with pytest.raises(ValueError, match='first=8'):
        model.encode(seq, L)


@pytest.mark.parametrize('norm', ['pre', 'query_only', 'post'])
@pytest.mark.parametrize('origin', ['right', 'left'])
def test_packed_length_groups_equal_the_padded_computation(norm, origin):
    """``encode(seq)`` runs the blocks on the packed non-padded positions, attention per length
    group (PackedLayout); ``encode(seq, 1)`` on the padded batch.  With histories of 1..40
    items in a 40-wide batch (several groups, one row empty, one all-padding leading column),
    outputs and gradients agree."""
    length = 40
    model = SASRec(
        num_items=N_ITEMS,
        max_len=48,
        embed_dims=D,
        num_blocks=2,
        num_heads=2,
        dropout=0.,
        norm=norm,
        position_origin=origin,
        init_std=0.3)
    g = torch.Generator().manual_seed(5)
    sizes = [1, 3, 8, 9, 16, 17, 33, 39, 0, 5, 12]
    seq = torch.zeros(len(sizes), length, dtype=torch.long)
    for row, n in enumerate(sizes):
        if n:
            seq[row, length - n:] = torch.randint(1, N_ITEMS + 1, (n, ), generator=g)
    layout_groups = mmext_sasrec.PackedLayout(
        seq[:, 1:] > 0, torch.ones(len(sizes), 1, length - 1, length - 1, dtype=torch.bool)).groups
    assert [w for *_, w, _ in layout_groups] == [8, 16, 17, 39]  # longest span per group
    packed = model.encode(seq)
    padded = model.encode(seq, 1)  # first > 0: the padded path
    torch.testing.assert_close(packed[:, 1:], padded, atol=1e-5, rtol=0)
    assert torch.all(packed[seq == 0] == 0)
    weights = torch.randn(packed[:, 1:].shape, generator=g)
    grads = torch.autograd.grad((packed[:, 1:] * weights).sum(), list(model.parameters()))
    ref = torch.autograd.grad((padded * weights).sum(), list(model.parameters()))
    for (name, _), a, b in zip(model.named_parameters(), grads, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5, msg=name)


def test_bit_dropout_keeps_the_expected_fraction():
    """BitDropout: keep probability 1 - p (p rounded to 1/65536), kept values scaled by
    1 / (1 - p), identity in eval mode."""
    torch.manual_seed(0)
    x = torch.ones(200_000)
    for p in (0.1, 0.5, 0.8):
        drop = mmext_sasrec.BitDropout(p)
        out = drop(x)
        kept = out != 0
        assert abs(kept.float().mean().item() - (1 - p)) < 4e-3  # ~4 standard errors
        torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
        assert not torch.equal(out, drop(x))  # redrawn every call
        assert drop.eval()(x) is x


def test_ffn_dropout_is_separate_from_dropout():
    official = make_model(dropout=0.3)
    assert official.blocks[0].ffn[2].p == 0.3  # None: the official code's inner dropout
    recbole = make_model(dropout=0.3, ffn_dropout=0.0).train()
    assert recbole.blocks[0].ffn[2].p == 0.0 and recbole.blocks[0].drop.p == 0.3
    # with the sub-layer dropouts at 0, ffn_dropout=0 makes training-mode outputs deterministic
    det = make_model(dropout=0.0, attn_dropout=0.0, ffn_dropout=0.0).train()
    seq = random_seqs(batch=2, seed=12)
    torch.testing.assert_close(det.encode(seq), det.encode(seq), atol=0, rtol=0)
    noisy = make_model(dropout=0.0, attn_dropout=0.0, ffn_dropout=0.5).train()
    assert not torch.allclose(noisy.encode(seq), noisy.encode(seq))


def test_bce_loss_matches_hand_computation():
    model = make_model(dropout=0.0, loss='bce')
    seq = random_seqs(batch=3, seed=3)
    target = torch.where(seq > 0, (seq % N_ITEMS) + 1, torch.zeros_like(seq))
    target[0, -1] = 0  # a valid input position without a target carries no loss either
    g = torch.Generator().manual_seed(4)
    neg = torch.randint(1, N_ITEMS + 1, (3, L, 2), generator=g)
    loss = model.loss(dict(seq=seq, target=target, negatives=neg))['loss']
    h = _hand_hidden(model, seq)
    emb = model.item_embedding.weight.detach()
    terms = []
    for b in range(3):
        for t in range(L):
            if target[b, t] == 0:
                continue
            pos = torch.dot(h[b, t], emb[target[b, t]])
            term = -torch.log(torch.sigmoid(pos))
            for k in range(2):
                term = term - torch.log(1 - torch.sigmoid(torch.dot(h[b, t], emb[neg[b, t, k]])))
            terms.append(term)
    torch.testing.assert_close(loss.detach(), torch.stack(terms).mean(), atol=1e-5, rtol=0)


def test_ce_loss_matches_hand_computation():
    model = make_model(dropout=0.0, loss='ce')
    seq = random_seqs(batch=3, seed=5)
    target = torch.where(seq > 0, (seq % N_ITEMS) + 1, torch.zeros_like(seq))
    loss = model.loss(dict(seq=seq, target=target))['loss']
    h = _hand_hidden(model, seq)
    emb = model.item_embedding.weight.detach()
    terms = []
    for b in range(3):
        for t in range(L):
            if target[b, t] == 0:
                continue
            logits = emb[1:] @ h[b, t]  # items 1..n; padding is not a class
            terms.append(torch.logsumexp(logits, 0) - logits[target[b, t] - 1])
    torch.testing.assert_close(loss.detach(), torch.stack(terms).mean(), atol=1e-5, rtol=0)


def test_bce_without_negatives_samples_non_targets():
    model = make_model(loss='bce', num_negatives=3)
    torch.manual_seed(0)
    target = torch.randint(1, N_ITEMS + 1, (50, ))
    neg = model._sample_negatives(target, 3)
    assert neg.shape == (50, 3)
    assert (neg != target[:, None]).all() and neg.min() >= 1 and neg.max() <= N_ITEMS
    seq = random_seqs(batch=2)
    loss = model.train().loss(dict(seq=seq, target=torch.where(seq > 0, seq, 0)))['loss']
    assert torch.isfinite(loss)


def test_predict_full_and_sampled():
    model = make_model()
    seq = random_seqs(batch=3, seed=6)
    target = torch.tensor([3, 7, 11])
    seen = [torch.tensor([1, 2]), torch.tensor([], dtype=torch.long), torch.tensor([5])]
    out = model(dict(seq=seq, target=target, seen=seen), mode='predict')
    h = model.encode(seq)[:, -1]
    assert len(out) == 3
    for i, o in enumerate(out):
        assert o['scores'].shape == (N_ITEMS + 1, )
        assert o['target'] == int(target[i])
        assert torch.equal(o['exclude'], seen[i])
        assert torch.equal(o['invalid'], torch.tensor([0]))  # padding is never ranked
        torch.testing.assert_close(o['scores'], model.item_embedding.weight.detach() @ h[i])
    sampled = make_model(eval_mode='sampled')
    neg = torch.randint(1, N_ITEMS + 1, (3, 5))
    out = sampled(dict(seq=seq, target=target, negatives=neg), mode='predict')
    for i, o in enumerate(out):
        assert o['scores'].shape == (6, ) and o['target'] == 0
        emb = sampled.item_embedding.weight.detach()
        torch.testing.assert_close(o['scores'][1:], emb[neg[i]] @ h[i])
    with pytest.raises(ValueError, match='needs negatives'):
        sampled(dict(seq=seq, target=target), mode='predict')


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_items=0), 'num_items'),
    (dict(embed_dims=10, num_heads=3), 'num_heads=3'),
    (dict(norm='sandwich'), "norm='sandwich'"),
    (dict(ffn_dropout=-0.1), 'ffn_dropout'),
    (dict(loss='bpr'), "loss='bpr'"),
    (dict(eval_mode='uni100'), 'eval_mode'),
    (dict(dropout=1.0), 'dropout'),
    (dict(act='swish'), 'act'),
    (dict(position_origin='middle'), 'position_origin'),
])
def test_bad_config_raises(kwargs, match):
    cfg = dict(num_items=N_ITEMS, max_len=L, embed_dims=D)
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SASRec(**cfg)


def test_deprecated_and_foreign_options():
    """``num_train_negatives`` (the former name of ``num_negatives``) still works with a
    DeprecationWarning; RecBole's ``loss_type``, or both names at once, raise naming the option
    to use."""
    with pytest.warns(
            DeprecationWarning, match="'num_train_negatives' is deprecated, use "
            "'num_negatives'"):
        model = make_model(num_train_negatives=3)
    assert model.num_negatives == 3
    with pytest.raises(TypeError, match="no option 'loss_type'; use 'loss'"):
        make_model(loss_type='CE')
    with pytest.raises(ValueError, match='keep only num_negatives'):
        make_model(num_train_negatives=3, num_negatives=2)
    with pytest.raises(TypeError, match='unexpected options'):
        make_model(bogus=1)


def test_item_count_from_dataset_metainfo():
    """``dataset=`` gives ``num_items`` through ``metainfo['num_items']`` (as for GRU4Rec)."""
    dataset = type('D', (), dict(metainfo=dict(num_items=N_ITEMS)))()
    assert make_model(num_items=None, dataset=dataset).num_items == N_ITEMS
    with pytest.raises(ValueError, match='drop num_items'):
        make_model(num_items=N_ITEMS + 1, dataset=dataset)


def test_bad_inputs_raise():
    model = make_model()
    with pytest.raises(ValueError, match='exceeds max_len'):
        model.encode(torch.ones(1, L + 1, dtype=torch.long))
    with pytest.raises(ValueError, match='item ids must be in'):
        model.encode(torch.full((1, L), N_ITEMS + 1))
    with pytest.raises(ValueError, match=r'seq must be \[batch, length\]'):
        model.encode(torch.ones(L, dtype=torch.long))
    with pytest.raises(ValueError, match='target'):
        model(dict(seq=torch.ones(2, L, dtype=torch.long)), mode='loss')
    with pytest.raises(ValueError, match='no position with a target'):
        model(
            dict(
                seq=torch.ones(2, L, dtype=torch.long), target=torch.zeros(2, L, dtype=torch.long)),
            mode='loss')
    with pytest.raises(ValueError, match="mode='bogus'"):
        model(dict(seq=torch.ones(2, L, dtype=torch.long)), mode='bogus')
    with pytest.raises(ValueError, match='inputs must be a dict'):
        model(torch.ones(2, L, dtype=torch.long), mode='tensor')


def _ring_file(path, num_users=150, num_items=40, length=30, noise=0.1, seed=0):
    """Users walk the item ring (next = previous + 1 mod n) with some random jumps."""
    rng = np.random.default_rng(seed)
    lines = ['user_id:token\titem_id:token\ttimestamp:float']
    for u in range(num_users):
        item = int(rng.integers(num_items))
        for t in range(length):
            lines.append(f'u{u}\ti{item}\t{1000 * u + t}')
            item = int(rng.integers(num_items)) if rng.random() < noise else (item + 1) % num_items
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.mark.parametrize('loss', ['ce', 'bce'])
def test_two_epochs_beat_popularity(tmp_path, loss):
    from mmengine.runner import Runner

    from mmext.datasets.recsys import LeaveOneOutSequenceDataset
    from mmext.evaluation.metrics import RankingMetric

    ann = _ring_file(tmp_path / 'ring.inter')
    data = dict(type='LeaveOneOutSequenceDataset', ann_file=ann, max_len=12)
    loader = dict(batch_size=32, num_workers=0, collate_fn=dict(type='mmext.sequence_collate'))
    train_set = LeaveOneOutSequenceDataset(ann_file=ann, max_len=12, split='train')
    num_items = train_set.metainfo['num_items']
    metric = dict(type='RankingMetric', topk=[10], metrics=['hr', 'ndcg'], exclude_seen=False)
    with DefaultScope.overwrite_default_scope('mmext'):  # restores the scope the runner sets
        ours = _train_and_test(Runner, tmp_path, loss, data, loader, num_items, metric)
        assert ours.pop('item_map') == train_set.metainfo['item_map']

    # popularity baseline: training counts as the score of every user
    test_set = LeaveOneOutSequenceDataset(ann_file=ann, max_len=12, split='test')
    counts = torch.zeros(num_items + 1)
    for i in range(len(train_set)):
        s = train_set[i]
        ids = torch.cat([s['seq'][s['seq'] > 0], s['target'][-1:]])
        counts += torch.bincount(ids, minlength=num_items + 1).float()
    pop = RankingMetric(topk=[10], metrics=['hr', 'ndcg'], exclude_seen=False)
    pop.process(None, [
        dict(scores=counts, target=test_set[i]['target'], invalid=torch.tensor([0]))
        for i in range(len(test_set))
    ])
    baseline = pop.compute_metrics(pop.results)
    assert ours['hr@10'] > baseline['hr@10'] + 0.2, (ours, baseline)
    assert ours['ndcg@10'] > baseline['ndcg@10'], (ours, baseline)
    assert math.isfinite(ours['ndcg@10'])


def _train_and_test(Runner, tmp_path, loss, data, loader, num_items, metric):
    runner = Runner(
        model=dict(
            type='SASRec',
            num_items=num_items,
            max_len=12,
            embed_dims=32,
            num_heads=1,
            dropout=0.1,
            loss=loss),
        work_dir=str(tmp_path / 'work'),
        train_dataloader=dict(
            dataset=dict(
                data,
                split='train',
                train_windows='all',
                num_train_negatives=1 if loss == 'bce' else 0),
            sampler=dict(type='DefaultSampler', shuffle=True),
            **loader),
        test_dataloader=dict(
            dataset=dict(data, split='test'),
            sampler=dict(type='DefaultSampler', shuffle=False),
            **loader),
        test_evaluator=[metric],  # a list: a dict with a 'metrics' key is read as an Evaluator
        train_cfg=dict(by_epoch=True, max_epochs=2),
        test_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=1e-2)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=100),
            logger=dict(type='LoggerHook', interval=100)),
        default_scope='mmext',
        randomness=dict(seed=0),
        log_level='WARNING')
    runner.train()
    result = dict(runner.test())
    result['item_map'] = runner.train_dataloader.dataset.metainfo['item_map']
    return result


def test_loss_gradient_flows_to_every_parameter():
    model = make_model(loss='ce').train()
    seq = random_seqs(batch=4, seed=7, min_len=L)
    model(dict(seq=seq, target=(seq % N_ITEMS) + 1), mode='loss')['loss'].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
