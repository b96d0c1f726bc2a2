"""The official GRU4Rec's side of ``bench_gru4rec_official.py``: a worker that runs in the official
code's own venv (numpy < 2, pandas; see ``setup_gru4rec_official_env.sh``) and never imports
mmext.

    python official_worker.py SPEC_JSON

``SPEC_JSON`` names the checkout of hidasib/GRU4Rec_PyTorch_Official (``repo``), the training and
test files (TAB separated ``SessionId ItemId Time``, written by the benchmark from mmext's split),
the official parameter string (``params``), ``seed``, ``threads`` and the evaluation's number of
parallel sessions (``eval_batch``).  The worker trains with the official ``GRU4Rec.fit`` and
evaluates with the official ``evaluation.batch_eval``, unchanged.  Only the epoch boundaries are
observed: the official data iterator's ``__call__`` (one call per epoch) is wrapped so that each
epoch starts when the benchmark sends ``train`` on stdin and, when it ends, the worker answers
one JSON line with the epoch's wall and process-CPU seconds, its steps and the official loss
bookkeeping.  That lets the benchmark interleave the two sides epoch by epoch.  ``eval`` then
answers recall and MRR.  Everything the official code prints goes to stderr.
"""
import json
import sys
import time


def main() -> None:
    spec = json.loads(sys.argv[1])
    protocol = sys.stdout
    sys.stdout = sys.stderr  # the official code prints; stdout carries the protocol only
    import torch
    torch.set_num_threads(spec['threads'])
    sys.path.insert(0, spec['repo'])
    import evaluation
    import gru4rec_pytorch
    import numpy as np
    import pandas as pd
    from gru4rec_pytorch import GRU4Rec, SessionDataIterator

    def reply(obj: dict) -> None:
        protocol.write(json.dumps(obj) + '\n')
        protocol.flush()

    def command() -> str:
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)  # the benchmark went away
        return line.strip()

    original_call = SessionDataIterator.__call__

    def timed_epoch(self, enable_neg_samples, reset_hook=None):
        """One training epoch of the official iterator, started on ``train`` and timed."""
        if command() != 'train':
            raise RuntimeError('expected "train"')
        wall, cpu, steps = time.perf_counter(), time.process_time(), 0
        for batch in original_call(self, enable_neg_samples, reset_hook):
            steps += 1
            yield batch
        reply(dict(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu, steps=steps))

    read = dict(
        sep='\t',
        usecols=['SessionId', 'ItemId', 'Time'],
        dtype={
            'SessionId': 'int32',
            'ItemId': 'str'
        })
    train = pd.read_csv(spec['train'], **read)
    test = pd.read_csv(spec['test'], **read)
    torch.manual_seed(spec['seed'])
    np.random.seed(spec['seed'])
    gru = GRU4Rec(device=torch.device('cpu'))
    gru.set_params(**dict(kv.split('=') for kv in spec['params'].split(',')))
    reply(
        dict(
            ready=True,
            train_events=len(train),
            test_events=len(test),
            version=getattr(gru4rec_pytorch, '__file__', '')))
    SessionDataIterator.__call__ = timed_epoch
    try:
        gru.fit(train, sample_cache_max_size=spec.get('sample_store_size', 10000000))
    finally:
        SessionDataIterator.__call__ = original_call
    if gru.error_during_train:
        reply(dict(error='the official fit stopped on a NaN loss'))
        return
    if command() != 'eval':
        raise RuntimeError('expected "eval"')
    wall = time.perf_counter()
    n_sessions = int(test['SessionId'].nunique())
    # run.py evaluates 512 sessions in parallel, which fails when the test set has fewer
    recall, mrr = evaluation.batch_eval(
        gru,
        test,
        cutoff=spec['cutoffs'],
        batch_size=min(spec['eval_batch'], n_sessions),
        mode=spec['eval_mode'])
    reply(
        dict(
            recall={
                str(k): float(v)
                for k, v in recall.items()
            },
            mrr={
                str(k): float(v)
                for k, v in mrr.items()
            },
            eval_wall=time.perf_counter() - wall,
            eval_sessions=n_sessions))


if __name__ == '__main__':
    main()
