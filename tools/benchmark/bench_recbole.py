"""Our SASRec and GRU4Rec vs RecBole 1.2.1's on the same MovieLens-100K leave-one-out split.

    bash tools/benchmark/setup_recbole_env.sh          # once: RecBole in its own venv
    python tools/benchmark/bench_recbole.py --models sasrec gru4rec --epochs 8   # time + quality
    python tools/benchmark/bench_recbole.py --models sasrec gru4rec --steps 3    # time only
    python tools/benchmark/bench_recbole.py --models sasrec --epochs 6 --train-stride 10 \
        --eval-every-epoch          # + quality after every epoch, best-validation-epoch test

``--steps K`` (for slow, shared machines) times calls of K RecBole optimiser steps against calls
covering the same fraction of our epoch, and scales both to seconds per epoch; no quality.

Both sides train in this one run, epoch by epoch in turn (``timing.interleaved``: RecBole's
epoch, ours, RecBole's, ...), so load on a shared machine hits both alike.  RecBole runs in a
child process of its own venv (numpy < 2, see setup_recbole_env.sh) that trains one epoch per
command and reports its own wall and CPU seconds; ours runs in this process.

Same data: the interactions are read and ordered once here (mmext's reader, stable time order,
ties in file order), and written as a RecBole atomic file whose timestamp is each event's rank
in that order, so RecBole's ``LS`` / ``valid_and_test`` / ``TO`` split puts exactly the same item
last (test) and second-to-last (validation) for every user.  The script checks that both sides
train on the same number of targets per epoch and evaluate the same users (RecBole also scores
the few held-out items never seen in training, which mmext drops and counts; both counts are
printed).

Same work per epoch: RecBole trains on every prefix of each training sequence (one target per
sample, ``MAX_ITEM_LIST_LENGTH`` items of history).  Ours trains on windows of ``max_len`` that
end every ``--train-stride`` targets and take the loss on their ``--train-stride`` newest
positions (default ``max_len``: non-overlapping windows, a loss at every position), so every
target is trained once per epoch either way; ``--train-stride 1`` is RecBole's per-prefix
scheme (one loss position per window, which our model computes in about half a full forward
pass: see ``SASRec.encode``).  The batch size of ours is set so that one step holds about as
many targets as RecBole's ``train_batch_size``, hence the same number of optimiser steps per
epoch.  Hyper-parameters are RecBole's defaults for SASRec (hidden 64, 2
layers, 2 heads, inner 256, dropout 0.5, GELU, N(0, 0.02) init, CE loss, Adam 1e-3); what
differs by design is listed in docs/components/sasrec.md (pre-LN blocks and sqrt(d) embedding
scale in ours, post-LN BERT blocks with an input LayerNorm in RecBole's).

Quality: after the last epoch, HR@10 (= Recall@10 with one held-out item), NDCG@10 and MRR@10 on
the validation and test users, full ranking over all items, seen items not excluded (RecBole's
protocol for sequential models).  With ``--eval-every-epoch`` both sides are evaluated after every
epoch (outside the timed training) and the report adds each side's test numbers at its own best
validation NDCG@10 epoch (the usual model-selection protocol); ``--json`` keeps the curves.
RecBole runs with ``reproducibility=True``: for a given seed its curve is deterministic.

Paired comparison: both sides also return each evaluated user's rank of the held-out item
(RecBole's from its own full-sort scoring code, checked against its NDCG@10), and the report
adds mmext − RecBole over the users both sides evaluate, each user's metric averaged over the
late epochs, with its standard error across users: the sampling noise of 943 held-out events.
``--holdout-shift K`` removes every user's last K interactions before the split (both sides read
the one written file), so a gap that belongs to particular held-out events moves from
validation to test with ``K=1``, and one that belongs to the validation role stays.

Variants of ours: ``--ours-model '{"norm": "post", ...}'`` overrides our SASRec's arguments
(``'{"norm": "post", "ffn_dropout": 0, "position_origin": "left"}'`` is RecBole's model exactly,
see tests/models/recommenders/test_sasrec_recbole_parity.py).  Since RecBole's curve is
deterministic per seed, ``--reuse-recbole FILE`` replays RecBole's side (per-epoch results,
per-user ranks and times) from an earlier ``--json`` of this script instead of training it
again (about 200 CPU s per SASRec epoch); the script refuses a file whose RecBole settings
(seed, epochs, split, hyper-parameters) differ from this run's.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

_WORKER_ARG = '--recbole-worker'


# ---------------------------------------------------------------------------------------------
# RecBole side: runs in RecBole's venv, speaks JSON lines on stdin/stdout.  No mmext import here.
# ---------------------------------------------------------------------------------------------
def recbole_worker(spec: dict) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # RecBole and tqdm print; keep stdout for the protocol
    import torch
    torch.set_num_threads(spec['threads'])
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = Config(model=spec['model'], dataset=spec['dataset'], config_dict=spec['config'])
    init_seed(config['seed'], config['reproducibility'])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config['seed'], config['reproducibility'])
    model = get_model(config['model'])(config, train_data._dataset).to(config['device'])
    trainer = get_trainer(config['MODEL_TYPE'], config['model'])(config, model)

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + '\n')
        out.flush()

    reply(dict(ready=True, num_items=int(dataset.item_num) - 1,
               num_users=int(dataset.user_num) - 1, train_targets=len(train_data._dataset),
               valid_events=len(valid_data._dataset), test_events=len(test_data._dataset),
               params=sum(p.numel() for p in model.parameters()),
               steps_per_epoch=len(train_data)))

    @torch.no_grad()
    def event_ranks(data) -> dict:
        """``{user token: [greater, ties]}``: the candidates RecBole's full-sort evaluation
        scores above / level with each user's held-out item (its own scoring code)."""
        model.eval()
        uid, ranks = config['USER_ID_FIELD'], {}
        for batched in data:
            interaction, scores, pos_u, pos_i = trainer._full_sort_batch_eval(batched)
            target = scores[pos_u, pos_i][:, None]
            greater = (scores[pos_u] > target).sum(1).tolist()
            ties = ((scores[pos_u] == target).sum(1) - 1).tolist()
            users = dataset.id2token(uid, interaction[uid][pos_u].cpu().numpy())
            ranks.update({str(u): [g, t] for u, g, t in zip(users, greater, ties)})
        return ranks

    epoch = 0
    batches = None
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == 'train':
            wall, cpu = time.perf_counter(), time.process_time()
            loss = trainer._train_epoch(train_data, epoch)
            reply(dict(loss=float(loss), wall=time.perf_counter() - wall,
                       cpu=time.process_time() - cpu))
            epoch += 1
        elif cmd.startswith('steps '):  # the body of Trainer._train_epoch, K batches
            wall, cpu = time.perf_counter(), time.process_time()
            model.train()
            for _ in range(int(cmd.split()[1])):
                try:
                    interaction = next(batches)
                except (StopIteration, TypeError):
                    batches = iter(train_data)
                    interaction = next(batches)
                interaction = interaction.to(trainer.device)
                trainer.optimizer.zero_grad()
                loss = model.calculate_loss(interaction)
                loss.backward()
                trainer.optimizer.step()
            reply(dict(loss=float(loss), wall=time.perf_counter() - wall,
                       cpu=time.process_time() - cpu))
        elif cmd in ('valid', 'test'):
            data = valid_data if cmd == 'valid' else test_data
            result = trainer.evaluate(data, load_best_model=False)
            reply(dict({k.lower(): float(v) for k, v in result.items()},
                       ranks=event_ranks(data)))
        elif cmd == 'quit':
            break
        else:
            reply(dict(error=f'unknown command {cmd!r}'))


class RecBoleProcess:
    """One RecBole model in a child process of RecBole's venv."""

    def __init__(self, python: str, spec: dict, cwd: str) -> None:
        self.proc = subprocess.Popen(
            [python, osp.abspath(__file__), _WORKER_ARG, json.dumps(spec)], cwd=cwd,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(osp.join(cwd,
                                                                             'recbole.log'), 'a'),
            text=True)
        self.info = self._read()
        self.last: dict = {}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'the RecBole worker exited (code {self.proc.poll()}); see '
                               'recbole.log in the benchmark work dir')
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + '\n')
        self.proc.stdin.flush()
        reply = self._read()
        if 'error' in reply:
            raise RuntimeError(reply['error'])
        return reply

    def train_epoch(self) -> None:
        self.last = self.ask('train')

    def train_steps(self, k: int) -> None:
        self.last = self.ask(f'steps {k}')

    def close(self) -> None:
        try:
            self.ask('quit')
        except Exception:
            pass
        self.proc.wait(timeout=60)


# RecBole settings that decide its curve; a replayed run must have been made with the same ones
_RECBOLE_ARGS = ('models', 'max_len', 'batch_targets', 'lr', 'dropout', 'seed', 'holdout_shift')


class RecordedRecBole:
    """RecBole's side replayed from an earlier ``--json`` of this script (``--reuse-recbole``):
    the same interface as :class:`RecBoleProcess`, answering from the recorded epochs."""

    def __init__(self, path: str, args, name: str) -> None:
        with open(path) as f:
            saved = json.load(f)
        old = saved['args']
        old.setdefault('holdout_shift', 0)  # files from before --holdout-shift existed
        diff = {k: (old.get(k), getattr(args, k)) for k in _RECBOLE_ARGS
                if old.get(k) != getattr(args, k)}
        if diff:
            raise ValueError(f'--reuse-recbole {path}: recorded with other RecBole settings '
                             f'(recorded, now): {diff}')
        result = next((r for r in saved['results'] if r['model'] == name), None)
        if result is None or 'history' not in result:
            raise ValueError(f'--reuse-recbole {path}: no per-epoch {name} history (record it '
                             'with --eval-every-epoch)')
        self.history = result['history']['recbole']
        if len(self.history) < args.epochs:
            raise ValueError(f'--reuse-recbole {path}: {len(self.history)} recorded epochs, '
                             f'{args.epochs} asked for')
        self.times = result['times']['recbole']
        self.info = result['info']['recbole']
        self.epoch = 0
        self.last: dict = {}

    def train_epoch(self) -> None:
        e = self.epoch
        self.epoch += 1
        self.last = dict(wall=self.times['wall_epochs'][e], cpu=self.times['cpu_epochs'][e],
                         loss=float('nan'))

    def ask(self, split: str) -> dict:
        return self.history[self.epoch - 1][split]

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# mmext side
# ---------------------------------------------------------------------------------------------
def write_recbole_split(path_dir: str, name: str, users, sequences) -> str:
    """The ordered interactions as a RecBole atomic file; timestamp = rank in our order."""
    os.makedirs(osp.join(path_dir, name), exist_ok=True)
    path = osp.join(path_dir, name, f'{name}.inter')
    with open(path, 'w') as f:
        f.write('user_id:token\titem_id:token\ttimestamp:float\n')
        rank = 0
        for user, seq in zip(users, sequences):
            for item in seq:
                f.write(f'{user}\t{item}\t{rank}\n')
                rank += 1
    return path


def recbole_config(args, model: str) -> dict:
    common = dict(
        USER_ID_FIELD='user_id', ITEM_ID_FIELD='item_id', TIME_FIELD='timestamp',
        load_col=dict(inter=['user_id', 'item_id', 'timestamp']),
        user_inter_num_interval='[0,inf)', item_inter_num_interval='[0,inf)',
        MAX_ITEM_LIST_LENGTH=args.max_len, train_neg_sample_args=None, loss_type='CE',
        eval_args=dict(split=dict(LS='valid_and_test'), order='TO', group_by='user',
                       mode='full'),
        metrics=['Recall', 'NDCG', 'MRR', 'Hit'], topk=[10], valid_metric='NDCG@10',
        epochs=args.epochs, train_batch_size=args.batch_targets, eval_batch_size=4096,
        learning_rate=args.lr, learner='adam', weight_decay=0.0, seed=args.seed,
        reproducibility=True, show_progress=False, use_gpu=False, gpu_id='', worker=0,
        state='WARNING', log_wandb=False, save_dataset=False, save_dataloaders=False,
        checkpoint_dir='saved')
    if model == 'GRU4Rec':
        common.update(embedding_size=64, hidden_size=128, num_layers=1, dropout_prob=0.3)
    if model == 'SASRec':
        common.update(n_layers=2, n_heads=2, hidden_size=64, inner_size=256,
                      hidden_dropout_prob=args.dropout, attn_dropout_prob=args.dropout,
                      hidden_act='gelu', layer_norm_eps=1e-12, initializer_range=0.02)
    return common


class OursSASRec:
    """Our SASRec with RecBole's hyper-parameters, trained with a plain loop (as the Runner's
    train step does: forward(mode='loss'), backward, Adam step)."""

    def __init__(self, args, data_kw: dict) -> None:
        import numpy as np
        import torch

        from mmext.datasets.recsys import LeaveOneOutSequenceDataset
        from mmext.models.recommenders import SASRec
        self.np, self.torch = np, torch
        self.train_set = LeaveOneOutSequenceDataset(split='train', train_windows='all',
                                                    train_stride=args.train_stride, **data_kw)
        self.val_set = LeaveOneOutSequenceDataset(split='val', **data_kw)
        self.test_set = LeaveOneOutSequenceDataset(split='test', **data_kw)
        self.num_targets = sum(int((self.train_set[i]['target'] > 0).sum())
                               for i in range(len(self.train_set)))
        # as many targets per step as RecBole's batch of prefixes: same steps per epoch
        self.batch_size = max(1, round(args.batch_targets * len(self.train_set) /
                                       self.num_targets))
        torch.manual_seed(args.seed)
        kwargs = dict(num_items=self.train_set.metainfo['num_items'], max_len=args.max_len,
                      embed_dims=64, num_blocks=2, num_heads=2, ffn_dims=256,
                      dropout=args.ours_dropout, act='gelu', norm='pre', norm_eps=1e-12,
                      loss='ce', init_std=0.02)
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
        metric = RankingMetric(topk=[10], metrics=['recall', 'ndcg', 'mrr'],
                               tie_policy='average', exclude_seen=False)
        self.model.eval()
        with self.torch.no_grad():
            for batch in self._batches(ds, range(len(ds)), 512):
                metric.process(None, self.model(**batch, mode='predict'))
        out = metric.compute_metrics(metric.results)
        tokens = ds.metainfo['user_map']['tokens']  # sample 'user' u is the (u+1)-th token
        users = [tokens[info['user']] for info in ds.data_list]
        return {'recall@10': out['recall@10'], 'hit@10': out['recall@10'],
                'ndcg@10': out['ndcg@10'], 'mrr@10': out['mrr@10'],
                'ranks': {u: list(map(int, r)) for u, r in zip(users, metric.results)}}


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
        torch.manual_seed(seed)
        with DefaultScope.overwrite_default_scope('mmext'):
            self.model = MODELS.build(cfg.model)
            self.loaders = {'train': Runner.build_dataloader(cfg.train_dataloader, seed=seed),
                            'valid': Runner.build_dataloader(cfg.val_dataloader, seed=seed),
                            'test': Runner.build_dataloader(cfg.test_dataloader, seed=seed)}
            self.optim = build_optim_wrapper(self.model, cfg.optim_wrapper)
            self.metric_cfg = dict(type='RankingMetric', topk=[10],
                                   metrics=['recall', 'ndcg', 'mrr'], tie_policy='average',
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
        return {'recall@10': out['recall@10'], 'hit@10': out['recall@10'],
                'ndcg@10': out['ndcg@10'], 'mrr@10': out['mrr@10'],
                'events': int(out['num_events'])}


def run_pair(args, name: str, python: str, work: str, data_kw: dict, dataset: str) -> dict:
    import numpy as np
    import torch
    from timing import interleaved

    torch.set_num_threads(args.threads)
    if args.reuse_recbole:
        ref = RecordedRecBole(args.reuse_recbole, args, name)
    else:
        ref = RecBoleProcess(python, dict(model=name, dataset=dataset, threads=args.threads,
                                          config=dict(recbole_config(args, name),
                                                      data_path=work)), cwd=work)
    if name == 'SASRec':
        ours = OursSASRec(args, data_kw)
        # Same split: the same training targets per epoch and the same evaluated users.
        info = dict(recbole=ref.info, ours=dict(
            num_items=ours.train_set.metainfo['num_items'], train_targets=ours.num_targets,
            valid_events=len(ours.val_set), test_events=len(ours.test_set),
            batch_size=ours.batch_size,
            params=sum(p.numel() for p in ours.model.parameters()),
            dropped=dict(val=ours.val_set.metainfo['stats']['val_targets_unseen'],
                         test=ours.test_set.metainfo['stats']['test_targets_unseen'])))
        print(json.dumps(info), flush=True)
        if ref.info['train_targets'] != ours.num_targets:
            raise AssertionError(f'the two sides train on different targets: {info}')
        if ref.info['test_events'] != len(ours.test_set) + info['ours']['dropped']['test']:
            raise AssertionError(f'the two sides evaluate different users: {info}')
    else:
        # RecBole's GRU4Rec defaults: item embedding 64, one GRU layer of 128, dropout 0.3 on
        # the embedding, full-softmax CE, Adam 1e-3.  Ours keeps its own training scheme
        # (session-parallel mini-batches, sampled negatives, the config's optimiser) with the
        # same sizes and dropout.
        ours = OursFromConfig(osp.join(osp.dirname(osp.dirname(osp.dirname(
            osp.abspath(__file__)))), 'configs', 'gru4rec', 'gru4rec_ml100k_loo.py'),
            dict(embedding='separate', embedding_dim=64, hidden_sizes=(128, ),
                 dropout_p_embed=0.3, dropout_p_hidden=0.0), args.seed)
        ds = ours.loaders['train'].dataset
        info = dict(recbole=ref.info, ours=dict(
            num_items=int(ours.model.num_items), config=ours.cfg.filename,
            stats={k: v for k, v in ds.metainfo.items() if isinstance(v, (int, float, str))},
            params=sum(p.numel() for p in ours.model.parameters())))
        print(json.dumps(info, default=str), flush=True)

    if args.steps:
        return run_steps(args, name, ref, ours, info)
    walls = {'recbole': [], 'mmext': []}
    cpus = {'recbole': [], 'mmext': []}

    # quality after every epoch (outside the timed training), for the best-validation epoch
    history = {'recbole': [], 'mmext': []}

    def evaluate(side: str) -> None:
        fn = ref.ask if side == 'recbole' else ours.evaluate
        history[side].append({split: fn(split) for split in ('valid', 'test')})
        if side == 'recbole' and 'ranks' in history[side][-1]['valid']:
            for split, out in history[side][-1].items():
                check_ranks(out, split)

    def ref_epoch():
        ref.train_epoch()
        walls['recbole'].append(ref.last['wall'])
        cpus['recbole'].append(ref.last['cpu'])
        if args.eval_every_epoch:
            evaluate('recbole')

    def our_epoch():
        wall, cpu = time.perf_counter(), time.process_time()
        ours.train_epoch()
        walls['mmext'].append(time.perf_counter() - wall)
        cpus['mmext'].append(time.process_time() - cpu)
        if args.eval_every_epoch:
            evaluate('mmext')
        msg = ''
        if args.eval_every_epoch:
            # recall too, so that an interrupted long run still leaves both target metrics
            msg = (' | val/test ndcg@10 recbole {:.4f}/{:.4f} mmext {:.4f}/{:.4f}'
                   ' | recall@10 recbole {:.4f}/{:.4f} mmext {:.4f}/{:.4f}').format(
                *(history[s][-1][sp][m] for m in ('ndcg@10', 'recall@10')
                  for s in ('recbole', 'mmext') for sp in ('valid', 'test')))
        print(f'  epoch {len(walls["mmext"])}: recbole {walls["recbole"][-1]:.1f} s '
              f'(cpu {cpus["recbole"][-1]:.1f}, loss {ref.last["loss"]:.1f}), mmext '
              f'{walls["mmext"][-1]:.1f} s (cpu {cpus["mmext"][-1]:.1f}, loss '
              f'{ours.last["loss"]:.1f}){msg}', flush=True)

    interleaved({'recbole': ref_epoch, 'mmext': our_epoch}, repeats=args.epochs - 1, warmup=1)
    if not args.eval_every_epoch:
        for side in history:
            evaluate(side)
    quality = {side: history[side][-1] for side in history}
    ref.close()
    # the first (warm-up) epoch is trained but not timed
    times = {side: dict(wall=float(np.median(walls[side][1:])),
                        cpu=float(np.median(cpus[side][1:])),
                        cpu_epochs=cpus[side], wall_epochs=walls[side]) for side in walls}
    result = dict(model=name, info=info, times=times, quality=quality)
    if args.reuse_recbole:
        result['recbole_replayed_from'] = args.reuse_recbole
    if args.eval_every_epoch:
        # the usual protocol: each side's test numbers at its own best validation NDCG@10
        best = {side: max(range(len(h)), key=lambda e: h[e]['valid']['ndcg@10'])
                for side, h in history.items()}
        result.update(history=history, best_epoch={s: e + 1 for s, e in best.items()},
                      best_quality={s: history[s][e] for s, e in best.items()})
    if all('ranks' in history[side][-1]['valid'] for side in history):
        n = len(history['mmext'])
        result['paired'] = {
            f'epochs {first + 1}-{n}': {f'{split} {metric}@10': paired_difference(
                history, split, metric, range(first, n))
                for split in ('valid', 'test') for metric in ('ndcg', 'recall')}
            for first in sorted({n - 1, n // 3})}
    return result


def check_ranks(out: dict, split: str) -> None:
    """The per-user ranks the RecBole worker returns must give back RecBole's own NDCG@10."""
    import numpy as np

    from mmext.evaluation.metrics.ranking import ranking_metric_values
    ranks = np.asarray(list(out['ranks'].values()))
    ndcg = ranking_metric_values(ranks[:, 0], ranks[:, 1], 'ndcg', 10, 'optimistic').mean()
    if abs(ndcg - out['ndcg@10']) > 1e-4:
        raise AssertionError(f'RecBole {split}: NDCG@10 from per-user ranks {ndcg:.5f} != '
                             f"its evaluator's {out['ndcg@10']:.5f}")


def paired_difference(history: dict, split: str, metric: str, epochs: range) -> dict:
    """mmext − RecBole on the users both sides evaluate: each user's metric@10 averaged over
    ``epochs``, then the mean difference and its standard error across users.  Users are the
    sampling unit (one held-out event each); a user's epochs are not independent draws, so
    the epoch average enters as one number per user."""
    import numpy as np

    from mmext.evaluation.metrics.ranking import ranking_metric_values
    users = sorted(set(history['mmext'][epochs[0]][split]['ranks']) &
                   set(history['recbole'][epochs[0]][split]['ranks']))
    per_user = {}
    for side in ('mmext', 'recbole'):
        values = []
        for e in epochs:
            r = np.asarray([history[side][e][split]['ranks'][u] for u in users])
            values.append(ranking_metric_values(r[:, 0], r[:, 1], metric, 10, 'average'))
        per_user[side] = np.mean(values, axis=0)
    diff = per_user['mmext'] - per_user['recbole']
    return dict(users=len(users), mmext=float(per_user['mmext'].mean()),
                recbole=float(per_user['recbole'].mean()), diff=float(diff.mean()),
                se=float(diff.std(ddof=1) / np.sqrt(len(users))))


def run_steps(args, name: str, ref: 'RecBoleProcess', ours, info: dict) -> dict:
    """Seconds per epoch from ``--steps`` optimiser steps per call (same targets per step on
    both sides for SASRec), times each side's steps per epoch; no quality."""
    import numpy as np
    from timing import interleaved

    steps = {'recbole': ref.info['steps_per_epoch'], 'mmext': ours.steps_per_epoch}
    # the same fraction of an epoch on both sides per call
    k = {'recbole': args.steps,
         'mmext': max(1, round(args.steps * steps['mmext'] / steps['recbole']))}
    ref_samples = []

    def ref_call():
        ref.train_steps(k['recbole'])
        ref_samples.append((ref.last['wall'], ref.last['cpu']))

    samples = interleaved({'recbole': ref_call,
                           'mmext': lambda: ours.train_steps(k['mmext'])},
                          repeats=args.repeats, warmup=1)
    per_call = {'recbole': np.median(np.asarray(ref_samples[1:]), axis=0),
                'mmext': np.median(np.asarray([(s.wall, s.cpu) for s in samples['mmext']]),
                                   axis=0)}
    ref.close()
    times = {side: dict(wall=float(per_call[side][0] / k[side] * steps[side]),
                        cpu=float(per_call[side][1] / k[side] * steps[side]),
                        steps_per_epoch=steps[side], steps_per_call=k[side])
             for side in per_call}
    return dict(model=name, info=info, times=times, quality=None, steps=args.steps,
                repeats=args.repeats)


def report(result: dict) -> str:
    if result['quality'] is None:
        t = result['times']
        lines = [f"{result['model']}: seconds per epoch = median seconds per call "
                 f"({result['repeats']} timed calls, each the same fraction of an epoch on "
                 'both sides) / steps per call x steps per epoch',
                 '| | RecBole 1.2.1 | mmext | mmext / RecBole |', '|---|---|---|---|',
                 f"| steps per epoch (per call) | {t['recbole']['steps_per_epoch']} "
                 f"({t['recbole']['steps_per_call']}) | {t['mmext']['steps_per_epoch']} "
                 f"({t['mmext']['steps_per_call']}) | |"]
        for key in ('wall', 'cpu'):
            lines.append(f"| {key} s/epoch | {t['recbole'][key]:.2f} | {t['mmext'][key]:.2f} | "
                         f"{t['mmext'][key] / t['recbole'][key]:.3f} |")
        return '\n'.join(lines)
    t, q = result['times'], result['quality']
    lines = [f"{result['model']}: seconds per epoch (median of epochs 2..N) and quality after "
             f"the last epoch"]
    if 'recbole_replayed_from' in result:
        lines.append(f"(RecBole's side replayed from {result['recbole_replayed_from']}: its "
                     'times come from that run)')
    lines += ['| | RecBole 1.2.1 | mmext | mmext / RecBole |', '|---|---|---|---|']
    for key in ('wall', 'cpu'):
        lines.append(f"| {key} s/epoch | {t['recbole'][key]:.2f} | {t['mmext'][key]:.2f} | "
                     f"{t['mmext'][key] / t['recbole'][key]:.3f} |")
    for split in ('valid', 'test'):
        for m in ('ndcg@10', 'recall@10', 'mrr@10'):
            r, o = q['recbole'][split][m], q['mmext'][split][m]
            lines.append(f'| {split} {m} | {r:.4f} | {o:.4f} | {o / r if r else float("nan"):.3f} |')
    if 'best_quality' in result:
        b, e = result['best_quality'], result['best_epoch']
        lines.append(f"| best-validation epoch | {e['recbole']} | {e['mmext']} | |")
        for split in ('valid', 'test'):
            for m in ('ndcg@10', 'recall@10', 'mrr@10'):
                r, o = b['recbole'][split][m], b['mmext'][split][m]
                lines.append(f'| best-val epoch: {split} {m} | {r:.4f} | {o:.4f} | '
                             f'{o / r if r else float("nan"):.3f} |')
    for epochs, rows in result.get('paired', {}).items():
        lines.append(f'paired over the users both sides evaluate, each user averaged over '
                     f'{epochs}: mmext − RecBole ± standard error across users')
        lines += ['| | users | RecBole | mmext | difference ± SE | difference / SE |',
                  '|---|---|---|---|---|---|']
        for name, p in rows.items():
            lines.append(f"| {name} | {p['users']} | {p['recbole']:.4f} | {p['mmext']:.4f} | "
                         f"{p['diff']:+.4f} ± {p['se']:.4f} | {p['diff'] / p['se']:+.2f} |")
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['sasrec'], choices=['sasrec', 'gru4rec'])
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--threads', type=int, default=1, help='torch threads on each side')
    parser.add_argument('--steps', type=int, default=0,
                        help='timing only: time calls of this many optimiser steps instead of '
                        'whole epochs and scale by the steps per epoch (no quality)')
    parser.add_argument('--repeats', type=int, default=3, help='timed calls with --steps')
    parser.add_argument('--max-len', type=int, default=50)
    parser.add_argument('--train-stride', type=int, default=None,
                        help='our training windows start every this many items (default '
                        'max_len: no overlap); smaller gives every target more history')
    parser.add_argument('--batch-targets', type=int, default=2048,
                        help="RecBole's train_batch_size (targets per step on both sides)")
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--dropout', type=float, default=0.5,
                        help="SASRec's dropout (RecBole's hidden and attention dropout)")
    parser.add_argument('--ours-dropout', type=float, default=None,
                        help="our SASRec's dropout when it should differ from RecBole's: one "
                        'forward per window shares a dropout mask among its targets, where '
                        'RecBole draws one per prefix (default: --dropout)')
    parser.add_argument('--seed', type=int, default=2020)
    parser.add_argument('--eval-every-epoch', action='store_true',
                        help='evaluate both sides after every epoch (untimed) and also report '
                        "each side's test numbers at its best validation NDCG@10 epoch")
    parser.add_argument('--recbole-python', default=None,
                        help='python of the RecBole venv (default: set it up / reuse it with '
                        'tools/benchmark/setup_recbole_env.sh)')
    parser.add_argument('--holdout-shift', type=int, default=0, metavar='K',
                        help="drop every user's last K interactions before the split, so "
                        'that validation and test fall K positions earlier')
    parser.add_argument('--ours-model', type=json.loads, default=None, metavar='JSON',
                        help='override arguments of our SASRec, e.g. \'{"norm": "post", '
                        '"ffn_dropout": 0, "position_origin": "left"}\' (RecBole\'s model)')
    parser.add_argument('--reuse-recbole', metavar='FILE', default=None,
                        help="replay RecBole's side from an earlier --json of this script "
                        '(made with --eval-every-epoch and the same RecBole settings) instead '
                        'of training it again')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args()
    if args.ours_model is not None and not isinstance(args.ours_model, dict):
        parser.error(f'--ours-model must be a JSON object, got {args.ours_model!r}')
    if args.reuse_recbole and (args.steps or not args.eval_every_epoch):
        parser.error('--reuse-recbole replays per-epoch results: use it with '
                     '--eval-every-epoch and without --steps')
    if args.ours_dropout is None:
        args.ours_dropout = args.dropout
    if args.holdout_shift and args.models != ['sasrec']:
        parser.error('--holdout-shift is implemented for --models sasrec only (our GRU4Rec '
                     'reads its split from its config)')

    here = osp.dirname(osp.abspath(__file__))
    sys.path.insert(0, here)  # timing.py
    python = None if args.reuse_recbole else args.recbole_python or subprocess.run(
        ['bash', osp.join(here, 'setup_recbole_env.sh')], check=True, capture_output=True,
        text=True).stdout.strip().splitlines()[-1]

    from mmext.datasets.recsys import ml100k_path
    from mmext.datasets.recsys.sequence_dataset import leave_one_out_sequences
    raw = leave_one_out_sequences(ml100k_path())
    sequences = raw['sequences']
    if args.holdout_shift:
        # each user's last K interactions are removed: validation and test move K positions
        # back in every history (a check that a gap between them follows the events, not the
        # role of the split)
        sequences = [s[:-args.holdout_shift] for s in sequences]
    results = []
    with tempfile.TemporaryDirectory(prefix='bench_recbole_') as work:
        dataset = 'mmext-ml100k-loo'
        # both sides read this one file
        path = write_recbole_split(work, dataset, raw['users'], sequences)
        data_kw = dict(ann_file=path, max_len=args.max_len)
        for model in args.models:
            name = {'sasrec': 'SASRec', 'gru4rec': 'GRU4Rec'}[model]
            what = (f'{args.repeats} timed calls of {args.steps} RecBole steps' if args.steps
                    else f'{args.epochs} epochs')
            print(f'== {name}, {what}, {args.threads} thread(s) per side, seed {args.seed}, '
                  f'max_len {args.max_len}', flush=True)
            if model == 'sasrec':
                print(f'   dropout: RecBole {args.dropout}, mmext {args.ours_dropout}; '
                      f'mmext train_stride {args.train_stride}', flush=True)
            result = run_pair(args, name, python, work, data_kw, dataset)
            print(report(result), flush=True)
            results.append(result)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), results=results), f, indent=1)


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == _WORKER_ARG:
        recbole_worker(json.loads(sys.argv[2]))
    else:
        main()
