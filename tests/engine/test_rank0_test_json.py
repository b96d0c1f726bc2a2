"""Only rank 0 writes the test metrics' JSON (mmengine's LoggerHook dumps it from every rank)."""
import json
import logging
from types import SimpleNamespace

from mmengine.hooks import CheckpointHook, LoggerHook

import mmext.engine.runner as runner_module


class _LogProcessor:

    def get_log_after_epoch(self, runner, batches, mode, with_non_scalar=False):
        assert (batches, mode, with_non_scalar) == (3, 'test', True)
        return {'coco/bbox_mAP': 0.5, 'time': runner.rank_time}, 'Epoch(test) [3/3] mAP: 0.5'


def _fake_runner(tmp_path, rank_time):
    return SimpleNamespace(
        log_processor=_LogProcessor(),
        test_dataloader=[0, 1, 2],
        logger=logging.getLogger('test_rank0_test_json'),
        log_dir=str(tmp_path),
        rank_time=rank_time)


def _logger_hook():
    hook = LoggerHook()
    hook.json_log_path = 'run.json'  # what before_run sets: '<timestamp>.json'
    return hook


def test_only_rank0_dumps_the_test_json(tmp_path, monkeypatch, caplog):
    rank0, rank1, other = _logger_hook(), _logger_hook(), CheckpointHook()
    monkeypatch.setattr(runner_module, 'is_main_process', lambda: True)
    runner_module.leave_test_json_to_rank0([rank0])
    monkeypatch.setattr(runner_module, 'is_main_process', lambda: False)
    runner_module.leave_test_json_to_rank0([rank1, other])

    # rank 0 writes its (shorter) record; rank 1, whose record is longer, used to write after it
    rank0.after_test_epoch(_fake_runner(tmp_path, rank_time=0.5))
    with caplog.at_level(logging.INFO, logger='test_rank0_test_json'):
        rank1.after_test_epoch(_fake_runner(tmp_path, rank_time=0.123456789))
    assert json.loads((tmp_path / 'run.json').read_text()) == {'coco/bbox_mAP': 0.5, 'time': 0.5}
    assert 'Epoch(test) [3/3] mAP: 0.5' in caplog.text  # rank 1 still logs its line
    assert 'after_test_epoch' not in vars(other)  # other hooks are left alone
