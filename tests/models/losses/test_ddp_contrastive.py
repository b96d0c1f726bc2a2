"""2 gloo ranks under DDP (4 + 3 rows) vs 1 process on the concatenated 7-row batch: the same
loss (mean over ranks), the same gradients after DDP's averaging and the same queues, for
CLIPLoss (every valid local_loss / gather_with_grad mode) and ITCLoss (hard / soft / idx targets,
with and without queues, momentum or online keys).  One spawn runs every scenario."""
import socket

import ddp_contrastive_worker as W  # noqa: N812  (sits next to this file)
import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    mp.spawn(W.worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ranks = [torch.load(out / f'rank{r}.pth', weights_only=True) for r in range(2)]
    return W.run_scenarios(), ranks


EXACT = [name for name in W.SCENARIOS if name != 'clip_openclip_naive']


@pytest.mark.parametrize('name', EXACT)
def test_ddp_matches_single_process(runs, name):
    single, ranks = runs
    for step, ref in enumerate(single[name]):
        got = [r[name][step] for r in ranks]
        # the ranks' mean loss is the global-batch loss
        mean_loss = (got[0]['loss'] + got[1]['loss']) / 2
        torch.testing.assert_close(
            mean_loss, ref['loss'], atol=1e-5, rtol=1e-5, msg=f'{name} step {step} loss')
        assert set(got[0]['grads']) == set(ref['grads'])
        for key, g in ref['grads'].items():
            for r in range(2):  # DDP averaged: identical on both ranks and equal to single
                torch.testing.assert_close(
                    got[r]['grads'][key],
                    g,
                    atol=1e-5,
                    rtol=1e-5,
                    msg=f'{name} step {step} rank {r} grad {key}')
        if 'queue' in ref:
            for key, v in ref['queue'].items():
                for r in range(2):
                    torch.testing.assert_close(
                        got[r]['queue'][key],
                        v,
                        atol=1e-6,
                        rtol=0,
                        msg=f'{name} step {step} rank {r} queue {key}')


def test_queue_really_wrapped(runs):
    single, _ = runs
    q = single['itc_soft_queue_idx'][-1]['queue']
    # 3 steps x 7 rows into 12 slots: 21 writes, pointer at 21 % 12, every slot used
    assert int(q['ptr']) == (W.STEPS * W.GLOBAL_BATCH) % 12
    assert int(q['num_filled']) == 12
    assert (q['idx_queue'] >= 0).all()


def test_openclip_default_mode_is_off_by_world_size(runs):
    """Why CLIPLoss scales the local slice's gradient: without it (open_clip's default gather),
    encoder gradients after DDP averaging are 1/W of the global-batch gradient, while the logit
    scale's is exact."""
    _, ranks = runs
    naive = ranks[0]['clip_openclip_naive'][0]['grads']
    # the reference: the same loss computed exactly (gather with grad) in the same run
    exact = ranks[0]['clip_global_grad'][0]['grads']
    for key in ('img.weight', 'txt.weight'):
        torch.testing.assert_close(naive[key] * 2, exact[key], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(naive['img.weight'], exact['img.weight'], atol=1e-5)
    torch.testing.assert_close(
        naive['loss_fn.logit_scale'], exact['loss_fn.logit_scale'], atol=1e-5, rtol=1e-5)
