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
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Optional, Sequence

from recbole_bench.compare import check_ranks, paired_difference, run_pair  # noqa: F401
from recbole_bench.data import write_recbole_split
from recbole_bench.recbole_side import WORKER_ARG, RecordedRecBole, recbole_worker  # noqa: F401
from recbole_bench.report import report

# check_ranks, paired_difference and RecordedRecBole are used by tests/tools/test_bench_recbole.py


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['sasrec'], choices=['sasrec', 'gru4rec'])
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--threads', type=int, default=1, help='torch threads on each side')
    parser.add_argument(
        '--steps',
        type=int,
        default=0,
        help='timing only: time calls of this many optimiser steps instead of '
        'whole epochs and scale by the steps per epoch (no quality)')
    parser.add_argument('--repeats', type=int, default=3, help='timed calls with --steps')
    parser.add_argument('--max-len', type=int, default=50)
    parser.add_argument(
        '--train-stride',
        type=int,
        default=None,
        help='our training windows start every this many items (default '
        'max_len: no overlap); smaller gives every target more history')
    parser.add_argument(
        '--batch-targets',
        type=int,
        default=2048,
        help="RecBole's train_batch_size (targets per step on both sides)")
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument(
        '--dropout',
        type=float,
        default=0.5,
        help="SASRec's dropout (RecBole's hidden and attention dropout)")
    parser.add_argument(
        '--ours-dropout',
        type=float,
        default=None,
        help="our SASRec's dropout when it should differ from RecBole's: one "
        'forward per window shares a dropout mask among its targets, where '
        'RecBole draws one per prefix (default: --dropout)')
    parser.add_argument('--seed', type=int, default=2020)
    parser.add_argument(
        '--eval-every-epoch',
        action='store_true',
        help='evaluate both sides after every epoch (untimed) and also report '
        "each side's test numbers at its best validation NDCG@10 epoch")
    parser.add_argument(
        '--recbole-python',
        default=None,
        help='python of the RecBole venv (default: set it up / reuse it with '
        'tools/benchmark/setup_recbole_env.sh)')
    parser.add_argument(
        '--holdout-shift',
        type=int,
        default=0,
        metavar='K',
        help="drop every user's last K interactions before the split, so "
        'that validation and test fall K positions earlier')
    parser.add_argument(
        '--ours-model',
        type=json.loads,
        default=None,
        metavar='JSON',
        help='override arguments of our SASRec, e.g. \'{"norm": "post", '
        '"ffn_dropout": 0, "position_origin": "left"}\' (RecBole\'s model)')
    parser.add_argument(
        '--reuse-recbole',
        metavar='FILE',
        default=None,
        help="replay RecBole's side from an earlier --json of this script "
        '(made with --eval-every-epoch and the same RecBole settings) instead '
        'of training it again')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
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
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    here = osp.dirname(osp.abspath(__file__))
    sys.path.insert(0, here)  # timing.py
    python = None if args.reuse_recbole else args.recbole_python or subprocess.run(
        ['bash', osp.join(here, 'setup_recbole_env.sh')],
        check=True,
        capture_output=True,
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
            what = (f'{args.repeats} timed calls of {args.steps} RecBole steps'
                    if args.steps else f'{args.epochs} epochs')
            print(
                f'== {name}, {what}, {args.threads} thread(s) per side, seed {args.seed}, '
                f'max_len {args.max_len}',
                flush=True)
            if model == 'sasrec':
                print(
                    f'   dropout: RecBole {args.dropout}, mmext {args.ours_dropout}; '
                    f'mmext train_stride {args.train_stride}',
                    flush=True)
            result = run_pair(args, name, python, work, data_kw, dataset)
            print(report(result), flush=True)
            results.append(result)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), results=results), f, indent=1)


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == WORKER_ARG:  # RecBole's side, in RecBole's venv
        recbole_worker(json.loads(sys.argv[2]))
    else:
        main()
