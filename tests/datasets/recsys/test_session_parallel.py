"""Session-parallel batching on hand-built sessions: layout, targets and exact reset masks."""
import numpy as np
import pytest

from mmext.datasets.recsys.session_parallel import (SessionParallelBatchSampler,
                                                    session_parallel_collate,
                                                    session_parallel_schedule)


def test_schedule_by_hand():
    # Sessions (event ranges): A=[0,3) B=[3,5) C=[5,9) D=[9,11); inputs: A 0,1  B 3  C 5,6,7  D 9
    offsets = np.array([0, 3, 5, 9, 11])
    sched = session_parallel_schedule(offsets, np.arange(4), batch_size=2)
    # slot 1 finishes B first and takes C (5,6,7); slot 0 finishes A and takes D (9).
    expected = [[0, 3], [1, 5], [9, 6], [-1, 7]]
    assert sched.tolist() == expected
    # A different order changes the layout but never splits a session across slots.
    sched = session_parallel_schedule(offsets, np.array([2, 0, 3, 1]), batch_size=2)
    assert sched.tolist() == [[5, 0], [6, 1], [7, 9], [3, -1]]


def test_schedule_covers_every_input_once_in_order():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 9, size=40)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    order = rng.permutation(40)
    sched = session_parallel_schedule(offsets, order, batch_size=7)
    events = sched[sched >= 0]
    inputs = np.concatenate([np.arange(offsets[s], offsets[s + 1] - 1) for s in range(40)])
    assert sorted(events.tolist()) == sorted(inputs.tolist())
    # Within a slot, consecutive events of one session are consecutive steps.
    for col in sched.T:
        col = col[col >= 0]
        session = np.searchsorted(offsets, col, side='right') - 1
        same = session[1:] == session[:-1]
        assert (col[1:][same] == col[:-1][same] + 1).all()
        # A slot only moves to a new session after finishing the previous one.
        ended = col[:-1][~same] + 2 == offsets[session[:-1][~same] + 1]
        assert ended.all()
    assert (sched[0] >= 0).all()


def test_short_session_rejected():
    with pytest.raises(ValueError, match='fewer than 2 events'):
        session_parallel_schedule(np.array([0, 1, 3]), np.arange(2), 2)


class _ToyDataset:
    """Just what the batch sampler and the reset logic need."""

    def __init__(self, offsets):
        self.offsets = np.asarray(offsets)
        self.num_sessions = len(offsets) - 1


class _Seed:

    def __init__(self, dataset, seed=0, epoch=0):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch


def test_batch_sampler_epochs_are_seeded():
    ds = _ToyDataset(np.concatenate([[0], np.cumsum(np.full(30, 3))]))
    seed = _Seed(ds)
    bs = SessionParallelBatchSampler(seed, batch_size=4)
    first = list(bs)
    assert len(first) == len(bs) == 16  # 30 sessions of 2 inputs on 4 slots
    assert list(bs) == first  # same epoch, same batches (what a resumed run replays)
    seed.epoch = 1
    assert list(bs) != first
    fixed = SessionParallelBatchSampler(seed, batch_size=4, shuffle=False)
    assert next(iter(fixed)) == [0, 3, 6, 9]  # dataset order
    with pytest.raises(TypeError, match='session dataset'):
        SessionParallelBatchSampler(_Seed(None), 4)
    with pytest.raises(TypeError, match='batch dict'):
        session_parallel_collate([1, 2])
    batch = dict(item=np.arange(3))
    assert session_parallel_collate(batch) == dict(inputs=batch)  # model(**data) contract


def test_training_sessions_are_sharded_across_ranks(monkeypatch):
    import mmext.datasets.recsys.session_parallel as sp
    ds = _ToyDataset(np.concatenate([[0], np.cumsum(np.full(9, 3))]))
    events = []
    for rank in (0, 1):
        monkeypatch.setattr(sp, 'get_dist_info', lambda r=rank: (r, 2))
        sched = SessionParallelBatchSampler(_Seed(ds), batch_size=2).schedule()
        events.append(set(sched[sched >= 0].tolist()))
    assert not events[0] & events[1]
    assert events[0] | events[1] == {e for s in range(9) for e in (3 * s, 3 * s + 1)}
