"""Out-of-range item ids raise one clear error (the id, its position, the valid range) in both
recommenders, instead of a bare ``IndexError``, a silent loss on a bogus target or a padding
target counted as an evaluated event (issue #21, item 7)."""
import pytest
import torch

from mmext.models.recommenders import SASRec
from mmext.models.recommenders.base import check_item_ids
from mmext.models.recommenders.gru4rec import GRU4Rec

N, L = 12, 6


def sasrec():
    torch.manual_seed(0)
    return SASRec(num_items=N, max_len=L, embed_dims=8, num_heads=1, dropout=0.).eval()


def gru4rec():
    torch.manual_seed(0)
    return GRU4Rec(num_items=N, hidden_sizes=(8, ), num_negatives=3)


def test_check_item_ids_names_id_position_and_range():
    check_item_ids('M', 'x', torch.tensor([[0, 3], [N, 1]]), 0, N)
    check_item_ids('M', 'x', torch.zeros(0, dtype=torch.long), 1, N)
    with pytest.raises(ValueError, match=r'x: item id 13 at position \(1, 0\).*\[0, 12\]'):
        check_item_ids('M', 'x', torch.tensor([[0, 3], [N + 1, 1]]), 0, N)
    # masked-out entries are not checked; positions index the unmasked tensor
    mask = torch.tensor([False, True, True])
    check_item_ids('M', 'y', torch.tensor([0, 1, 2]), 1, N, mask)
    with pytest.raises(ValueError, match=r'y: item id 0 at position 2 .*\[1, 12\].*padding'):
        check_item_ids('M', 'y', torch.tensor([0, 1, 0]), 1, N, mask)


def test_gru4rec_rejects_bad_and_padding_targets():
    m = gru4rec().train()
    item = torch.tensor([1, 2, 3])
    valid = torch.tensor([True, True, False])
    # an idle slot may carry anything: it is not a training event
    m(dict(item=item, target=torch.tensor([4, 5, 0]), valid=valid), mode='loss')
    for bad, pos in ((-3, 0), (0, 1), (N + 1, 1)):
        target = torch.tensor([4, 5, 6])
        target[pos] = bad
        with pytest.raises(ValueError, match=rf'target: item id {bad} at position {pos} '):
            m(dict(item=item, target=target, valid=valid), mode='loss')
    m.eval()
    # evaluation: a padding target of a scored slot was counted as an event (HR@10 = 1.0)
    with pytest.raises(ValueError, match=r'target: item id 0 at position 1 .*\[1, 12\]'):
        m(dict(item=item, target=torch.tensor([4, 0, 6]), valid=valid), mode='predict')
    evaluate = torch.tensor([True, False, True])
    out = m(
        dict(item=item, target=torch.tensor([4, 0, 0]), valid=valid, evaluate=evaluate),
        mode='predict')
    assert [o['target'] for o in out] == [4]
    with pytest.raises(ValueError, match=r'inputs\["item"\]\): item id 13 at position 0'):
        m(dict(item=torch.tensor([N + 1, 1, 1]), target=item), mode='predict')


def test_sasrec_rejects_out_of_range_ids():
    m = sasrec()
    seq = torch.tensor([[0, 0, 1, 2, 3, 4]])
    target = torch.tensor([[0, 0, 2, 3, 4, 5]])
    neg = torch.tensor([[0, 0, 7, 7, 7, 7]])
    m(dict(seq=seq, target=target, negatives=neg), mode='loss')
    bad = neg.clone()
    bad[0, 3] = N + 5  # was a bare IndexError from the embedding lookup
    with pytest.raises(ValueError, match=r'negatives: item id 17 at position \(0, 3, 0\)'):
        m(dict(seq=seq, target=target, negatives=bad), mode='loss')
    bad[0, 3] = -1
    with pytest.raises(ValueError, match=r'negatives: item id -1 at position \(0, 3, 0\)'):
        m(dict(seq=seq, target=target, negatives=bad), mode='loss')
    bad_target = target.clone()
    bad_target[0, 1] = -3  # was silently no loss there
    with pytest.raises(ValueError, match=r'target: item id -3 at position \(0, 1\)'):
        m(dict(seq=seq, target=bad_target, negatives=neg), mode='loss')
    with pytest.raises(ValueError, match=r'target: item id 0 at position 1 .*\[1, 12\]'):
        m(dict(seq=seq.repeat(2, 1), target=torch.tensor([5, 0])), mode='predict')
    m.eval_mode = 'sampled'
    with pytest.raises(ValueError, match=r'negatives: item id 13 at position \(0, 1\)'):
        m(dict(seq=seq, target=torch.tensor([5]), negatives=torch.tensor([[6, N + 1]])),
          mode='predict')


def test_sasrec_zero_length_sequence_says_so():
    with pytest.raises(ValueError, match='seq has length 0'):
        sasrec()(dict(seq=torch.zeros(2, 0, dtype=torch.long)), mode='tensor')
