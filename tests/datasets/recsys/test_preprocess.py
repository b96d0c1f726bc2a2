"""Preprocessing: k-core fixed point, repeats, short sessions, time order, time split, IdMap."""
import numpy as np
import pytest
import torch

from mmext.datasets.recsys.preprocess import (IdMap, drop_consecutive_repeats,
                                              filter_short_sessions, filter_unseen_items,
                                              k_core_filter, split_by_time, stable_time_order)


def brute_k_core(users, items, ku, ki):
    keep = list(range(len(users)))
    while True:
        uc = {u: sum(users[j] == u for j in keep) for u in set(users)}
        ic = {i: sum(items[j] == i for j in keep) for i in set(items)}
        new = [j for j in keep if uc[users[j]] >= ku and ic[items[j]] >= ki]
        if new == keep:
            return keep
        keep = new


def test_k_core_needs_iteration_and_matches_brute_force():
    # Dropping item 'c' (1 event) leaves user 'y' with one event, which then drops item 'b' to 1.
    users = np.array(['x', 'x', 'y', 'y', 'z', 'z', 'x'])
    items = np.array(['a', 'b', 'b', 'c', 'a', 'd', 'd'])
    mask = k_core_filter(users, items, 2, 2)
    assert np.flatnonzero(mask).tolist() == brute_k_core(list(users), list(items), 2, 2)
    assert mask.dtype == bool and not mask[1]  # 'b' only goes in a later round
    rng = np.random.default_rng(0)
    for _ in range(20):
        u = rng.integers(0, 8, 60).astype(str)
        i = rng.integers(0, 10, 60).astype(str)
        got = np.flatnonzero(k_core_filter(u, i, 3, 4)).tolist()
        assert got == brute_k_core(list(u), list(i), 3, 4)


def test_stable_time_order_keeps_ties_in_file_order():
    groups = np.array(['s2', 's1', 's2', 's1', 's2'])
    times = np.array([5.0, 3.0, 1.0, 3.0, 5.0])
    order = stable_time_order(groups, times)
    assert order.tolist() == [1, 3, 2, 0, 4]
    with pytest.raises(ValueError, match='NaN'):
        stable_time_order(groups, np.array([1, np.nan, 2, 3, 4]))


def test_drop_consecutive_repeats_in_time_order():
    groups = np.array(['s', 's', 's', 't', 's'])
    items = np.array(['a', 'a', 'b', 'a', 'a'])
    times = np.array([1.0, 2.0, 4.0, 2.5, 3.0])  # s in time order: a a a b -> keep a, b
    keep = drop_consecutive_repeats(groups, items, times)
    assert keep.tolist() == [True, False, True, True, False]
    # Repeats across sessions are not repeats.
    assert drop_consecutive_repeats(np.array(['s', 't']), np.array(['a', 'a'])).all()


def test_filter_short_sessions():
    g = np.array([1, 1, 2, 3, 3, 3])
    assert filter_short_sessions(g, 2).tolist() == [True, True, False, True, True, True]
    assert filter_short_sessions(g, 3).tolist() == [False, False, False, True, True, True]


def test_split_by_time_keeps_sessions_whole():
    day = 86400.0
    g = np.array(['a', 'a', 'b', 'b', 'c'])
    t = np.array([0.0, 5 * day, 1 * day, 9.5 * day, 10 * day])
    train = split_by_time(g, t, test_seconds=day)
    # b ends within the last day, so all of b (even its early event) is test.
    assert train.tolist() == [True, True, False, False, False]
    keep, dropped = filter_unseen_items(np.array(['x', 'y', 'z']), ['x', 'z'])
    assert keep.tolist() == [True, False, True] and dropped == 1


def test_idmap_contiguous_padding_and_roundtrip(tmp_path):
    m = IdMap.fit(np.array(['b', 'a', 'b', 'c']))
    assert m.tokens == ('b', 'a', 'c') and len(m) == 3 and m.num_ids == 4
    assert m.encode(['a', 'c', 'b']).tolist() == [2, 3, 1]
    assert m.decode(np.array([3, 1])).tolist() == ['c', 'b']
    with pytest.raises(KeyError, match="'zz'"):
        m.encode(['zz'])
    assert m.encode(['zz', 'a'], allow_unknown=True).tolist() == [0, 2]
    with pytest.raises(IndexError):
        m.decode([0])
    # Through a checkpoint, loaded with the weights-only unpickler.
    path = tmp_path / 'ckpt.pth'
    torch.save({'meta': {'dataset_meta': {'item_map': m.to_dict()}}}, path)
    state = torch.load(path, weights_only=True)
    assert IdMap.from_dict(state['meta']['dataset_meta']['item_map']) == m
    with pytest.raises(ValueError, match='tokens'):
        IdMap.from_dict({'ids': []})
