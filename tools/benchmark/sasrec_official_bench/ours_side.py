"""Our side: a worker run in the project venv as ``python bench_sasrec_official.py
--ours-worker SPEC.json``, training ``configs/sasrec/sasrec_video.py`` through mmext's Runner
(what ``tools/train.py`` builds: its dataloader, hooks, logging and checkpointing), with the
benchmark's data file, seed and epochs; validation during training is off (the official side
evaluates after training too).

A hook of highest priority reads the clocks at ``before_train_epoch`` and ``after_train_epoch``,
so an epoch's time holds every training iteration with all its hooks, and not the checkpoint
saved after the last epoch.  After training the model scores the common tasks
(:mod:`.protocol`), and ``runner.test()`` gives our usual test numbers (every user with at
least 3 interactions, :class:`mmext.RankingMetric`).
"""
import json
import sys
import time

from .cputime import tree_cpu_seconds
from .protocol import rank_counts

__all__ = ['ours_worker']


def ours_worker(spec: dict) -> None:
    import numpy as np
    import torch
    torch.set_num_threads(spec['threads'])
    from mmengine.config import Config
    from mmengine.hooks import Hook

    import mmext  # noqa: F401  (registries)
    from mmext.registry import RUNNERS

    cfg = Config.fromfile(spec['config'])
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.ann_file = spec['ann_file']
    cfg.model.update(spec.get('model') or {})
    cfg.work_dir = spec['work_dir']
    cfg.randomness = dict(seed=spec['seed'])
    cfg.train_cfg.max_epochs = spec['epochs']
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=spec['epochs'])
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=100)
    cfg.log_level = 'WARNING'  # the epochs are reported below

    epochs = []

    class EpochClock(Hook):

        def before_train_epoch(self, runner) -> None:
            self.start = (time.perf_counter(), tree_cpu_seconds())

        def after_train_epoch(self, runner) -> None:
            wall, cpu = self.start
            end = tree_cpu_seconds()
            epochs.append(
                dict(
                    wall=time.perf_counter() - wall,
                    cpu_self=end['self'] - cpu['self'],
                    cpu_children=end['children'] - cpu['children']))
            print(f'[mmext] epoch {len(epochs)}: {epochs[-1]}', file=sys.stderr, flush=True)

    runner = RUNNERS.build(cfg)
    runner.register_hook(EpochClock(), priority='HIGHEST')
    runner.train()
    train_set = runner.train_dataloader.dataset
    stats = train_set.metainfo['stats']
    model = runner.model
    model.eval()
    tokens = train_set.metainfo['item_map']['tokens']
    num_raw = max(int(t) for t in tokens)
    ours_of_raw = np.zeros(num_raw + 1, dtype=np.int64)  # file id -> our id (0: padding)
    ours_of_raw[[int(t) for t in tokens]] = np.arange(1, len(tokens) + 1)
    if (ours_of_raw[1:] == 0).any():
        raise AssertionError('an item id of the file has no id in our dataset')
    columns = torch.as_tensor(ours_of_raw)
    info = dict(
        users=stats['num_users'],
        items=stats['num_items'],
        train_windows=len(train_set),
        train_targets=sum(len(d['target']) for d in train_set.data_list),
        steps_per_epoch=len(runner.train_dataloader),
        params=sum(p.numel() for p in model.parameters()),
        torch=torch.__version__,
        numpy=np.__version__)

    def score_fn(hist: np.ndarray):
        seq = torch.as_tensor(ours_of_raw[hist])
        last = model.encode(seq, seq.size(1) - 1)[:, -1]
        return (last @ model.item_embedding.weight.t())[:, columns]  # columns in file ids

    tasks = dict(np.load(spec['tasks']))
    wall = time.perf_counter()
    result = dict(info=info, epochs=epochs)
    with torch.no_grad():
        result['counts'] = {split: rank_counts(score_fn, tasks, split) for split in ('val', 'test')}
    result['eval_wall'] = time.perf_counter() - wall
    if spec.get('runner_test'):
        result['runner_test'] = {k: float(v) for k, v in runner.test().items()}
    with open(spec['out'], 'w') as f:
        json.dump(result, f)
