"""Our side: SASRec with RecBole's hyper-parameters in a plain training loop, or one of our models
as its mmext config builds it (GRU4Rec)."""

__all__ = ['OursSASRec', 'OursFromConfig']


class OursSASRec:
    """Our SASRec with RecBole's hyper-parameters, trained with a plain loop (as the Runner's
    train step does: forward(mode='loss'), backward, Adam step)."""

    def __init__(self, args, data_kw: dict) -> None:
        import numpy as np
        import torch

        from mmext.datasets.recsys import LeaveOneOutSequenceDataset
        from mmext.models.recommenders import SASRec
        self.np, self.torch = np, torch
        self.train_set = LeaveOneOutSequenceDataset(
            split='train', train_windows='all', train_stride=args.train_stride, **data_kw)
        self.val_set = LeaveOneOutSequenceDataset(split='val', **data_kw)
        self.test_set = LeaveOneOutSequenceDataset(split='test', **data_kw)
        self.num_targets = sum(
            int((self.train_set[i]['target'] > 0).sum()) for i in range(len(self.train_set)))
        # as many targets per step as RecBole's batch of prefixes: same steps per epoch
        self.batch_size = max(1, round(args.batch_targets * len(self.train_set) / self.num_targets))
        torch.manual_seed(args.seed)
        kwargs = dict(
            num_items=self.train_set.metainfo['num_items'],
            max_len=args.max_len,
            embed_dims=64,
            num_blocks=2,
            num_heads=2,
            ffn_dims=256,
            dropout=args.ours_dropout,
            act='gelu',
            norm='pre',
            norm_eps=1e-12,
            loss='ce',
            init_std=0.02)
        kwargs.update(args.ours_model or {})
        self.model = SASRec(**kwargs)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        self.rng = np.random.default_rng(args.seed)
        self.last: dict = {}

    def _batches(self, ds, order, size):
        from mmext.datasets.recsys import sequence_collate
        for i in range(0, len(order), size):
            yield sequence_collate([ds[int(j)] for j in order[i:i + size]])

    def train_epoch(self) -> None:
        self.model.train()
        total = 0.
        order = self.rng.permutation(len(self.train_set))
        for batch in self._batches(self.train_set, order, self.batch_size):
            loss = self.model(**batch, mode='loss')['loss']
            self.optim.zero_grad()
            loss.backward()
            self.optim.step()
            total += loss.item()
        self.last = dict(loss=total)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_set) // self.batch_size)

    def train_steps(self, k: int) -> None:
        self.model.train()
        for _ in range(k):
            idx = self.rng.choice(len(self.train_set), self.batch_size, replace=False)
            batch = next(self._batches(self.train_set, idx, self.batch_size))
            loss = self.model(**batch, mode='loss')['loss']
            self.optim.zero_grad()
            loss.backward()
            self.optim.step()

    def evaluate(self, split: str) -> dict:
        from mmext.evaluation.metrics import RankingMetric
        ds = self.val_set if split == 'valid' else self.test_set
        metric = RankingMetric(
            topk=[10], metrics=['recall', 'ndcg', 'mrr'], tie_policy='average', exclude_seen=False)
        self.model.eval()
        with self.torch.no_grad():
            for batch in self._batches(ds, range(len(ds)), 512):
                metric.process(None, self.model(**batch, mode='predict'))
        out = metric.compute_metrics(metric.results)
        tokens = ds.metainfo['user_map']['tokens']  # sample 'user' u is the (u+1)-th token
        users = [tokens[info['user']] for info in ds.data_list]
        return {
            'recall@10': out['recall@10'],
            'hit@10': out['recall@10'],
            'ndcg@10': out['ndcg@10'],
            'mrr@10': out['mrr@10'],
            'ranks': {
                u: list(map(int, r))
                for u, r in zip(users, metric.results)
            }
        }


class OursFromConfig:
    """One of our models as its mmext config builds it (model, dataloaders, optimiser), trained
    and evaluated with the Runner's own steps (``train_step``, ``val_step``), one epoch per call.
    Used for GRU4Rec: ``configs/gru4rec/gru4rec_ml100k_loo.py`` is the same leave-one-out split."""

    def __init__(self, config: str, model_overrides: dict, seed: int) -> None:
        import torch
        from mmengine.config import Config
        from mmengine.optim import build_optim_wrapper
        from mmengine.registry import DefaultScope
        from mmengine.runner import Runner

        from mmext.registry import METRICS, MODELS
        self.torch = torch
        cfg = Config.fromfile(config)
        cfg.model.update(model_overrides)
        if cfg.model.get('dataset') == 'train_dataloader':  # what mmext.Runner resolves
            cfg.model.dataset = cfg.train_dataloader.dataset
        torch.manual_seed(seed)
        with DefaultScope.overwrite_default_scope('mmext'):
            self.model = MODELS.build(cfg.model)
            self.loaders = {
                'train': Runner.build_dataloader(cfg.train_dataloader, seed=seed),
                'valid': Runner.build_dataloader(cfg.val_dataloader, seed=seed),
                'test': Runner.build_dataloader(cfg.test_dataloader, seed=seed)
            }
            self.optim = build_optim_wrapper(self.model, cfg.optim_wrapper)
            self.metric_cfg = dict(
                type='RankingMetric',
                topk=[10],
                metrics=['recall', 'ndcg', 'mrr'],
                tie_policy='average',
                exclude_seen=False)
            self._metrics = METRICS
        self.cfg = cfg
        self.epoch = 0
        self.last: dict = {}

    def train_epoch(self) -> None:
        self.model.train()
        loader = self.loaders['train']
        for obj in (loader.sampler, getattr(loader, 'batch_sampler', None)):
            if hasattr(obj, 'set_epoch'):
                obj.set_epoch(self.epoch)
        total = 0.
        for data in loader:
            total += float(self.model.train_step(data, self.optim)['loss'].detach())
        self.epoch += 1
        self.last = dict(loss=total)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loaders['train'])

    def train_steps(self, k: int) -> None:
        self.model.train()
        for _ in range(k):
            try:
                data = next(self._iter)
            except (AttributeError, StopIteration):
                self._iter = iter(self.loaders['train'])
                data = next(self._iter)
            self.model.train_step(data, self.optim)

    def evaluate(self, split: str) -> dict:
        metric = self._metrics.build(self.metric_cfg)
        self.model.eval()
        with self.torch.no_grad():
            for data in self.loaders[split]:
                metric.process(data, self.model.val_step(data))
        out = metric.compute_metrics(metric.results)
        return {
            'recall@10': out['recall@10'],
            'hit@10': out['recall@10'],
            'ndcg@10': out['ndcg@10'],
            'mrr@10': out['mrr@10'],
            'events': int(out['num_events'])
        }
