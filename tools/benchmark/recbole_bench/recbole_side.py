"""RecBole's side: a worker in RecBole's venv speaking JSON lines on stdin/stdout (no mmext import
there), the process that drives it, and the replay of a recorded run (``--reuse-recbole``)."""
import json
import os.path as osp
import subprocess
import sys
import time

__all__ = [
    'WORKER_ARG', 'ENTRY_POINT', 'recbole_worker', 'RecBoleProcess', 'RecordedRecBole',
    'recbole_config'
]

WORKER_ARG = '--recbole-worker'
# the worker runs as ``python bench_recbole.py --recbole-worker SPEC`` in RecBole's venv
ENTRY_POINT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'bench_recbole.py')


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

    reply(
        dict(
            ready=True,
            num_items=int(dataset.item_num) - 1,
            num_users=int(dataset.user_num) - 1,
            train_targets=len(train_data._dataset),
            valid_events=len(valid_data._dataset),
            test_events=len(test_data._dataset),
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
            reply(
                dict(
                    loss=float(loss),
                    wall=time.perf_counter() - wall,
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
            reply(
                dict(
                    loss=float(loss),
                    wall=time.perf_counter() - wall,
                    cpu=time.process_time() - cpu))
        elif cmd in ('valid', 'test'):
            data = valid_data if cmd == 'valid' else test_data
            result = trainer.evaluate(data, load_best_model=False)
            reply(dict({k.lower(): float(v) for k, v in result.items()}, ranks=event_ranks(data)))
        elif cmd == 'quit':
            break
        else:
            reply(dict(error=f'unknown command {cmd!r}'))


class RecBoleProcess:
    """One RecBole model in a child process of RecBole's venv."""

    def __init__(self, python: str, spec: dict, cwd: str) -> None:
        self.proc = subprocess.Popen(
            [python, ENTRY_POINT, WORKER_ARG, json.dumps(spec)],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(osp.join(cwd, 'recbole.log'), 'a'),
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
        diff = {
            k: (old.get(k), getattr(args, k))
            for k in _RECBOLE_ARGS if old.get(k) != getattr(args, k)
        }
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
        self.last = dict(
            wall=self.times['wall_epochs'][e], cpu=self.times['cpu_epochs'][e], loss=float('nan'))

    def ask(self, split: str) -> dict:
        return self.history[self.epoch - 1][split]

    def close(self) -> None:
        pass


def recbole_config(args, model: str) -> dict:
    common = dict(
        USER_ID_FIELD='user_id',
        ITEM_ID_FIELD='item_id',
        TIME_FIELD='timestamp',
        load_col=dict(inter=['user_id', 'item_id', 'timestamp']),
        user_inter_num_interval='[0,inf)',
        item_inter_num_interval='[0,inf)',
        MAX_ITEM_LIST_LENGTH=args.max_len,
        train_neg_sample_args=None,
        loss_type='CE',
        eval_args=dict(split=dict(LS='valid_and_test'), order='TO', group_by='user', mode='full'),
        metrics=['Recall', 'NDCG', 'MRR', 'Hit'],
        topk=[10],
        valid_metric='NDCG@10',
        epochs=args.epochs,
        train_batch_size=args.batch_targets,
        eval_batch_size=4096,
        learning_rate=args.lr,
        learner='adam',
        weight_decay=0.0,
        seed=args.seed,
        reproducibility=True,
        show_progress=False,
        use_gpu=False,
        gpu_id='',
        worker=0,
        state='WARNING',
        log_wandb=False,
        save_dataset=False,
        save_dataloaders=False,
        checkpoint_dir='saved')
    if model == 'GRU4Rec':
        common.update(embedding_size=64, hidden_size=128, num_layers=1, dropout_prob=0.3)
    if model == 'SASRec':
        common.update(
            n_layers=2,
            n_heads=2,
            hidden_size=64,
            inner_size=256,
            hidden_dropout_prob=args.dropout,
            attn_dropout_prob=args.dropout,
            hidden_act='gelu',
            layer_norm_eps=1e-12,
            initializer_range=0.02)
    return common
