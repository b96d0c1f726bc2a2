"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018
(https://arxiv.org/abs/1808.09781; official TensorFlow code: github.com/kang205/SASRec).

A user's item history ``s_1 .. s_L`` (left-padded with item 0) is embedded as
``E_0 = sqrt(d) * M[s_t] + P_t`` (Sec. III-B, item embedding ``M`` scaled as in the official code,
learned positions ``P``), passed through ``b`` causal self-attention blocks (Sec. III-C/D, eq. 2-4)
and a final LayerNorm; the relevance of item ``i`` after step ``t`` is ``r_{i,t} = F_t . M_i``
(eq. 6, *shared* input/output embedding).  Each block is

* ``norm='pre'`` (default): ``x = x + Drop(MHA(LN(x)))``; ``x = x + Drop(FFN(LN(x)))``;
* ``norm='query_only'`` (the official code): ``q = LN(x)``; ``x = q + MHA(q, x, x)``;
  ``x = LN'(x)``; ``x = x + Drop(FFN(x))``: keys and values see the un-normalised input and both
  residuals start from the normalised tensor;
* ``norm='post'`` (the BERT layout RecBole uses): ``x = LN(x + Drop(MHA(x)))``;
  ``x = LN'(x + Drop(FFN(x)))``; the input is then ``E_0 = Drop(LN(M[s_t] + P_t))`` (no
  ``sqrt(d)`` scale, a LayerNorm on the embedding sum) and there is no final LayerNorm.

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` with a boolean
mask that is causal (position ``t`` sees ``j <= t``) and hides padded keys (written out as
``softmax(QK^T / sqrt(d_h) + bias)`` when training with attention dropout).  Padding is masked
everywhere: embeddings and every block output are zeroed at padded positions, padded keys are
never attended to, and padded positions carry no loss.

At ``d = 50`` a training step is dominated by work on padding and by per-element costs that are
not arithmetic (configs/sasrec/README.md, "Where the time goes"), hence three exact shortcuts:
the blocks run on the packed non-padded positions only, attention per group of histories of
similar length (:class:`PackedLayout`), and dropout masks come from random 64-bit words instead
of ``bernoulli_`` (:class:`BitDropout`).

Training objectives (``loss``):

* ``'bce'`` (the paper, eq. 7): at every position with a target, binary cross-entropy of the
  positive item against the batch's negatives (or ``num_negatives`` drawn by the model),
  averaged over those positions;
* ``'ce'``: softmax cross-entropy over all items (padding excluded) at every position with a
  target, averaged over those positions (Klenitskiy & Vasilev, RecSys 2023 "Turning Dross Into
  Gold Loss: is BERT4Rec really better than SASRec?" show it is much stronger).

Prediction (``mode='predict'``) scores the history's last position against all items
(``eval_mode='full'``) or against the target and the negatives the dataset sampled for the user
(``eval_mode='sampled'``: 100 negatives in the paper and RecBole's ``uni100``), returning the
``{'scores', 'target', 'exclude'}`` dicts that :class:`mmext.RankingMetric` consumes.
"""
import math
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmext.registry import MODELS

from .base import (BaseRecommender, check_item_ids, num_items_from_dataset, reject_options,
                   renamed_option)

__all__ = ['SASRec', 'SASRecBlock', 'BitDropout', 'PackedLayout']

_ACTIVATIONS = {'relu': nn.ReLU, 'gelu': nn.GELU}
_NORMS = ('pre', 'query_only', 'post')


class BitDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` whose keep-mask comes from 16 random bits per element.

    On CPU, the ``bernoulli_`` that ``nn.Dropout`` draws its mask with costs about 12 ns per
    element: 3.7 ms for a ``[128, 50, 50]`` tensor, more than a SASRec block's matrix products at
    d = 50 (configs/sasrec/README.md, "Where the time goes").  Whole 64-bit words from
    ``random_`` cost about 0.4 ns per byte.  An element is kept iff its 16 bits, read as an
    int16 ``v``, satisfy ``v >= -32768 + round(p * 65536)``: the drop probability is ``p``
    rounded to a multiple of 1/65536 (exact for 0.5; off by < 8e-6 otherwise).  Kept elements
    are scaled by ``1 / (1 - p)`` as in ``nn.Dropout``, and the module has the same ``p``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.:
            return x
        return x * bit_dropout_mask(x, self.p)


def bit_dropout_mask(x: Tensor, p: float) -> Tensor:
    """The scaled keep-mask of :class:`BitDropout`: ``(1 / (1 - p)) * [kept]``, shape and dtype
    of ``x``."""
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
    bits = words.random_(-2**63, None).view(torch.int16)[:n].view(x.shape)  # all 64 bits
    return (bits >= -32768 + round(p * 65536)).to(x.dtype).mul_(1. / (1. - p))


class PackedLayout:
    """Where the ``T`` non-padded positions of a ``[B, L]`` batch go, for attention by length
    group.

    Rows (histories) are grouped by span (``L`` minus the column of their oldest item) at the
    edges ``8, 16, 32, ...``; a group of ``n_g`` rows whose longest span is ``L_g`` attends in a
    padded ``[n_g, L_g]`` layout of its own.  Attention costs ``sum_g n_g * L_g^2`` instead of
    ``B * L^2``: on the official code's Video set (mean history 7 items, max_len 50) about 15x
    less.  Exact: a row only ever attends within itself, and the columns a group leaves out are
    padding of each of its rows.

    Attributes:
        index: ``[T]`` flat indices into ``B * L`` of the non-padded positions, ordered by group
            (then row, then column): the packed order of :meth:`SASRecBlock.forward_packed`.
        groups: per group ``(start, stop, dest, rows, span, mask)``: its positions are
            ``index[start:stop]``, at rows ``dest`` of its ``[n_g * L_g]`` layout; ``mask``
            ``[n_g, 1, L_g, L_g]`` bool (True = may attend).
    """

    EDGES = (8, 16, 32)

    def __init__(self, valid: Tensor, attn_mask: Tensor) -> None:
        b, length = valid.shape
        device = valid.device
        has = valid.any(1)
        oldest = torch.where(has,
                             valid.int().argmax(1), torch.full_like(has, length, dtype=torch.long))
        span = length - oldest  # [B]; 0 for a row without items
        edges = torch.tensor([e for e in self.EDGES if e < length] + [length], device=device)
        group = torch.bucketize(span, edges)  # [B]: first edge >= span
        flat = valid.flatten().nonzero().squeeze(1)  # [T] in row-major order
        row = flat // length
        order = torch.argsort(group[row] * (b * length) + flat)
        self.index = flat[order]
        self.batch, self.length = b, length
        self.groups: List[tuple] = []
        token_group = group[row[order]]
        counts = torch.bincount(token_group, minlength=len(edges)).tolist()
        start = 0
        for g, count in enumerate(counts):
            if count == 0:
                continue
            rows = (group == g).nonzero().squeeze(1)  # [n_g], ascending
            width = int(span[rows].max())
            idx = self.index[start:start + count]
            r, c = idx // length, idx % length
            slot = torch.searchsorted(rows, r)  # row's place within the group
            dest = slot * width + (c - (length - width))
            cols = slice(length - width, length)
            self.groups.append((start, start + count, dest, rows, width, attn_mask[rows][:, :, cols,
                                                                                         cols]))
            start += count


class SASRecBlock(nn.Module):
    """One self-attention block: causal multi-head attention and a point-wise feed-forward net.

    Args:
        embed_dims: Hidden size ``d``.
        num_heads: Attention heads; must divide ``embed_dims``.
        ffn_dims: Inner size of the feed-forward net (the paper uses ``d``).
        dropout: Dropout on the sub-layer outputs.
        attn_dropout: Dropout on the attention weights.
        ffn_dropout: Dropout after the feed-forward net's activation (``dropout`` in the
            official code; RecBole has none there: 0).
        attn_output_dropout: Dropout on the attention sub-layer's output before the residual
            sum; ``None`` means ``dropout``.  pmixer/SASRec.pytorch's blocks have none there (0):
            its ``nn.MultiheadAttention`` only drops attention weights.
        act: ``'relu'`` (paper) or ``'gelu'`` (RecBole).
        norm: ``'pre'``, ``'query_only'`` or ``'post'`` (see the module docstring).
        norm_eps: LayerNorm epsilon (1e-8 in the official code).

    Two layouts of the same computation: :meth:`forward` on padded ``[B, L, d]`` tensors, and
    :meth:`forward_packed` on the ``[T, d]`` non-padded positions only, which the position-wise
    layers (LayerNorms, projections, feed-forward net, dropouts) then cost in proportion to the
    real items rather than to ``B * L`` (short histories are mostly padding).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 ffn_dims: int,
                 dropout: float,
                 attn_dropout: float,
                 act: str = 'relu',
                 norm: str = 'pre',
                 norm_eps: float = 1e-8,
                 ffn_dropout: Optional[float] = None,
                 attn_output_dropout: Optional[float] = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = norm
        self.attn_dropout = attn_dropout
        self.attn_drop = BitDropout(attn_dropout)
        self.attn_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)
        self.ffn_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dims, ffn_dims), _ACTIVATIONS[act](),
            BitDropout(dropout if ffn_dropout is None else ffn_dropout),
            nn.Linear(ffn_dims, embed_dims))
        self.drop = BitDropout(dropout)
        self.attn_out_drop = self.drop if attn_output_dropout is None else BitDropout(
            attn_output_dropout)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Scaled dot-product attention (eq. 2): ``q`` ``[B, h, Lq, d_h]``, ``k``, ``v``
        ``[B, h, L, d_h]``, ``mask`` ``[B, 1, Lq, L]`` bool (True = may attend)."""
        if not (self.training and self.attn_dropout > 0):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        # With dropout, SDPA's CPU path draws its mask with bernoulli_: write it out instead,
        # the mask as an additive bias, the weights' dropout as BitDropout.
        b, h, lq, dh = q.shape
        length = k.size(2)
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill_(~mask, float('-inf')).expand(b, h, lq, length)
        scores = torch.baddbmm(
            bias.reshape(b * h, lq, length),
            q.reshape(b * h, lq, dh),
            k.reshape(b * h, length, dh).transpose(1, 2),
            alpha=dh**-0.5)
        weights = self.attn_drop(scores.softmax(-1))
        return torch.bmm(weights, v.reshape(b * h, length, dh)).view(b, h, lq, dh)

    def _qkv(self, query: Tensor, key_value: Tensor) -> Tensor:
        """``[..., 3d]``: the query projection of ``query`` and the key and value projections of
        ``key_value`` (same leading shape)."""
        if query is key_value:
            return self.qkv(query)
        d = query.size(-1)
        w_q, w_kv = self.qkv.weight.split([d, 2 * d])
        b_q, b_kv = self.qkv.bias.split([d, 2 * d])
        return torch.cat([F.linear(query, w_q, b_q), F.linear(key_value, w_kv, b_kv)], -1)

    def _attention(self, query: Tensor, key_value: Tensor, mask: Tensor) -> Tensor:
        """``query`` ``[B, Lq, d]`` attends to ``key_value`` ``[B, L, d]`` (``Lq <= L``: the
        queries are the last ``Lq`` positions)."""
        b, length, d = query.shape
        h = self.num_heads
        if query is key_value:
            q, k, v = self.qkv(query).chunk(3, dim=-1)
        else:  # queries from another tensor (LN(x)) or only the newest positions
            w_q, w_kv = self.qkv.weight.split([d, 2 * d])
            b_q, b_kv = self.qkv.bias.split([d, 2 * d])
            q = F.linear(query, w_q, b_q)
            k, v = F.linear(key_value, w_kv, b_kv).chunk(2, dim=-1)
        q = q.view(b, length, h, d // h).transpose(1, 2)
        k, v = (t.view(b, -1, h, d // h).transpose(1, 2) for t in (k, v))
        out = self._attend(q, k, v, mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, length, d))

    def _attention_packed(self, query: Tensor, key_value: Tensor, layout: 'PackedLayout') -> Tensor:
        """Attention of packed positions: ``query``, ``key_value`` ``[T, d]`` in the order of
        ``layout.index``; returns ``[T, d]``.  Projections run on the ``T`` rows; the products
        of eq. 2 run per length group of ``layout``, in its padded layout (zeros at padding,
        which the mask hides)."""
        d, h = query.size(-1), self.num_heads
        qkv = self._qkv(query, key_value)  # [T, 3d]
        outs = []
        for start, stop, dest, rows, width, mask in layout.groups:
            n = len(rows)
            padded = qkv.new_zeros(n * width, 3 * d).index_copy(0, dest, qkv[start:stop])
            q, k, v = padded.view(n, width, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
            out = self._attend(q, k, v, mask)  # [n, h, width, d_h]
            outs.append(out.transpose(1, 2).reshape(n * width, d).index_select(0, dest))
        return self.out_proj(outs[0] if len(outs) == 1 else torch.cat(outs))

    def forward(self, x: Tensor, attn_mask: Tensor, keep: Tensor, first: int = 0) -> Tensor:
        """``x``: ``[B, L, d]``; ``attn_mask``: ``[B, 1, L, L]`` bool (True = may attend);
        ``keep``: ``[B, L, 1]`` float, 0 at padded positions.  Returns ``[B, L - first, d]``:
        only positions ``first..L-1`` are computed as queries (all ``L`` stay keys), which is
        exact, since nothing later in the block mixes positions."""
        mask, keep = attn_mask[:, :, first:], keep[:, first:]
        if self.norm == 'pre':
            y = self.attn_norm(x)
            x = x[:, first:] + self.attn_out_drop(
                self._attention(y[:, first:] if first else y, y, mask))
            x = x + self.drop(self.ffn(self.ffn_norm(x)))
        elif self.norm == 'post':
            q = x[:, first:] if first else x
            x = self.attn_norm(q + self.attn_out_drop(self._attention(q, x, mask)))
            x = self.ffn_norm(x + self.drop(self.ffn(x)))
        else:
            q = self.attn_norm(x[:, first:])
            x = q + self.attn_out_drop(self._attention(q, x, mask))
            x = self.ffn_norm(x)
            x = x + self.drop(self.ffn(x))
        return x * keep

    def forward_packed(self, x: Tensor, layout: 'PackedLayout') -> Tensor:
        """:meth:`forward` (``first=0``) on the packed non-padded positions: ``x`` ``[T, d]``
        are the rows ``layout.index`` of a padded ``[B, L, d]`` tensor; returns ``[T, d]``."""

        def attention(query: Tensor, key_value: Tensor) -> Tensor:
            return self._attention_packed(query, key_value, layout)

        if self.norm == 'pre':
            y = self.attn_norm(x)
            x = x + self.attn_out_drop(attention(y, y))
            return x + self.drop(self.ffn(self.ffn_norm(x)))
        if self.norm == 'post':
            x = self.attn_norm(x + self.attn_out_drop(attention(x, x)))
            return self.ffn_norm(x + self.drop(self.ffn(x)))
        q = self.attn_norm(x)
        x = self.ffn_norm(q + self.attn_out_drop(attention(q, x)))
        return x + self.drop(self.ffn(x))


@MODELS.register_module()
class SASRec(BaseRecommender):
    """SASRec (Kang & McAuley, ICDM 2018) as an mmengine model.

    Called as every mmext recommender (:mod:`.base`): ``forward(inputs, data_samples=None,
    mode)``.  Batches are ``dict(inputs=dict(...))`` as built by :func:`mmext.datasets.recsys.
    sequence_collate`: ``seq`` ``[B, L]`` item ids (0 = padding, most recent item last) and

    * training: ``target`` ``[B, L]`` next item at each position (0 = no loss there) and, for
      ``loss='bce'``, ``negatives`` ``[B, L, k]`` (or ``[B, L]``) sampled negatives; without them
      the model draws ``num_negatives`` uniformly from items other than the target;
    * evaluation: ``target`` ``[B]`` held-out item, optional ``seen`` (list of 1-D tensors, items
      to report as ``exclude``) and, for ``eval_mode='sampled'``, ``negatives`` ``[B, N]``.

    ``mode='loss'`` returns ``{'loss': scalar}``, ``'predict'`` one
    :class:`mmext.RankingMetric` dict per history and ``'tensor'`` the hidden states
    ``[B, L, d]`` of :meth:`encode`.

    Args:
        num_items: Number of items ``n``; ids are ``1..n`` and 0 is padding.  Leave ``None``
            and give ``dataset`` to take it from the training dataset
            (``metainfo['num_items']``).
        dataset: Config (or instance) of the training :class:`LeaveOneOutSequenceDataset`; its
            file is parsed once per process, so the Runner's own build costs little more.
        max_len: Longest history ``L`` (number of learned positions).
        embed_dims: Hidden size ``d``. Defaults to 50 (paper, ML-1M).
        num_blocks: Number of self-attention blocks ``b``. Defaults to 2.
        num_heads: Attention heads. Defaults to 1 (paper).
        ffn_dims: Feed-forward inner size; ``None`` means ``embed_dims`` (paper).
        dropout: Dropout on embeddings and sub-layer outputs. Defaults to 0.2 (paper, ML-1M).
        attn_dropout: Dropout on attention weights; ``None`` means ``dropout``.
        attn_output_dropout: Dropout on each attention sub-layer's output; ``None`` means
            ``dropout`` (0: pmixer/SASRec.pytorch's blocks).
        ffn_dropout: Dropout inside the feed-forward net, after its activation; ``None`` means
            ``dropout`` (official code); RecBole's blocks have none there (0).
        act: Feed-forward activation, ``'relu'`` or ``'gelu'``.
        norm: ``'pre'`` (pre-LN blocks), ``'query_only'`` (the official code's blocks) or
            ``'post'`` (RecBole's post-LN blocks with an input LayerNorm).
        norm_eps: LayerNorm epsilon. Defaults to 1e-8 (official code).
        loss: ``'bce'`` (paper) or ``'ce'`` (full softmax cross-entropy).
        num_negatives: Negatives per position for ``'bce'`` when the batch carries none
            (formerly ``num_train_negatives``, still accepted with a ``DeprecationWarning``).
        eval_mode: ``'full'`` (rank all items) or ``'sampled'`` (target + the batch's negatives).
        init_std: ``None`` for Xavier-normal weights (official code); a float for
            ``N(0, init_std)`` as in RecBole.
        position_origin: Where position 0 is. ``'right'`` (official code): positions count
            back from the most recent item, which always gets ``max_len - 1``. ``'left'``
            (RecBole): the oldest item of the (truncated) history gets 0, so a history shorter
            than ``max_len`` ends at position ``length - 1``. Both agree on full-length
            histories.
    """

    required_inputs = ('seq', )
    collate_fn = 'mmext.sequence_collate'

    def __init__(self,
                 num_items: Optional[int] = None,
                 dataset: Optional[dict] = None,
                 max_len: int = 200,
                 embed_dims: int = 50,
                 num_blocks: int = 2,
                 num_heads: int = 1,
                 ffn_dims: Optional[int] = None,
                 dropout: float = 0.2,
                 attn_dropout: Optional[float] = None,
                 ffn_dropout: Optional[float] = None,
                 attn_output_dropout: Optional[float] = None,
                 act: str = 'relu',
                 norm: str = 'pre',
                 norm_eps: float = 1e-8,
                 loss: str = 'bce',
                 num_negatives: int = 1,
                 eval_mode: str = 'full',
                 init_std: Optional[float] = None,
                 position_origin: str = 'right',
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None,
                 **deprecated: Any) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        num_negatives = renamed_option('SASRec', deprecated, 'num_train_negatives', 'num_negatives',
                                       num_negatives, 1)
        reject_options('SASRec', deprecated, dict(loss_type='loss'))
        # the item count of the training data decides the table size
        num_items, _ = num_items_from_dataset('SASRec', num_items, dataset)
        checks = [
            (isinstance(num_items, int) and num_items >= 1, f'num_items={num_items!r}: must '
             'be a positive int, or give a dataset config'),
            (isinstance(max_len, int) and max_len >= 1, f'max_len={max_len!r}: must be >= 1'),
            (isinstance(embed_dims, int) and embed_dims >= 1, f'embed_dims={embed_dims!r}'),
            (isinstance(num_blocks, int) and num_blocks >= 0, f'num_blocks={num_blocks!r}'),
            (isinstance(num_heads, int) and num_heads >= 1 and embed_dims % num_heads == 0,
             f'num_heads={num_heads!r} must be >= 1 and divide embed_dims={embed_dims}'),
            (0. <= dropout < 1., f'dropout={dropout!r}: must be in [0, 1)'),
            (attn_dropout is None
             or 0. <= attn_dropout < 1., f'attn_dropout={attn_dropout!r}: must be in [0, 1)'),
            (ffn_dropout is None
             or 0. <= ffn_dropout < 1., f'ffn_dropout={ffn_dropout!r}: must be in [0, 1)'),
            (attn_output_dropout is None or 0. <= attn_output_dropout < 1.,
             f'attn_output_dropout={attn_output_dropout!r}: must be in [0, 1)'),
            (act in _ACTIVATIONS, f'act={act!r}: expected one of {sorted(_ACTIVATIONS)}'),
            (norm in _NORMS, f'norm={norm!r}: expected one of {_NORMS}'),
            (loss in ('bce', 'ce'), f"loss={loss!r}: expected 'bce' or 'ce'"),
            (isinstance(num_negatives, int)
             and num_negatives >= 1, f'num_negatives={num_negatives!r}: must be >= 1'),
            (eval_mode
             in ('full', 'sampled'), f"eval_mode={eval_mode!r}: expected 'full' or 'sampled'"),
            (position_origin in ('right', 'left'),
             f"position_origin={position_origin!r}: expected 'right' or 'left'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f'SASRec: {message}')
        self.num_items = num_items
        self.max_len = max_len
        self.embed_dims = embed_dims
        self.loss_type = loss
        self.num_negatives = num_negatives
        self.eval_mode = eval_mode
        self.init_std = init_std
        self.position_origin = position_origin
        self.item_embedding = nn.Embedding(num_items + 1, embed_dims, padding_idx=0)
        self.pos_embedding = nn.Embedding(max_len, embed_dims)
        self.emb_dropout = BitDropout(dropout)
        self.blocks = nn.ModuleList(
            SASRecBlock(embed_dims, num_heads, ffn_dims or embed_dims, dropout,
                        dropout if attn_dropout is None else attn_dropout, act, norm, norm_eps,
                        ffn_dropout, attn_output_dropout) for _ in range(num_blocks))
        self.norm = norm
        # post-LN blocks end normalised; the other layouts need a final LayerNorm
        if norm == 'post':
            self.input_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        else:
            self.final_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() < 2:  # biases 0, LayerNorm weights 1: their constructors' defaults
                continue
            if self.init_std is None:
                nn.init.xavier_normal_(p)
            else:
                nn.init.normal_(p, std=self.init_std)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def init_weights(self) -> None:
        # Our own initialisation is done in __init__; only an explicit init_cfg overrides it.
        if self.init_cfg:
            super().init_weights()

    # ------------------------------------------------------------------ encoder
    def encode(self, seq: Tensor, first: int = 0) -> Tensor:
        """``[B, L]`` item ids (left-padded) -> ``[B, L - first, d]`` hidden states of positions
        ``first..L-1``, 0 at padding.

        Two exact shortcuts: leading columns that are padding in every row are dropped (nothing
        attends to them and their outputs are 0); then with ``first = 0`` the blocks run on the
        packed non-padded positions (:meth:`SASRecBlock.forward_packed`), and with ``first > 0``
        on the padded batch, where earlier positions are still computed in every block but the
        last, where they are only keys: outputs that take no loss or score cost nothing there
        (with one loss position per history, about half of the forward pass)."""
        if seq.dim() != 2:
            raise ValueError(f'SASRec: seq must be [batch, length], got shape {tuple(seq.shape)}')
        length = seq.size(1)
        if length > self.max_len:
            raise ValueError(f'SASRec: sequence length {length} exceeds max_len={self.max_len} '
                             '(the number of learned positions)')
        if length == 0:
            raise ValueError(f'SASRec: seq has length 0 (shape {tuple(seq.shape)}); every history '
                             'needs at least one position (left-pad with 0)')
        if not 0 <= first < length:
            raise ValueError(f'SASRec: first={first} must be in [0, {length})')
        check_item_ids('SASRec', 'seq', seq, 0, self.num_items)
        valid = seq > 0
        used = valid.any(0).nonzero()
        lead = int(used[0]) if len(used) else length - 1  # all-padding columns on the left
        if lead == 0:
            return self._encode(seq, valid, first)
        out = self._encode(seq[:, lead:], valid[:, lead:], max(first - lead, 0))
        return F.pad(out, (0, 0, lead - first, 0)) if first < lead else out

    def _encode(self, seq: Tensor, valid: Tensor, first: int) -> Tensor:
        """:meth:`encode` of a batch whose first column holds an item in some row (or of a
        single all-padding column)."""
        b, length = seq.shape
        if self.position_origin == 'right':
            # the most recent item always gets max_len - 1, whatever the history's length
            positions = torch.arange(self.max_len - length, self.max_len, device=seq.device)
            positions = positions.expand(b, length)
        else:
            # histories are left-padded: the first real item of each row gets 0
            positions = (valid.long().cumsum(1) - 1).clamp_(min=0)
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        # A padded query would see no key at all (softmax over nothing = NaN): let it see
        # itself; its output is discarded (zeroed) and no valid query ever sees it.
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)
        attn_mask = (causal & (valid.unsqueeze(1) | eye)).unsqueeze(1)
        if first == 0:  # packed: the T non-padded positions, rows `index` of [B * L]
            layout = PackedLayout(valid, attn_mask)
            index = layout.index
            x = self._embed(seq.flatten()[index], positions.flatten()[index])  # [T, d]
            for block in self.blocks:
                x = block.forward_packed(x, layout)
            if self.norm != 'post':
                x = self.final_norm(x)
            return x.new_zeros(b * length, x.size(-1)).index_copy(0, index, x).view(b, length, -1)
        keep = valid.unsqueeze(-1).to(self.item_embedding.weight.dtype)
        x = self._embed(seq, positions) * keep
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask, keep, first if i == len(self.blocks) - 1 else 0)
        if not self.blocks:
            x = x[:, first:]
        if self.norm == 'post':
            return x
        return self.final_norm(x) * keep[:, first:]

    def _embed(self, items: Tensor, positions: Tensor) -> Tensor:
        """``E_0`` of the module docstring for item ids and positions of the same shape."""
        if self.norm == 'post':
            x = self.input_norm(self.item_embedding(items) + self.pos_embedding(positions))
        else:
            x = self.item_embedding(items) * math.sqrt(self.embed_dims) + \
                self.pos_embedding(positions)
        return self.emb_dropout(x)

    # ------------------------------------------------------------------ losses
    def _sample_negatives(self, target: Tensor, k: int) -> Tensor:
        """Uniform negatives from ``1..n``, redrawn where they hit the position's target."""
        if self.num_items < 2:
            raise ValueError('SASRec: negative sampling needs at least 2 items')
        neg = torch.randint(1, self.num_items + 1, (*target.shape, k), device=target.device)
        clash = neg == target.unsqueeze(-1)
        while bool(clash.any()):
            neg[clash] = torch.randint(
                1, self.num_items + 1, (int(clash.sum()), ), device=target.device)
            clash = neg == target.unsqueeze(-1)
        return neg

    def loss(self, inputs: Dict[str, Tensor]) -> Dict[str, Tensor]:
        seq, target = inputs['seq'], inputs.get('target')
        if target is None or target.shape != seq.shape:
            raise ValueError('SASRec: training batches need target [B, L] with the shape of seq '
                             f'{tuple(seq.shape)}, got '
                             f'{None if target is None else tuple(target.shape)}')
        check_item_ids('SASRec', 'target', target, 0, self.num_items)  # 0 = no loss there
        has_target = target > 0
        # windows carry their loss on the newest positions: older ones are only keys
        columns = has_target.any(0).nonzero()
        first = int(columns[0]) if len(columns) else 0
        h = self.encode(seq, first)[has_target[:, first:]]  # [P, d]: positions with a loss
        pos = target[has_target]
        if h.numel() == 0:
            raise ValueError('SASRec: the batch has no position with a target (all padding)')
        if self.loss_type == 'ce':
            logits = h @ self.item_embedding.weight[1:].t()  # padding is never a class
            return dict(loss=F.cross_entropy(logits, pos - 1))
        neg = inputs.get('negatives')
        if neg is None:
            neg = self._sample_negatives(pos, self.num_negatives)
        else:
            neg = neg.unsqueeze(-1) if neg.dim() == 2 else neg
            if neg.shape[:2] != seq.shape:
                raise ValueError(f'SASRec: negatives {tuple(neg.shape)} must be [B, L] or '
                                 f'[B, L, k] matching seq {tuple(seq.shape)}')
            # positions with a target need real items: padding (0) or ids past n are errors
            check_item_ids('SASRec', 'negatives', neg, 1, self.num_items,
                           has_target.unsqueeze(-1).expand_as(neg))
            neg = neg[has_target]
        # one lookup for positives and negatives: one dense gradient of the item table, not two
        logits = torch.einsum('pd,pkd->pk', h,
                              self.item_embedding(torch.cat([pos[:, None], neg], 1)))  # [P, 1 + k]
        pos_logit, neg_logit = logits[:, 0], logits[:, 1:]
        # -log sigmoid(pos) - sum_k log(1 - sigmoid(neg_k)), averaged over positions (eq. 7).
        loss = F.softplus(-pos_logit) + F.softplus(neg_logit).sum(-1)
        return dict(loss=loss.mean())

    # ------------------------------------------------------------------ prediction
    def predict(self, inputs: Dict[str, Union[Tensor, List[Tensor]]]) -> List[dict]:
        seq, target = inputs['seq'], inputs['target']
        check_item_ids('SASRec', 'target', target, 1, self.num_items)
        last = self.encode(seq, seq.size(1) - 1)[:, -1]  # left padding: newest item last
        seen: Optional[Sequence[Tensor]] = inputs.get('seen')
        results = []
        if self.eval_mode == 'full':
            scores = last @ self.item_embedding.weight.t()  # [B, n + 1]; index = item id
            padding = torch.zeros(1, dtype=torch.long)  # id 0 is never a candidate
            for i in range(seq.size(0)):
                exclude = (seen[i] if seen is not None else torch.zeros(
                    0, dtype=torch.long)).detach().cpu()
                results.append(
                    dict(
                        scores=scores[i].detach().cpu(),
                        target=int(target[i]),
                        exclude=exclude,
                        invalid=padding))
            return results
        neg = inputs.get('negatives')
        if neg is None:
            raise ValueError("SASRec: eval_mode='sampled' needs negatives [B, N] in the batch; "
                             'set num_eval_negatives in the evaluation dataset')
        check_item_ids('SASRec', 'negatives', neg, 1, self.num_items)
        candidates = torch.cat([target.view(-1, 1), neg], dim=1)  # target at index 0
        scores = torch.einsum('bd,bcd->bc', last, self.item_embedding(candidates))
        empty = torch.zeros(0, dtype=torch.long)
        return [dict(scores=s.detach().cpu(), target=0, exclude=empty) for s in scores]

    def _forward(self, inputs: Dict[str, Union[Tensor, List[Tensor]]]) -> Tensor:
        """``mode='tensor'``: the hidden states ``[B, L, d]`` of ``inputs['seq']``."""
        return self.encode(inputs['seq'])
