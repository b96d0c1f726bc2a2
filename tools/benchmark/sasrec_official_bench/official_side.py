"""pmixer/SASRec.pytorch's side: a worker run in the official venv
(``setup_sasrec_official_env.sh``) as ``python bench_sasrec_official.py --official-worker
SPEC.json``.

It imports ``model.py`` and ``utils.py`` from the checkout given to the benchmark (nothing of it
is copied here) and trains the way the checkout's ``python/main.py`` does: ``data_partition``,
a ``WarpSampler`` with 3 worker processes, ``SASRec(usernum, itemnum, args)`` with Xavier-normal
initialisation of every parameter that accepts it and zeroed padding rows of both embeddings,
``BCEWithLogitsLoss`` on the positive and on the negative logits of the positions whose target
is not padding, the ``l2_emb`` term, Adam with betas (0.9, 0.98), ``(users - 1) // batch + 1``
steps per epoch, and its per-step ``print`` of the loss (kept, written to ``/dev/null``).
What ``main.py`` adds and this worker does not: its command line, the checkpoint and log files,
and the evaluation every 20 epochs (done after training here, untimed).  The worker seeds
``random``, ``numpy`` and ``torch`` (``main.py`` seeds nothing; the sampler's workers take
their seeds from numpy's global generator).

CPU time per epoch counts this process and the sampler's processes
(:func:`.cputime.tree_cpu_seconds`).
"""
import argparse
import contextlib
import json
import os
import random
import sys
import time

from .cputime import tree_cpu_seconds
from .protocol import rank_counts

__all__ = ['official_worker']


def official_worker(spec: dict) -> None:
    import numpy as np
    import torch
    torch.set_num_threads(spec['threads'])
    sys.path.insert(0, os.path.join(spec['checkout'], 'python'))
    os.chdir(spec['data_root'])  # utils.data_partition reads data/<name>.txt
    import model as official_model
    import utils as official_utils

    seed = spec['seed']
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    args = argparse.Namespace(device='cpu', **spec['args'])
    dataset = official_utils.data_partition(spec['name'])
    user_train, user_valid, user_test, usernum, itemnum = dataset
    num_batch = (len(user_train) - 1) // args.batch_size + 1
    info = dict(
        users=usernum,
        items=itemnum,
        evaluated=sum(len(v) > 0 for v in user_test.values()),
        train_targets=sum(min(max(len(s) - 1, 0), args.maxlen) for s in user_train.values()),
        steps_per_epoch=num_batch,
        torch=torch.__version__,
        numpy=np.__version__)
    sampler = official_utils.WarpSampler(
        user_train, usernum, itemnum, batch_size=args.batch_size, maxlen=args.maxlen, n_workers=3)
    model = official_model.SASRec(usernum, itemnum, args).to(args.device)
    for _, param in model.named_parameters():
        try:
            torch.nn.init.xavier_normal_(param.data)
        except ValueError:  # 1-D parameters (biases, LayerNorm): main.py skips them too
            pass
    model.pos_emb.weight.data[0, :] = 0
    model.item_emb.weight.data[0, :] = 0
    info['params'] = sum(p.numel() for p in model.parameters())
    model.train()
    bce = torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98))
    epochs = []
    with open(os.devnull, 'w') as devnull:
        for epoch in range(1, spec['epochs'] + 1):
            wall, cpu = time.perf_counter(), tree_cpu_seconds()
            total = 0.
            with contextlib.redirect_stdout(devnull):
                for step in range(num_batch):
                    u, seq, pos, neg = (np.array(x) for x in sampler.next_batch())
                    pos_logits, neg_logits = model(u, seq, pos, neg)
                    pos_labels = torch.ones(pos_logits.shape, device=args.device)
                    neg_labels = torch.zeros(neg_logits.shape, device=args.device)
                    optimizer.zero_grad()
                    where = np.where(pos != 0)
                    loss = bce(pos_logits[where], pos_labels[where])
                    loss += bce(neg_logits[where], neg_labels[where])
                    for param in model.item_emb.parameters():
                        loss += args.l2_emb * torch.sum(param**2)
                    loss.backward()
                    optimizer.step()
                    value = loss.item()
                    print(f'loss in epoch {epoch} iteration {step}: {value}')
                    total += value
            end = tree_cpu_seconds()
            epochs.append(
                dict(
                    wall=time.perf_counter() - wall,
                    cpu_self=end['self'] - cpu['self'],
                    cpu_children=end['children'] - cpu['children'],
                    loss=total / num_batch))
            print(f'[official] epoch {epoch}: {epochs[-1]}', file=sys.stderr, flush=True)
    model.eval()
    tasks = dict(np.load(spec['tasks']))
    items = np.arange(itemnum + 1)

    def score_fn(hist: np.ndarray):
        return model.predict(None, hist, items)  # [B, itemnum + 1]

    wall = time.perf_counter()
    result = dict(info=info, epochs=epochs)
    result['counts'] = {split: rank_counts(score_fn, tasks, split) for split in ('val', 'test')}
    result['eval_wall'] = time.perf_counter() - wall
    if spec.get('own_eval'):
        # the official evaluation for reference: 100 sampled negatives, <= 10,000 random users
        with torch.no_grad(), open(os.devnull, 'w') as devnull, \
                contextlib.redirect_stdout(devnull):
            valid = official_utils.evaluate_valid(model, dataset, args)
            test = official_utils.evaluate(model, dataset, args)
        result['own_eval'] = dict(
            val={
                'ndcg@10': float(valid[0]),
                'hr@10': float(valid[1])
            },
            test={
                'ndcg@10': float(test[0]),
                'hr@10': float(test[1])
            })
    sampler.close()
    with open(spec['out'], 'w') as f:
        json.dump(result, f)
