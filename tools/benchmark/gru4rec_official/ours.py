"""Our side of ``bench_gru4rec_official.py``: ``configs/gru4rec/gru4rec_ml100k.py`` trained by
mmext's Runner (what ``tools/train.py`` runs), with the official run's hyper-parameters mapped
onto it, and the data it trains on written out for the official code."""
import os.path as osp
from typing import Callable, Dict, List

import numpy as np

__all__ = ['CONFIG', 'MAPPING', 'official_params', 'write_official_split', 'train_ours']

CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))), 'configs', 'gru4rec',
    'gru4rec_ml100k.py')

# (official parameter, mmext config key, how the value maps); values come from the args.
MAPPING = (
    ('loss=cross-entropy', 'model.loss', "'ce'"),
    ('logq', 'model.logq', 'same'),
    ('constrained_embedding=True', 'model.embedding', "'shared'"),
    ('embedding=0', 'model.embedding_dim', 'unused with shared'),
    ('layers', 'model.hidden_sizes', 'same'),
    ('batch_size', 'train_dataloader.batch_size', 'same (session-parallel slots)'),
    ('dropout_p_embed', 'model.dropout_p_embed', 'same'),
    ('dropout_p_hidden', 'model.dropout_p_hidden', 'same'),
    ('learning_rate', 'optim_wrapper.optimizer.lr (AdagradM)', 'same'),
    ('momentum', 'optim_wrapper.optimizer.momentum', 'same'),
    ('n_sample', 'model.num_negatives', 'same'),
    ('sample_alpha', 'model.sample_alpha', 'same'),
    ('n_epochs', 'train_cfg.max_epochs', 'same'),
    ('(loss / batch_size)', 'model.reduction', '--reduction'),
    ('(IndexedAdagradM eps 1e-6)', 'optim_wrapper.optimizer.eps', '1e-6'),
    ('(session order: by start time)', 'batch_sampler.shuffle', '--shuffle'),
)


def official_params(args) -> str:
    """The official ``-ps`` parameter string of this run."""
    return ','.join([
        'loss=cross-entropy', f'logq={args.logq}', 'constrained_embedding=True', 'embedding=0',
        f'layers={args.hidden}', f'batch_size={args.batch_size}',
        f'dropout_p_embed={args.dropout_embed}', f'dropout_p_hidden={args.dropout_hidden}',
        f'learning_rate={args.lr}', f'momentum={args.momentum}', f'n_sample={args.negatives}',
        f'sample_alpha={args.sample_alpha}', f'n_epochs={args.epochs}'
    ])


def _cfg_options(args) -> dict:
    return {
        'model.loss': 'ce',
        'model.logq': args.logq,
        'model.embedding': 'shared',
        'model.hidden_sizes': (args.hidden, ),
        'model.dropout_p_embed': args.dropout_embed,
        'model.dropout_p_hidden': args.dropout_hidden,
        'model.num_negatives': args.negatives,
        'model.sample_alpha': args.sample_alpha,
        'model.reduction': args.reduction,
        'train_dataloader.batch_size': args.batch_size,
        'train_dataloader.batch_sampler.shuffle': args.shuffle,
        'optim_wrapper.optimizer.lr': args.lr,
        'optim_wrapper.optimizer.momentum': args.momentum,
        'optim_wrapper.optimizer.eps': 1e-6,
        'train_cfg.max_epochs': args.epochs,
        'default_hooks.checkpoint': None,  # the official run saves nothing either
        'default_hooks.logger.interval': 10**6,
        'test_evaluator.0.topk': tuple(args.cutoffs),
        'test_evaluator.0.tie_policy': args.tie_policy,
    }


def _config(args, work_dir: str, seed: int):
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(_cfg_options(args))
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None  # only the test after training
    cfg.work_dir = osp.join(work_dir, f'ours_seed{seed}')
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'WARNING'
    return cfg


def write_official_split(args, work_dir: str) -> Dict[str, object]:
    """Write the config's training and test sessions as the official TAB separated files
    (``SessionId ItemId Time``: our session index in start-time order, our item id, the event
    time) and return their paths and sizes."""
    from mmext.registry import DATASETS
    cfg = _config(args, work_dir, 0)
    out: Dict[str, object] = {}
    for split, loader in (('train', cfg.train_dataloader), ('test', cfg.test_dataloader)):
        ds = DATASETS.build(loader.dataset)
        items = ds.items.numpy()
        sessions = np.repeat(np.arange(ds.num_sessions), np.diff(ds.offsets))
        times = ds.times
        path = osp.join(work_dir, f'{split}.tsv')
        with open(path, 'w') as f:
            f.write('SessionId\tItemId\tTime\n')
            for s, i, t in zip(sessions.tolist(), items.tolist(), np.asarray(times).tolist()):
                f.write(f'{s}\t{i}\t{t:.0f}\n')
        out[split] = path
        out[f'{split}_events'] = len(items)
        out[f'{split}_sessions'] = ds.num_sessions
        out[f'{split}_predictions'] = len(items) - ds.num_sessions
    out['num_items'] = ds.num_items
    return out


def train_ours(args, work_dir: str, seed: int, before_epoch: Callable[[int],
                                                                      None]) -> Dict[str, object]:
    """Train and test ours through mmext's Runner; ``before_epoch(epoch)`` runs right before each
    of our timed epochs (the benchmark runs the official epoch there: interleaved)."""
    import time

    from mmengine.hooks import Hook

    from mmext.registry import RUNNERS

    epochs: List[dict] = []

    class EpochClock(Hook):
        priority = 'LOWEST'  # before_train_epoch last, after_train_epoch last: the whole epoch

        def before_train_epoch(self, runner) -> None:
            before_epoch(runner.epoch)
            self.t = (time.perf_counter(), time.process_time())

        def after_train_epoch(self, runner) -> None:
            wall, cpu = time.perf_counter() - self.t[0], time.process_time() - self.t[1]
            steps = len(runner.train_dataloader)
            epochs.append(dict(wall=wall, cpu=cpu, steps=steps))

    runner = RUNNERS.build(_config(args, work_dir, seed))
    runner.register_hook(EpochClock())
    runner.train()
    metrics = runner.test()
    return dict(epochs=epochs, metrics={k.split('/')[-1]: float(v) for k, v in metrics.items()})
