"""Both sides trained in turn (whole epochs or ``--steps``), evaluated, and compared per user."""
import json
import os.path as osp
import time

from .ours import OursFromConfig, OursSASRec
from .recbole_side import RecBoleProcess, RecordedRecBole, recbole_config

__all__ = ['run_pair', 'run_steps', 'check_ranks', 'paired_difference']

# tools/benchmark/../..: the repository root, for the configs
_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def run_pair(args, name: str, python: str, work: str, data_kw: dict, dataset: str) -> dict:
    import numpy as np
    import torch
    from timing import interleaved

    torch.set_num_threads(args.threads)
    if args.reuse_recbole:
        ref = RecordedRecBole(args.reuse_recbole, args, name)
    else:
        ref = RecBoleProcess(
            python,
            dict(
                model=name,
                dataset=dataset,
                threads=args.threads,
                config=dict(recbole_config(args, name), data_path=work)),
            cwd=work)
    if name == 'SASRec':
        ours = OursSASRec(args, data_kw)
        # Same split: the same training targets per epoch and the same evaluated users.
        info = dict(
            recbole=ref.info,
            ours=dict(
                num_items=ours.train_set.metainfo['num_items'],
                train_targets=ours.num_targets,
                valid_events=len(ours.val_set),
                test_events=len(ours.test_set),
                batch_size=ours.batch_size,
                params=sum(p.numel() for p in ours.model.parameters()),
                dropped=dict(
                    val=ours.val_set.metainfo['stats']['val_targets_dropped'],
                    test=ours.test_set.metainfo['stats']['test_targets_dropped'])))
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
        ours = OursFromConfig(
            osp.join(_ROOT, 'configs', 'gru4rec', 'gru4rec_ml100k_loo.py'),
            dict(
                embedding='separate',
                embedding_dim=64,
                hidden_sizes=(128, ),
                dropout_p_embed=0.3,
                dropout_p_hidden=0.0), args.seed)
        ds = ours.loaders['train'].dataset
        info = dict(
            recbole=ref.info,
            ours=dict(
                num_items=int(ours.model.num_items),
                config=ours.cfg.filename,
                stats={
                    k: v
                    for k, v in ds.metainfo.items() if isinstance(v, (int, float, str))
                },
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
        print(
            f'  epoch {len(walls["mmext"])}: recbole {walls["recbole"][-1]:.1f} s '
            f'(cpu {cpus["recbole"][-1]:.1f}, loss {ref.last["loss"]:.1f}), mmext '
            f'{walls["mmext"][-1]:.1f} s (cpu {cpus["mmext"][-1]:.1f}, loss '
            f'{ours.last["loss"]:.1f}){msg}',
            flush=True)

    interleaved({'recbole': ref_epoch, 'mmext': our_epoch}, repeats=args.epochs - 1, warmup=1)
    if not args.eval_every_epoch:
        for side in history:
            evaluate(side)
    quality = {side: history[side][-1] for side in history}
    ref.close()
    # the first (warm-up) epoch is trained but not timed
    times = {
        side:
        dict(
            wall=float(np.median(walls[side][1:])),
            cpu=float(np.median(cpus[side][1:])),
            cpu_epochs=cpus[side],
            wall_epochs=walls[side])
        for side in walls
    }
    result = dict(model=name, info=info, times=times, quality=quality)
    if args.reuse_recbole:
        result['recbole_replayed_from'] = args.reuse_recbole
    if args.eval_every_epoch:
        # the usual protocol: each side's test numbers at its own best validation NDCG@10
        best = {
            side: max(range(len(h)), key=lambda e: h[e]['valid']['ndcg@10'])
            for side, h in history.items()
        }
        result.update(
            history=history,
            best_epoch={
                s: e + 1
                for s, e in best.items()
            },
            best_quality={
                s: history[s][e]
                for s, e in best.items()
            })
    if all('ranks' in history[side][-1]['valid'] for side in history):
        n = len(history['mmext'])
        result['paired'] = {
            f'epochs {first + 1}-{n}': {
                f'{split} {metric}@10': paired_difference(history, split, metric, range(first, n))
                for split in ('valid', 'test')
                for metric in ('ndcg', 'recall')
            }
            for first in sorted({n - 1, n // 3})
        }
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
    users = sorted(
        set(history['mmext'][epochs[0]][split]['ranks'])
        & set(history['recbole'][epochs[0]][split]['ranks']))
    per_user = {}
    for side in ('mmext', 'recbole'):
        values = []
        for e in epochs:
            r = np.asarray([history[side][e][split]['ranks'][u] for u in users])
            values.append(ranking_metric_values(r[:, 0], r[:, 1], metric, 10, 'average'))
        per_user[side] = np.mean(values, axis=0)
    diff = per_user['mmext'] - per_user['recbole']
    return dict(
        users=len(users),
        mmext=float(per_user['mmext'].mean()),
        recbole=float(per_user['recbole'].mean()),
        diff=float(diff.mean()),
        se=float(diff.std(ddof=1) / np.sqrt(len(users))))


def run_steps(args, name: str, ref: 'RecBoleProcess', ours, info: dict) -> dict:
    """Seconds per epoch from ``--steps`` optimiser steps per call (same targets per step on
    both sides for SASRec), times each side's steps per epoch; no quality."""
    import numpy as np
    from timing import interleaved

    steps = {'recbole': ref.info['steps_per_epoch'], 'mmext': ours.steps_per_epoch}
    # the same fraction of an epoch on both sides per call
    k = {
        'recbole': args.steps,
        'mmext': max(1, round(args.steps * steps['mmext'] / steps['recbole']))
    }
    ref_samples = []

    def ref_call():
        ref.train_steps(k['recbole'])
        ref_samples.append((ref.last['wall'], ref.last['cpu']))

    samples = interleaved({
        'recbole': ref_call,
        'mmext': lambda: ours.train_steps(k['mmext'])
    },
                          repeats=args.repeats,
                          warmup=1)
    per_call = {
        'recbole': np.median(np.asarray(ref_samples[1:]), axis=0),
        'mmext': np.median(np.asarray([(s.wall, s.cpu) for s in samples['mmext']]), axis=0)
    }
    ref.close()
    times = {
        side:
        dict(
            wall=float(per_call[side][0] / k[side] * steps[side]),
            cpu=float(per_call[side][1] / k[side] * steps[side]),
            steps_per_epoch=steps[side],
            steps_per_call=k[side])
        for side in per_call
    }
    return dict(
        model=name, info=info, times=times, quality=None, steps=args.steps, repeats=args.repeats)
