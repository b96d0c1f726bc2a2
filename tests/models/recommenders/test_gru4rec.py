"""GRU4Rec: one test per flaw of Hidasi & Czapp (RecSys 2023), loss formulas by hand, training."""
import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine import DefaultScope
from mmengine.config import Config

from mmext.engine.optimizers.adagrad_momentum import AdagradM
from mmext.evaluation.metrics.ranking import RankingMetric
from mmext.models.recommenders.gru4rec import GRU4Rec
from mmext.models.recommenders.gru4rec_losses import (bpr_max_loss, cross_entropy_logq,
                                                      negative_softmax, top1_max_loss)
from mmext.registry import MODELS, RUNNERS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def model(**kw):
    torch.manual_seed(0)
    args = dict(num_items=12, hidden_sizes=(8, ), num_negatives=5)
    args.update(kw)
    return GRU4Rec(**args)


# ----------------------------------------------------------------------------------------------
# Session-parallel state handling (flaws: reset masks never cleared; no reset in evaluation).
def toy_sessions():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 7, size=9)
    items = torch.from_numpy(rng.integers(1, 13, size=int(lengths.sum())))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return items, offsets


def session_parallel_outputs(m, items, offsets, batch_size):
    """Run the model over session-parallel batches; returns {input event: output scores}."""
    from mmext.datasets.recsys.session_parallel import session_parallel_schedule
    first = np.zeros(len(items), dtype=bool)
    first[offsets[:-1]] = True
    out = {}
    m.reset_state()
    for row in session_parallel_schedule(offsets, np.arange(len(offsets) - 1), batch_size):
        ev = torch.as_tensor(row)
        valid = ev >= 0
        inputs = torch.where(valid, items[ev.clamp(min=0)], 0)
        reset = valid & torch.from_numpy(first)[ev.clamp(min=0)]
        scores = m(dict(item=inputs, reset=reset, valid=valid), mode='tensor')
        for slot in torch.nonzero(valid).flatten().tolist():
            out[int(row[slot])] = scores[slot].detach()
    return out


def one_session_at_a_time(m, items, offsets):
    out = {}
    for s in range(len(offsets) - 1):
        m.reset_state()  # a fresh zero state for every session
        for e in range(offsets[s], offsets[s + 1] - 1):
            out[e] = m(dict(item=items[e:e + 1]), mode='tensor')[0].detach()
    return out


@pytest.mark.parametrize('training', [False, True])
def test_session_parallel_equals_sessions_run_alone(training):
    """Resets happen exactly at session starts, in training and in evaluation mode: the
    session-parallel outputs equal running every session alone from a zero state.  A reset mask
    that stayed set after the first step, or no reset at boundaries, would break this."""
    items, offsets = toy_sessions()
    m = model(hidden_sizes=(8, 6))  # two layers: every layer's state must be reset
    m.train(training)
    par = session_parallel_outputs(m, items, offsets, batch_size=3)
    alone = one_session_at_a_time(m, items, offsets)
    assert par.keys() == alone.keys()
    for e in par:
        torch.testing.assert_close(par[e], alone[e], atol=1e-6, rtol=0)


def test_state_carries_over_without_reset_and_is_detached():
    m = model()
    m.eval()
    x = torch.tensor([3, 4])
    m.reset_state()
    first = m(dict(item=x, reset=torch.tensor([True, True])), mode='tensor')
    second = m(dict(item=x, reset=torch.tensor([False, True])), mode='tensor')
    # Slot 1 restarted: the same output as the first step; slot 0 continued: a different one.
    torch.testing.assert_close(second[1], first[1])
    assert not torch.allclose(second[0], first[0])
    assert all(not s.requires_grad for s in m._states['eval'])


def test_no_backpropagation_through_time():
    """The gradient of step t's loss equals that of a model fed step t-1's state as a constant."""
    m = model()
    m.train()
    m.num_negatives = 0
    m.reset_state()
    b = dict(
        item=torch.tensor([1, 2, 3]),
        target=torch.tensor([4, 5, 6]),
        reset=torch.ones(3, dtype=torch.bool),
        valid=torch.ones(3, dtype=torch.bool))
    m(b, mode='loss')
    carried = [s.clone() for s in m._states['train']]
    b2 = dict(
        item=torch.tensor([4, 5, 6]),
        target=torch.tensor([7, 8, 9]),
        reset=torch.zeros(3, dtype=torch.bool),
        valid=b['valid'])
    m.zero_grad()
    m(b2, mode='loss')['loss'].backward()
    g = m.layers[0].u_h.grad.clone()
    h = m.layers[0](b2['item'], carried[0])
    m.zero_grad()
    # the default reduction, 'slot_mean': the sum over the 3 busy slots / 3 slots
    (F.cross_entropy(m.score(h, b2['target']), torch.arange(3), reduction='sum') / 3).backward()
    torch.testing.assert_close(g, m.layers[0].u_h.grad)


def test_leave_one_out_groups_score_only_held_out_items(tmp_path):
    """Evaluation in groups of steps (group_steps): every batch scores >= 1 target, only the
    held-out events are scored, each after its full history, with states reset per sequence."""
    from mmext.datasets.recsys.session_dataset import SessionDataset
    from mmext.datasets.recsys.session_parallel import (SessionParallelBatchSampler,
                                                        session_parallel_collate)
    rng = np.random.default_rng(0)
    lines = ['SessionId\tItemId\tTime']
    for u in range(7):
        for t in range(int(rng.integers(3, 12))):
            lines.append(f'u{u}\t{int(rng.integers(1, 9))}\t{t}')
    path = tmp_path / 'seq.tsv'
    path.write_text('\n'.join(lines) + '\n')
    ds = SessionDataset(
        'test',
        data_path=str(path),
        file_format='session',
        min_item_support=1,
        split_mode='leave_one_out')
    m = model(num_items=ds.num_items)
    m.eval()
    seed = type('S', (), dict(seed=0, epoch=0, dataset=ds))()
    sampler = SessionParallelBatchSampler(seed, 3, shuffle=False, group_steps=True)
    outputs = []
    m.reset_state()
    for group in sampler:
        out = m(**session_parallel_collate(ds.__getitems__(group)), mode='predict')
        assert len(out) >= 1
        outputs += out
    assert len(outputs) == len(ds) == ds.num_sessions
    # Reference: each held-out item scored after its whole history alone, from a zero state.
    expected = []
    with torch.no_grad():
        for s in range(ds.num_sessions):
            seq = ds.items[ds.offsets[s]:ds.offsets[s + 1]]
            m.reset_state()
            for e in range(len(seq) - 1):
                scores = m(dict(item=seq[e:e + 1]), mode='tensor')[0]
            expected.append((int(seq[-1]), scores))
    for o in outputs:  # every prediction matches exactly one reference
        hits = [
            i for i, (t, sc) in enumerate(expected)
            if t == o['target'] and torch.allclose(sc, o['scores'], atol=1e-6, rtol=0)
        ]
        assert len(hits) == 1
        expected.pop(hits[0])
    assert not expected


# ----------------------------------------------------------------------------------------------
# Losses vs hand computation (flaws: softmax before CE; BPR-max softmax with the positive or
# averaged instead of summed).
def logits_example():
    torch.manual_seed(3)
    return torch.randn(4, 7, dtype=torch.float64)


def test_cross_entropy_by_hand_no_double_softmax():
    logits = logits_example().requires_grad_()
    log_q = torch.log(torch.rand(7, dtype=torch.float64))
    for c in (0.0, 1.0):
        loss = cross_entropy_logq(logits, log_q, logq=c)
        hand = 0.0
        for i in range(4):
            row = [logits[i, j].item() - c * log_q[j].item() for j in range(7)]
            hand -= row[i] - math.log(sum(math.exp(v) for v in row))
        assert loss.item() == pytest.approx(hand, rel=1e-12)
    loss = cross_entropy_logq(logits)
    loss.backward()
    # d loss / d logits = softmax(logits) - onehot: holds only if the raw logits went in.
    expected = torch.softmax(logits.detach(), 1) - torch.eye(4, 7, dtype=torch.float64)
    torch.testing.assert_close(logits.grad, expected)
    wrong = F.cross_entropy(torch.softmax(logits.detach(), 1), torch.arange(4), reduction='sum')
    assert abs(wrong.item() - loss.item()) > 1e-3
    with pytest.raises(ValueError, match='log_q'):
        cross_entropy_logq(logits, None, logq=1.0)


def hand_bpr_max(logits, bpreg, include_positive=False):
    total = 0.0
    for i in range(logits.shape[0]):
        r = logits[i].tolist()
        js = [j for j in range(len(r)) if include_positive or j != i]
        z = sum(math.exp(r[j]) for j in js)
        s = {j: math.exp(r[j]) / z for j in js}
        total += -math.log(
            sum(s[j] * (1 / (1 + math.exp(-(r[i] - r[j])))) for j in js if j != i) + 1e-24)
        total += bpreg * sum(s[j] * r[j]**2 for j in js if j != i)
    return total


def test_bpr_max_by_hand():
    logits = logits_example()
    loss = bpr_max_loss(logits, bpreg=0.7)
    assert loss.item() == pytest.approx(hand_bpr_max(logits, 0.7), rel=1e-12)
    # Summed over the batch, not averaged; the positive is outside the softmax.
    assert loss.item() == pytest.approx(4 * bpr_max_loss(logits, 0.7, 'mean').item())
    assert abs(loss.item() - hand_bpr_max(logits, 0.7, include_positive=True)) > 1e-3
    w = negative_softmax(logits)
    assert (w.diagonal() == 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(4, dtype=torch.float64))


def test_top1_max_by_hand():
    logits = logits_example()
    hand = 0.0
    for i in range(4):
        r = logits[i].tolist()
        z = sum(math.exp(r[j]) for j in range(7) if j != i)
        for j in range(7):
            if j != i:
                s = math.exp(r[j]) / z
                hand += s * (1 / (1 + math.exp(-(r[j] - r[i]))) + 1 / (1 + math.exp(-r[j]**2)))
    assert top1_max_loss(logits).item() == pytest.approx(hand, rel=1e-12)


def test_model_loss_uses_targets_plus_shared_samples_with_logq(monkeypatch):
    """Flaw 'scoring all items then slicing': the training scores are (B, B + num_negatives)."""
    m = model(logq=1.0, sample_alpha=0.5)
    m.item_counts.copy_(torch.arange(13).float())
    samples = torch.tensor([1, 5, 5, 9, 12])
    monkeypatch.setattr(m, 'sample_negatives', lambda n: samples[:n])
    calls = []
    from mmext.models.recommenders import gru4rec as gru4rec_module
    fused = gru4rec_module.sampled_softmax_ce

    def spy(hidden, weight, *args):
        calls.append((tuple(hidden.shape), tuple(weight.shape)))
        return fused(hidden, weight, *args)

    monkeypatch.setattr(gru4rec_module, 'sampled_softmax_ce', spy)
    inputs, targets = torch.tensor([2, 3, 4]), torch.tensor([6, 7, 8])
    m.reset_state()
    loss = m(
        dict(item=inputs, target=targets, reset=torch.ones(3, dtype=torch.bool)),
        mode='loss')['loss']
    # 3 rows scored against 3 targets + 5 samples: (3, 8) logits, never all 13 items
    assert calls == [((3, 8), (8, 8))]
    # Recompute by hand from the model's pieces.
    m.reset_state()
    hidden = m.step(inputs)
    cand = torch.cat([targets, samples])
    logits = hidden @ m.item_out[cand].T + m.item_bias[cand]
    p = m.item_counts / m.item_counts.sum()
    log_q = torch.cat([p[targets].log(), 0.5 * p[samples].log()])
    hand = F.cross_entropy(logits - log_q, torch.arange(3), reduction='sum')
    torch.testing.assert_close(loss, hand / 3)  # the official: summed, / the batch size


@pytest.mark.parametrize('reduction', ['slot_mean', 'sum', 'mean'])
def test_loss_scaling_with_idle_slots(reduction):
    """'slot_mean' is the official step's scaling: the sum over the busy slots divided by the
    number of slots, also when slots are idle at the end of an epoch."""
    m = model(reduction=reduction, num_negatives=0)
    batch = dict(
        item=torch.tensor([1, 2, 0, 0]),
        target=torch.tensor([3, 4, 0, 0]),
        reset=torch.tensor([True, True, False, False]),
        valid=torch.tensor([True, True, False, False]))
    loss = m(batch, mode='loss')['loss']
    m.reset_state()
    hidden = m.step(batch['item'][:2])
    per_row = F.cross_entropy(
        m.score(hidden, batch['target'][:2]), torch.arange(2), reduction='none')
    expected = dict(slot_mean=per_row.sum() / 4, sum=per_row.sum(), mean=per_row.mean())
    torch.testing.assert_close(loss, expected[reduction])
    with pytest.raises(ValueError, match='reduction must be one of'):
        model(reduction='batch')


def test_sampling_follows_popularity_power():
    m = model(sample_alpha=0.5, num_items=3)
    m.item_counts.copy_(torch.tensor([0., 1., 4., 9.]))
    torch.manual_seed(0)
    s = m.sample_negatives(60000)
    freq = torch.bincount(s, minlength=4).double() / 60000
    assert freq[0] == 0
    torch.testing.assert_close(
        freq[1:], torch.tensor([1 / 6, 2 / 6, 3 / 6], dtype=torch.float64), atol=0.01, rtol=0)


# ----------------------------------------------------------------------------------------------
# Embedding modes, dropout, output contract, optimiser.
@pytest.mark.parametrize('mode,loss', [('none', 'ce'), ('separate', 'bpr-max'),
                                       ('shared', 'top1-max')])
def test_embedding_modes_train(mode, loss):
    m = MODELS.build(
        dict(
            type='mmext.GRU4Rec',
            num_items=12,
            hidden_sizes=(8, ),
            embedding=mode,
            embedding_dim=5,
            loss=loss,
            num_negatives=4,
            elu_param=0.5,
            dropout_p_embed=0.1,
            dropout_p_hidden=0.1))
    assert hasattr(m, 'item_in') == (mode == 'separate')
    first = m.layers[0]
    assert first.one_hot == (mode == 'none')
    m.train()
    out = m(
        dict(
            item=torch.tensor([1, 2]),
            target=torch.tensor([3, 4]),
            reset=torch.tensor([True, True])),
        mode='loss')
    assert torch.isfinite(out['loss'])
    out['loss'].backward()
    if mode == 'shared':  # the output matrix also received the input lookups' gradient
        assert m.item_out.grad[1].abs().sum() > 0 and m.item_out.grad[2].abs().sum() > 0
    assert m.layers[0].w_x.grad.abs().sum() > 0


@pytest.mark.parametrize('mode', ['separate', 'none'])
def test_dropout_only_in_training_and_on_carried_state(mode):
    m = model(
        hidden_sizes=(40, 40),
        dropout_p_hidden=0.5,
        dropout_p_embed=0.5,
        embedding=mode,
        embedding_dim=6)
    batch = dict(item=torch.tensor([1, 2, 3]), reset=torch.ones(3, dtype=torch.bool))
    m.eval()
    assert torch.equal(m(batch, mode='tensor'), m(batch, mode='tensor'))
    m.train()
    torch.manual_seed(1)
    a = m(batch, mode='tensor')
    torch.manual_seed(2)
    b = m(batch, mode='tensor')
    assert not torch.equal(a, b)
    # Official behaviour: the dropped-out output is the carried state (exact zeros, rescaled rest).
    for state in m._states['train']:
        assert (state == 0).float().mean() > 0.25


def test_predict_contract_for_ranking_metric():
    m = model()
    m.eval()
    valid = torch.tensor([True, False, True])
    out = m(
        dict(
            item=torch.tensor([1, 0, 2]), target=torch.tensor([5, 0, 7]), reset=valid, valid=valid),
        mode='predict')
    assert [o['target'] for o in out] == [5, 7]
    assert all(o['scores'].shape == (
        13, ) and o['exclude'].tolist() == [0] and o['invalid'].tolist() == [0] for o in out)
    metric = RankingMetric(topk=(20, ))
    metric.process(None, out)
    assert metric.compute_metrics(metric.results)['recall@20'] == 1.0  # 12 items < 20
    with pytest.raises(ValueError, match='input item ids'):
        m(dict(item=torch.tensor([13])), mode='tensor')
    with pytest.raises(ValueError, match='num_items'):
        GRU4Rec()
    with pytest.raises(ValueError, match=r"needs inputs\['target'\]"):
        m(dict(item=torch.tensor([1])), mode='predict')
    with pytest.raises(ValueError, match='inputs must be a dict with at least "item"'):
        m(dict(items=torch.tensor([1])), mode='tensor')
    with pytest.raises(ValueError, match="mode='bogus'"):
        m(dict(item=torch.tensor([1])), mode='bogus')


def test_deprecated_call_and_options_still_work():
    """The former call ``model(items, targets, reset=...)`` and option names (``n_sample``,
    ``loss='cross-entropy'``) give the same numbers as the new ones, with a DeprecationWarning;
    a name that was never an option but users expect (RecBole's ``loss_type``), or an old and a
    new name together, raise an error naming the option to use."""

    def build(**kw):
        torch.manual_seed(0)
        return GRU4Rec(num_items=12, hidden_sizes=(8, ), **kw)

    new = build(loss='ce', num_negatives=5)
    with pytest.warns(DeprecationWarning, match="'n_sample' is deprecated, use 'num_negatives'"):
        old = build(loss='ce', n_sample=5)
    assert old.num_negatives == 5 and old.loss_type == 'ce'
    with pytest.warns(DeprecationWarning, match="use loss='ce'"):
        old = build(loss='cross-entropy', n_sample=5)
    assert old.loss_type == 'ce'
    for a, b in zip(old.state_dict().values(), new.state_dict().values()):
        assert torch.equal(a, b)
    batch = dict(
        item=torch.tensor([1, 2]),
        target=torch.tensor([3, 4]),
        reset=torch.tensor([True, True]),
        valid=torch.tensor([True, True]))
    torch.manual_seed(5)
    expected = new(batch, mode='loss')['loss']
    torch.manual_seed(5)
    with pytest.warns(DeprecationWarning, match='deprecated'):
        got = old(
            batch['item'], batch['target'], reset=batch['reset'], valid=batch['valid'],
            mode='loss')['loss']
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning):
        out = old(batch['item'], targets=batch['target'], mode='predict')
    assert [o['target'] for o in out] == [3, 4]
    with pytest.raises(TypeError, match="no option 'loss_type'; use 'loss'"):
        build(loss_type='CE')
    with pytest.raises(ValueError, match='keep only num_negatives'):
        build(n_sample=5, num_negatives=7)
    with pytest.raises(TypeError, match='unexpected options'):
        build(bogus=1)
    with pytest.raises(TypeError, match='unexpected arguments'):
        new(batch, targets=batch['target'], mode='loss')


def test_adagrad_momentum_by_hand_and_index_only_rows():
    p = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    opt = AdagradM([p], lr=0.1, momentum=0.5, eps=1e-6)
    acc, vel, val = np.zeros((2, 2)), np.zeros((2, 2)), p.detach().numpy().copy()
    for g in ([[0.5, -1.0], [0.0, 0.0]], [[0.2, 0.1], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]):
        g = np.array(g)
        p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        rows = np.abs(g).sum(1) > 0  # the official update touches only the batch's rows
        acc[rows] += g[rows]**2
        vel[rows] = 0.5 * vel[rows] - 0.1 * g[rows] / np.sqrt(acc[rows] + 1e-6)
        val[rows] += vel[rows]
        np.testing.assert_allclose(p.detach().numpy(), val, rtol=1e-6)
    assert not np.allclose(val[1], [3.0, 4.0])
    with pytest.raises(ValueError, match='momentum'):
        AdagradM([p], momentum=1.0)


@pytest.mark.parametrize('momentum', [0.0, 0.5])
def test_adagrad_momentum_sparse_gradients_update_by_index(momentum):
    """A sparse gradient (duplicate rows summed) updates exactly as its dense twin does with
    the index-only rule; without momentum every dense parameter takes the plain formula."""
    torch.manual_seed(0)
    init = torch.randn(6, 3)
    sparse_p, dense_p = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
    bias = torch.nn.Parameter(torch.randn(6))
    opt_s = AdagradM([sparse_p], lr=0.1, momentum=momentum)
    opt_d = AdagradM([dense_p, bias], lr=0.1, momentum=momentum)
    acc_b, val_b = torch.zeros(6), bias.detach().clone()
    for rows in ([0, 2, 2], [2, 5], [1, 0, 5, 5]):
        idx = torch.tensor(rows)
        for p, sparse in ((sparse_p, True), (dense_p, False)):
            p.grad = None
            (F.embedding(idx, p, sparse=sparse) * torch.arange(1., 4.)).sum().backward()
        assert sparse_p.grad.is_sparse and not dense_p.grad.is_sparse
        bias.grad = torch.randn(6)
        acc_b += bias.grad**2
        val_b -= 0.1 * bias.grad / (acc_b + 1e-6).sqrt()
        opt_s.step()
        opt_d.step()
        torch.testing.assert_close(sparse_p.detach(), dense_p.detach(), rtol=1e-6, atol=1e-7)
        if momentum == 0:
            torch.testing.assert_close(bias.detach(), val_b, rtol=1e-6, atol=1e-7)
    untouched = 3  # never in a batch: unchanged, its accumulator still zero
    assert torch.equal(sparse_p[untouched].detach(), init[untouched])
    assert float(opt_s.state[sparse_p]['acc'][untouched].abs().sum()) == 0


def test_sparse_item_gradients_train_like_dense():
    """sparse_grad only changes how the item tables' gradients are stored: with AdagradM the
    parameters after a few steps equal those of the dense model."""
    torch.manual_seed(0)
    batches = [
        dict(
            item=torch.randint(1, 13, (4, )),
            target=torch.randint(1, 13, (4, )),
            reset=torch.tensor([i == 0] * 4),
            valid=torch.ones(4, dtype=torch.bool)) for i in range(4)
    ]
    final = {}
    for sparse in (True, False):
        for mode in ('none', 'shared'):
            m = model(sparse_grad=sparse, embedding=mode, num_negatives=0)
            opt = AdagradM(m.parameters(), lr=0.1, momentum=0.3)
            for b in batches:
                opt.zero_grad()
                m(b, mode='loss')['loss'].backward()
                if sparse:
                    table = m.item_out if mode == 'shared' else m.layers[0].w_x
                    assert table.grad.is_sparse
                opt.step()
            final[sparse, mode] = {k: v.detach().clone() for k, v in m.state_dict().items()}
    for mode in ('none', 'shared'):
        for k, v in final[True, mode].items():
            torch.testing.assert_close(v, final[False, mode][k], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Through mmengine's Runner: two epochs beat popularity; checkpoint holds the item map; resume.
def synthetic_clicks(path, n_items=30, n_sessions=300, seed=0):
    """Sessions walk i -> i + step (mod n): next items are predictable, popularity is flat."""
    rng = np.random.default_rng(seed)
    lines = ['SessionId\tItemId\tTime']
    t = 0
    for s in range(n_sessions):
        item, step = int(rng.integers(n_items)), int(rng.choice([1, 7]))
        for _ in range(int(rng.integers(3, 9))):
            lines.append(f'{s}\t{item}\t{t}')
            item, t = (item + step) % n_items, t + 60
        t += 3600
    path.write_text('\n'.join(lines) + '\n')


def popularity_metrics(test_ds, train_ds, topk=(5, )):
    metric = RankingMetric(topk=topk, metrics=('recall', 'mrr'))
    scores = torch.as_tensor(train_ds.item_counts, dtype=torch.float32)
    items, offsets = test_ds.items, test_ds.offsets
    samples = [
        dict(scores=scores, target=int(items[e + 1]), exclude=torch.tensor([0]))
        for s in range(len(offsets) - 1) for e in range(offsets[s], offsets[s + 1] - 1)
    ]
    metric.process(None, samples)
    return metric.compute_metrics(metric.results)


def gru4rec_cfg(tmp_path, data_path, epochs):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/gru4rec/gru4rec_ml100k.py'))
    data = dict(
        data_path=str(data_path),
        file_format='session',
        session_gap=None,
        min_item_support=1,
        test_seconds=30 * 3600)
    # the model reads its items from train_dataloader.dataset (model.dataset='train_dataloader')
    for part in (cfg.train_dataloader.dataset, cfg.val_dataloader.dataset,
                 cfg.test_dataloader.dataset):
        part.update(data)
    cfg.model.update(hidden_sizes=(32, ), num_negatives=8, dropout_p_hidden=0.0)
    cfg.train_dataloader.batch_size = 16
    cfg.train_cfg.max_epochs = epochs
    cfg.val_evaluator = [dict(type='RankingMetric', topk=(5, ), metrics=('recall', 'mrr'))]
    cfg.default_hooks.checkpoint.max_keep_ckpts = 3
    cfg.default_hooks.logger.interval = 1000
    cfg.work_dir = str(tmp_path / 'work')
    cfg.runner_type = 'mmext.Runner'
    return cfg


def test_two_epochs_beat_popularity_checkpoint_and_resume(tmp_path):
    data_path = tmp_path / 'clicks.tsv'
    synthetic_clicks(data_path)
    with DefaultScope.overwrite_default_scope('mmext'):  # restores the scope the runner sets
        run_and_resume(tmp_path, data_path)


def run_and_resume(tmp_path, data_path):
    runner = RUNNERS.build(gru4rec_cfg(tmp_path, data_path, epochs=2))
    runner.train()
    ours = runner.val_loop.run()
    train_ds = runner.train_dataloader.dataset
    pop = popularity_metrics(runner.val_dataloader.dataset, train_ds)
    assert ours['recall@5'] > pop['recall@5'] + 0.2, (ours, pop)
    assert ours['mrr@5'] > pop['mrr@5']
    # The checkpoint carries the item map (loaded with the weights-only unpickler).
    ckpt = torch.load(osp.join(runner.work_dir, 'epoch_2.pth'), weights_only=True)
    assert ckpt['meta']['dataset_meta']['item_map'] == train_ds.item_map.to_dict()
    assert ckpt['meta']['epoch'] == 2
    # Resuming from epoch 1 runs epoch 2 only and ends in the same place in the schedule.
    cfg = gru4rec_cfg(tmp_path, data_path, epochs=2)
    cfg.work_dir = str(tmp_path / 'resumed')
    cfg.resume, cfg.load_from = True, osp.join(runner.work_dir, 'epoch_1.pth')
    resumed = RUNNERS.build(cfg)
    resumed.train()
    assert resumed.epoch == 2 and osp.isfile(osp.join(cfg.work_dir, 'epoch_2.pth'))
    assert not osp.isfile(osp.join(cfg.work_dir, 'epoch_1.pth'))


@pytest.mark.slow
def test_ml100k_two_epochs_beat_popularity(tmp_path):
    """The shipped config, two epochs on MovieLens-100K sessions (about a minute on 2 cores)."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs/gru4rec/gru4rec_ml100k.py'))
    cfg.train_cfg.max_epochs = 2
    cfg.work_dir = str(tmp_path / 'work')
    cfg.runner_type = 'mmext.Runner'
    with DefaultScope.overwrite_default_scope('mmext'):
        runner = RUNNERS.build(cfg)
        runner.train()
        ours = runner.val_loop.run()
    pop = popularity_metrics(
        runner.val_dataloader.dataset, runner.train_dataloader.dataset, topk=(20, ))
    assert ours['recall@20'] > pop['recall@20'] and ours['mrr@20'] > pop['mrr@20'], (ours, pop)
