"""GrowingHistoryBuffer: mmengine's HistoryBuffer results, amortised-O(1) updates, plain pickles."""
import copy
import io
import pickle
import time

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from mmext.engine.history_buffer import GrowingHistoryBuffer, use_growing_history_buffers
from mmext.utils.checkpoint import allow_mmengine_checkpoint_types


def _same(ours: HistoryBuffer, theirs: HistoryBuffer) -> None:
    for a, b in zip(ours.data, theirs.data):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for window in (None, 1, 3, 50):
        for stat in ('mean', 'max', 'min'):
            assert ours.statistics(stat, window) == theirs.statistics(stat, window)
    assert ours.current() == theirs.current()


@pytest.mark.parametrize('max_length', [5, 1000000])
def test_same_values_statistics_and_dtypes_as_mmengine(max_length):
    """ints then floats (the dtype is promoted as np.append does), counts, the max_length cut."""
    values = [3, 1, 4] + [0.5 * i for i in range(40)] + [7]
    counts = [1, 2, 1] + [1] * 40 + [3]
    ours, theirs = GrowingHistoryBuffer(max_length=max_length), HistoryBuffer(max_length=max_length)
    for v, c in zip(values, counts):
        ours.update(v, c)
        theirs.update(v, c)
        _same(ours, theirs)
    start = GrowingHistoryBuffer([1, 2], [1, 1])
    start.update(3)
    assert start.data[0].dtype == np.int64 and list(start.data[0]) == [1, 2, 3]
    with pytest.raises(TypeError, match='log_val must be int or float'):
        ours.update('1.0')


def test_update_time_does_not_grow_with_the_history():
    """mmengine's buffer copies its history per update; this one takes the same time at 100
    and at 200,000 entries (a generous factor for a noisy machine)."""

    def per_update(buffer, n=2000):
        t = time.perf_counter()
        for _ in range(n):
            buffer.update(1.0)
        return (time.perf_counter() - t) / n

    small = GrowingHistoryBuffer([1.0] * 100, [1] * 100)
    large = GrowingHistoryBuffer([1.0] * 200_000, [1] * 200_000)
    per_update(large, 10)  # warm up
    assert per_update(large) < 5 * per_update(small) + 2e-6


def test_pickles_and_deep_copies_as_a_plain_history_buffer(tmp_path):
    ours = GrowingHistoryBuffer(max_length=4)
    for v in range(7):
        ours.update(float(v))
    for copied in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert type(copied) is HistoryBuffer
        _same(copied, ours)
    # and loads through the weights-only allow-list that mmext's checkpoints use
    allow_mmengine_checkpoint_types()
    path = tmp_path / 'hub.pth'
    torch.save({'loss': ours}, path)
    loaded = torch.load(path, weights_only=True)['loss']
    assert type(loaded) is HistoryBuffer and list(loaded.data[0]) == [3.0, 4.0, 5.0, 6.0]


def test_message_hub_converts_new_and_resumed_scalars():
    hub = MessageHub.get_instance('test_growing_history_buffers')
    hub.update_scalar('train/loss', 1.0)  # before: a plain buffer, converted
    use_growing_history_buffers(hub)
    use_growing_history_buffers(hub)  # idempotent
    hub.update_scalar('train/loss', torch.tensor(2.0))
    hub.update_scalar('train/lr', 0.1)
    assert all(type(b) is GrowingHistoryBuffer for b in hub.log_scalars.values())
    assert list(hub.get_scalar('train/loss').data[0]) == [1.0, 2.0]
    state = hub.state_dict()  # what a checkpoint stores: plain buffers
    assert all(type(b) is HistoryBuffer for b in state['log_scalars'].values())
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = use_growing_history_buffers(MessageHub.get_instance('test_growing_history_resumed'))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert type(fresh.get_scalar('train/loss')) is GrowingHistoryBuffer
    fresh.update_scalar('train/loss', 3.0)
    assert list(fresh.get_scalar('train/loss').data[0]) == [1.0, 2.0, 3.0]
