"""Parity of mmext.SASRec with RecBole 1.2.1's SASRec on identical weights and histories.

RecBole lives in its own virtual environment (``tools/benchmark/setup_recbole_env.sh``; numpy < 2),
so its side runs in a subprocess that writes RecBole's weights, inputs, outputs and parameter
gradients to a file; the test loads the weights into ours and compares.  Skipped when that
environment has not been set up.  Ours in RecBole's configuration: ``norm='post'`` (input
LayerNorm, post-LN blocks, no ``sqrt(d)``), ``ffn_dropout=0``, GELU, ``norm_eps=1e-12``,
``position_origin='left'``.  RecBole right-pads histories, ours left-pads them.
"""
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from mmext.models.recommenders import SASRec

VENV = Path(
    os.environ.get(
        'MMEXT_RECBOLE_VENV',
        Path(os.environ.get('XDG_CACHE_HOME',
                            Path.home() / '.cache')) / 'mmext' / 'recbole-venv'))
PYTHON = VENV / 'bin' / 'python'
N_ITEMS, MAX_LEN = 300, 50

RECBOLE_SIDE = textwrap.dedent('''
    import sys
    import torch
    import torch.nn.functional as F
    from recbole.model.sequential_recommender.sasrec import SASRec

    class Dataset:  # the one thing RecBole's constructor asks the dataset: the item count
        def num(self, field):
            return {n_items} + 1  # RecBole counts the padding id 0 as an item

    config = dict(USER_ID_FIELD='user_id', ITEM_ID_FIELD='item_id', LIST_SUFFIX='_list',
                  ITEM_LIST_LENGTH_FIELD='item_length', NEG_PREFIX='neg_',
                  MAX_ITEM_LIST_LENGTH={max_len}, device='cpu', n_layers=2, n_heads=2,
                  hidden_size=64, inner_size=256, hidden_dropout_prob=0.5,
                  attn_dropout_prob=0.5, hidden_act='gelu', layer_norm_eps=1e-12,
                  initializer_range=0.02, loss_type='CE')
    torch.manual_seed(0)
    model = SASRec(config, Dataset()).eval()  # eval: dropout off on both sides
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([1, 3, 10, 17, 25, 33, 41, 49, 50, 50])
    seq = torch.randint(1, {n_items} + 1, (len(lengths), {max_len}), generator=g)
    seq[torch.arange({max_len}) >= lengths[:, None]] = 0  # right padding
    target = torch.randint(1, {n_items} + 1, (len(lengths),), generator=g)
    hidden = model.forward(seq, lengths)
    scores = hidden @ model.item_embedding.weight.t()
    # the loss our CE computes (the padding id is no class); RecBole's own CE also counts
    # column 0, whose embedding is a fixed random row
    loss = F.cross_entropy(scores[:, 1:], target - 1)
    loss.backward()
    grads = {{n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}}
    torch.save(dict(state=model.state_dict(), seq=seq, lengths=lengths, target=target,
                    hidden=hidden.detach(), scores=scores.detach(), loss=loss.detach(),
                    recbole_loss=model.calculate_loss(dict(item_id_list=seq, item_length=lengths,
                                                           item_id=target)).detach(),
                    grads=grads), sys.argv[1])
''').format(
    n_items=N_ITEMS, max_len=MAX_LEN)


def _recbole_available() -> bool:
    if not PYTHON.exists():
        return False
    probe = subprocess.run([str(PYTHON), '-c', 'import recbole'], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _recbole_available(),
    reason=f'no RecBole venv at {VENV} (tools/benchmark/'
    'setup_recbole_env.sh)')


def _to_ours(key: str) -> str:
    """RecBole parameter name -> ours (query/key/value are stacked into ``qkv`` separately)."""
    names = {
        'item_embedding': 'item_embedding',
        'position_embedding': 'pos_embedding',
        'LayerNorm': 'input_norm'
    }
    head, _, rest = key.partition('.')
    if head in names:
        return f'{names[head]}.{rest}'
    parts = key.split('.')  # trm_encoder.layer.<i>.<sub>.<module>.<param>
    i, sub, mod, param = parts[2], parts[3], parts[4], parts[5]
    block = {
        ('multi_head_attention', 'dense'): 'out_proj',
        ('multi_head_attention', 'LayerNorm'): 'attn_norm',
        ('feed_forward', 'dense_1'): 'ffn.0',
        ('feed_forward', 'dense_2'): 'ffn.3',
        ('feed_forward', 'LayerNorm'): 'ffn_norm'
    }[sub, mod]
    return f'blocks.{i}.{block}.{param}'


def _stack_qkv(tensors: dict, i: int, param: str) -> torch.Tensor:
    prefix = f'trm_encoder.layer.{i}.multi_head_attention.'
    return torch.cat([tensors[f'{prefix}{n}.{param}'] for n in ('query', 'key', 'value')])


def _convert(tensors: dict) -> dict:
    out = {}
    for key, value in tensors.items():
        if any(f'.{n}.' in key for n in ('query', 'key', 'value')):
            continue
        out[_to_ours(key)] = value
    for i in range(2):
        for param in ('weight', 'bias'):
            out[f'blocks.{i}.qkv.{param}'] = _stack_qkv(tensors, i, param)
    return out


@pytest.fixture(scope='module')
def recbole_side(tmp_path_factory):
    work = tmp_path_factory.mktemp('recbole_sasrec')
    script, dump = work / 'side.py', work / 'side.pt'
    script.write_text(RECBOLE_SIDE)
    subprocess.run([str(PYTHON), str(script), str(dump)], check=True, capture_output=True, cwd=work)
    return torch.load(dump)


def test_outputs_scores_loss_and_gradients_match_recbole(recbole_side):
    ref = recbole_side
    model = SASRec(
        num_items=N_ITEMS,
        max_len=MAX_LEN,
        embed_dims=64,
        num_blocks=2,
        num_heads=2,
        ffn_dims=256,
        dropout=0.5,
        ffn_dropout=0.0,
        act='gelu',
        norm='post',
        norm_eps=1e-12,
        loss='ce',
        init_std=0.02,
        position_origin='left').eval()
    model.load_state_dict(_convert(ref['state']), strict=True)
    # ours left-pads: move each row's items to the right end
    seq = torch.zeros_like(ref['seq'])
    for row, n in enumerate(ref['lengths'].tolist()):
        seq[row, MAX_LEN - n:] = ref['seq'][row, :n]
    hidden = model(dict(seq=seq))[:, -1]
    torch.testing.assert_close(hidden, ref['hidden'], atol=1e-5, rtol=0)
    scores = hidden @ model.item_embedding.weight.t()
    torch.testing.assert_close(scores[:, 1:], ref['scores'][:, 1:], atol=1e-5, rtol=0)
    # our training loss on the same targets (its positions: the newest item of each row)
    target = torch.zeros_like(seq)
    target[:, -1] = ref['target']
    loss = model(dict(seq=seq, target=target), mode='loss')['loss']
    torch.testing.assert_close(loss, ref['loss'], atol=1e-5, rtol=0)
    # RecBole's own CE also has the padding id as a class; its row is tiny: nearly the same
    assert abs(float(ref['recbole_loss']) - loss.item()) < 1e-2
    loss.backward()
    grads = _convert(ref['grads'])
    assert grads.keys() == {n for n, p in model.named_parameters()}
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], atol=1e-5, rtol=0, msg=name)
