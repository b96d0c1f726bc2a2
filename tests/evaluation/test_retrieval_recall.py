"""RetrievalRecall and ZeroShotAccuracy on hand-made similarity layouts."""
import pytest
import torch
import torch.nn.functional as F

from mmext.evaluation.metrics import RetrievalRecall, ZeroShotAccuracy
from mmext.evaluation.metrics.retrieval_recall import recall_at_k


def _brute_recall(sims, rel, k):
    hits = 0
    for q in range(sims.shape[0]):
        top = sorted(range(sims.shape[1]), key=lambda j: -float(sims[q, j]))[:k]
        hits += any(bool(rel[q, j]) for j in top)
    return 100.0 * hits / sims.shape[0]


def test_recall_at_k_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    sims = torch.randn(9, 12, generator=g)
    rel = torch.rand(9, 12, generator=g) < 0.2
    got = recall_at_k(sims, rel, (1, 3, 5))
    for k in (1, 3, 5):
        assert got[k] == pytest.approx(_brute_recall(sims, rel, k))


def test_retrieval_metric_both_directions_and_relevance_keys():
    # texts 0..3 look like images 0, 2, 3, 1
    images = F.normalize(torch.eye(4), dim=1)
    texts = images[[0, 2, 3, 1]]  # text of sample 1 looks like image 2, etc.
    samples = [
        dict(
            image_feat=images[i],
            text_feat=texts[i],
            image_id=i,
            gt_label=torch.tensor([[0, 1, 1, 0][i]])) for i in range(4)
    ]
    metric = RetrievalRecall(topk=(1, ), relevance_key='image_id')
    metric.process(None, samples)
    res = metric.compute_metrics(metric.results)
    assert res['i2t_R@1'] == pytest.approx(25.0) and res['t2i_R@1'] == pytest.approx(25.0)
    metric = RetrievalRecall(topk=(1, ), relevance_key='gt_label')
    metric.process(None, samples)
    res = metric.compute_metrics(metric.results)
    # labels 0,1,1,0: image 0 -> text 0 hit; 1 -> text 3 (label 0) miss; 2 -> text 1 (label 1)
    # hit; 3 -> text 2 (label 1) miss
    assert res['i2t_R@1'] == pytest.approx(50.0)
    with pytest.raises(ValueError, match='relevance_key'):
        RetrievalRecall(relevance_key='caption')


def test_zero_shot_accuracy():
    metric = ZeroShotAccuracy(topk=(1, 2))
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.5, 0.4]])
    metric.process(
        None,
        [dict(pred_score=s, gt_label=torch.tensor([lab])) for s, lab in zip(scores, [0, 1, 2])])
    res = metric.compute_metrics(metric.results)
    assert res['top1'] == pytest.approx(100 / 3)
    assert res['top2'] == pytest.approx(100.0)
    with pytest.raises(KeyError, match='pred_score'):
        metric.process(None, [dict(gt_label=torch.tensor([0]))])


def test_recall_is_ranked_in_chunks_with_progress(monkeypatch, capsys):
    """Chunks of rows (here 1..3 rows) rank like the whole matrix, ties included, and report
    their progress (large test sets take seconds per direction)."""
    from mmext.evaluation.metrics import retrieval_recall
    monkeypatch.setenv('MMEXT_PROGRESS_DELAY', '0')
    monkeypatch.delenv('MMEXT_PROGRESS', raising=False)
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 5, generator=g)  # few distinct features: many exact ties
    sims = base[torch.randint(0, 3,
                              (11, ), generator=g)] @ base[torch.randint(0, 3,
                                                                         (13, ), generator=g)].t()
    rel = torch.rand(11, 13, generator=g) < 0.3
    whole = recall_at_k(sims, rel, (1, 2, 4))
    capsys.readouterr()
    for elements in (13, 30, 39):
        monkeypatch.setattr(retrieval_recall, '_CHUNK_ELEMENTS', elements)
        assert recall_at_k(sims, rel, (1, 2, 4), 'i2t') == whole
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith('i2t: 100% (11/11 queries), done in ')
