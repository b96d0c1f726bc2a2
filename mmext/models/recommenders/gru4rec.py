"""GRU4Rec: session-based recommendation with a GRU over the session's items.

Hidasi, Karatzoglou, Baltrunas, Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016, and Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains for
Session-based Recommendations", CIKM 2018; faithful to the official code's training scheme, which
Hidasi & Czapp ("The Effect of Third Party Implementations on Reproducibility", RecSys 2023) found
most third-party versions to break:

* **Session-parallel mini-batches** (ICLR Sec. 3.1.1): each batch slot walks one session; the GRU
  state of a slot is zeroed exactly when its input is the first event of a session (the batch's
  ``reset`` mask, recomputed for every batch) and detached after every step: no BPTT.  The state
  lives in the model between steps, separately for training and evaluation.
* **Sampled output** (CIKM Sec. 3.2): the scores of a training step are computed only for the
  batch's targets plus ``num_negatives`` extra items shared by the batch, drawn with replacement
  ∝ ``popularity ** sample_alpha``; never for all items.
* **Losses**: cross-entropy with the logQ correction, BPR-max with ``bpreg``, TOP1-max
  (:mod:`.gru4rec_losses`).  Scaled as the official training step scales them: summed over the
  busy slots and divided by the number of slots ``B`` (``reduction='slot_mean'``), also in the
  tail of an epoch where fewer slots are busy.  With Adagrad only ε sees the scale, but it does:
  the plain sum trains to 0.97x the official Recall@20 on ml-100k (configs/gru4rec/README.md).
* **Sparse item-table gradients** (``sparse_grad``, default on, as the official ``sparse=True``
  embeddings): a step's gradient of the item tables holds only the rows it used, and
  :class:`mmext.AdagradM` updates those rows by index.  Optimisers without sparse support (Adam)
  need ``sparse_grad=False``.
* **Negative samples**: one ``torch.multinomial`` draw per step from weights computed once per
  ``item_counts`` (the official code draws a large store ahead; a store would make a resumed
  run draw other samples than the uninterrupted one, and a draw costs ~1% of a step).
* **Embedding modes**: ``'none'`` (one-hot input: the first layer's input weights are looked up
  per item, as in the ICLR paper), ``'separate'`` (an ``embedding_dim`` item embedding feeding
  the GRU) and ``'shared'`` (the official ``constrained_embedding``: the output item matrix is
  also the input embedding).  Dropout on the input embedding and on each layer's output; like
  the official code, the dropped-out output is the state carried on.

The GRU cell is the paper's (Eqs. 1-4): ``z = σ(W_z x + U_z h)``, ``r = σ(W_r x + U_r h)``,
``ĥ = tanh(W x + U (r ⊙ h))``, ``h' = (1 - z) h + z ĥ``.  Note the paper's convention: ``z``
weights the *candidate*.  It runs as one autograd node (:func:`mmext.ops.gru_cell.gru_cell`):
a step's tensors are tiny, so per-op overhead, not arithmetic, sets the speed.
"""
import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmext.ops.gru_cell import gru_cell
from mmext.ops.sampled_softmax import sampled_softmax_ce
from mmext.registry import MODELS

from .base import (BaseRecommender, check_item_ids, num_items_from_dataset, reject_options,
                   renamed_option)
from .gru4rec_losses import bpr_max_loss, top1_max_loss

__all__ = ['GRU4Rec', 'GRU4RecLayer']

_LOSSES = ('ce', 'bpr-max', 'top1-max')
_LOSS_ALIASES = {'cross-entropy': 'ce'}  # the former name, kept with a DeprecationWarning
_LEGACY_KEYS = dict(targets='target', reset='reset', valid='valid', evaluate='evaluate')
_EMBEDDINGS = ('none', 'separate', 'shared')
_REDUCTIONS = ('slot_mean', 'sum', 'mean')


def _uniform_(t: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """The official initialisation: U(-s, s), s = sqrt(6 / (fan_in + fan_out))."""
    s = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        t.uniform_(-s, s)


class GRU4RecLayer(nn.Module):
    """One GRU layer of the paper's cell; input either a vector (``in_dim``) or an item id looked
    up directly in the input weights (``num_ids``: one-hot input without an embedding)."""

    def __init__(self,
                 hidden: int,
                 in_dim: Optional[int] = None,
                 num_ids: Optional[int] = None,
                 sparse_grad: bool = False) -> None:
        super().__init__()
        if (in_dim is None) == (num_ids is None):
            raise ValueError('GRU4RecLayer takes exactly one of in_dim and num_ids')
        self.hidden = hidden
        if in_dim is not None:
            self.w_x = nn.Parameter(torch.empty(3 * hidden, in_dim))
            _uniform_(self.w_x, in_dim, hidden)
        else:  # row i = W @ onehot(i): the one-hot product done as a lookup
            self.w_x = nn.Parameter(torch.empty(num_ids, 3 * hidden))
            _uniform_(self.w_x, num_ids, hidden)
        self.one_hot = num_ids is not None
        self.sparse_grad = sparse_grad  # one-hot input: only the looked-up rows get a gradient
        self.b_x = nn.Parameter(torch.zeros(3 * hidden))
        self.u_rz = nn.Parameter(torch.empty(2 * hidden, hidden))
        self.u_h = nn.Parameter(torch.empty(hidden, hidden))
        _uniform_(self.u_rz, hidden, hidden)
        _uniform_(self.u_h, hidden, hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.one_hot:
            gx = F.embedding(x, self.w_x, sparse=self.sparse_grad) + self.b_x
        else:
            gx = F.linear(x, self.w_x, self.b_x)
        return gru_cell(gx, h, self.u_rz, self.u_h)  # one autograd node (mmext.ops)


@MODELS.register_module()
class GRU4Rec(BaseRecommender):
    """GRU4Rec as an mmengine model (see the module docstring).

    Args:
        num_items: number of items ``n`` (ids ``1..n``, 0 = padding).  Leave ``None`` and give
            ``dataset`` to take it (``metainfo['num_items']``), and the item popularity
            (``item_counts``), from the training dataset.
        dataset: config of the training :class:`~mmext.datasets.recsys.SessionDataset` (its
            loading is cached, so the Runner's own build costs nothing more).
        hidden_sizes: GRU layer sizes.
        embedding: ``'none'``, ``'separate'`` or ``'shared'``.
        embedding_dim: size of the ``'separate'`` embedding.
        dropout_p_embed, dropout_p_hidden: dropout on the input embedding / each layer's output.
            As in the official code the dropped-out output is also the state carried to the next
            step, and with ``embedding='none'`` the first layer's output takes
            ``dropout_p_embed`` (that layer is the official "GRU embedding").
        loss: ``'ce'`` (cross-entropy; formerly ``'cross-entropy'``, still accepted with a
            ``DeprecationWarning``), ``'bpr-max'`` or ``'top1-max'``.
        num_negatives: extra negatives per step shared by the batch (0: in-batch negatives
            only; formerly ``n_sample``, still accepted with a ``DeprecationWarning``).
        sample_alpha: extra negatives are drawn ∝ ``popularity ** sample_alpha``.
        logq: weight of the logQ correction of the cross-entropy (official: 1.0 or 0).
        bpreg: score regularisation of BPR-max.
        elu_param: BPR-max/TOP1-max: ``elu(scores, elu_param)`` before the loss (official
            ``final_act='elu-0.5'``); 0 keeps linear scores.
        reduction: ``'slot_mean'`` (official: the sum over the busy slots divided by the
            number of slots), ``'sum'`` or ``'mean'`` (over the busy slots).
        sparse_grad: sparse gradients for the item tables (see the module docstring); set
            ``False`` for optimisers that take dense gradients only.

    Called as every mmext recommender (:mod:`.base`): ``forward(inputs, data_samples=None,
    mode)``, ``inputs`` being the dict of :class:`~mmext.datasets.recsys.SessionDataset` batches
    (``collate_fn=dict(type='mmext.session_parallel_collate')``): ``item``, ``target``
    (LongTensor[B]: input item and next item per slot), ``reset``, ``valid`` and optionally
    ``evaluate`` (BoolTensor[B]; ``predict`` scores only those rows); ``predict`` also takes
    ``(T, B)`` groups of ``T`` consecutive steps.  ``mode='loss'`` returns ``{'loss': ...}``;
    ``'predict'`` returns one dict per scored slot, ``{'scores': FloatTensor[n + 1] (index =
    item id), 'target': item id, 'exclude': tensor([0]), 'invalid': tensor([0])}`` for
    :class:`mmext.RankingMetric`; ``'tensor'`` returns the ``(B, n + 1)`` scores.
    """

    required_inputs = ('item', )
    collate_fn = 'mmext.session_parallel_collate'

    def __init__(self,
                 num_items: Optional[int] = None,
                 dataset: Optional[dict] = None,
                 hidden_sizes: Union[int, Sequence[int]] = (100, ),
                 embedding: str = 'none',
                 embedding_dim: int = 0,
                 dropout_p_embed: float = 0.0,
                 dropout_p_hidden: float = 0.0,
                 loss: str = 'ce',
                 num_negatives: int = 2048,
                 sample_alpha: float = 0.5,
                 logq: float = 0.0,
                 bpreg: float = 1.0,
                 elu_param: float = 0.0,
                 reduction: str = 'slot_mean',
                 sparse_grad: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **deprecated: Any) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        num_negatives = renamed_option('GRU4Rec', deprecated, 'n_sample', 'num_negatives',
                                       num_negatives, 2048)
        reject_options('GRU4Rec', deprecated, dict(loss_type='loss'))
        if loss in _LOSS_ALIASES:
            warnings.warn(
                f'GRU4Rec: loss={loss!r} is deprecated, use loss='
                f'{_LOSS_ALIASES[loss]!r}',
                DeprecationWarning,
                stacklevel=2)
            loss = _LOSS_ALIASES[loss]
        num_items, ds = num_items_from_dataset('GRU4Rec', num_items, dataset)
        counts = None
        if ds is not None:
            counts = torch.as_tensor(ds.item_counts, dtype=torch.float64)
        if num_items is None or num_items < 1:
            raise ValueError(f'GRU4Rec needs num_items >= 1 or a dataset config, got '
                             f'num_items={num_items}')
        if loss not in _LOSSES:
            raise ValueError(f'loss must be one of {_LOSSES}, got {loss!r}')
        if embedding not in _EMBEDDINGS:
            raise ValueError(f'embedding must be one of {_EMBEDDINGS}, got {embedding!r}')
        if reduction not in _REDUCTIONS:
            raise ValueError(f'reduction must be one of {_REDUCTIONS}, got {reduction!r}')
        if embedding == 'separate' and embedding_dim < 1:
            raise ValueError("embedding='separate' needs embedding_dim >= 1")
        hidden_sizes = [hidden_sizes] if isinstance(hidden_sizes, int) else list(hidden_sizes)
        self.num_items = int(num_items)
        num_ids = self.num_items + 1
        self.embedding = embedding
        self.loss_type, self.num_negatives = loss, int(num_negatives)
        self.sample_alpha = sample_alpha
        self.logq, self.bpreg, self.elu_param, self.reduction = logq, bpreg, elu_param, reduction
        self.sparse_grad = bool(sparse_grad)

        out_dim = hidden_sizes[-1]
        # Output item matrix and bias (row 0 = padding, never a target or sample).
        self.item_out = nn.Parameter(torch.empty(num_ids, out_dim))
        _uniform_(self.item_out, num_ids, out_dim)
        self.item_bias = nn.Parameter(torch.zeros(num_ids))
        if embedding == 'separate':
            self.item_in = nn.Parameter(torch.empty(num_ids, embedding_dim))
            _uniform_(self.item_in, num_ids, embedding_dim)
            first = GRU4RecLayer(hidden_sizes[0], in_dim=embedding_dim)
        elif embedding == 'shared':
            first = GRU4RecLayer(hidden_sizes[0], in_dim=out_dim)
        else:
            first = GRU4RecLayer(hidden_sizes[0], num_ids=num_ids, sparse_grad=self.sparse_grad)
        self.layers = nn.ModuleList(
            [first] +
            [GRU4RecLayer(h, in_dim=p) for p, h in zip(hidden_sizes[:-1], hidden_sizes[1:])])
        self.drop_embed = nn.Dropout(dropout_p_embed)
        self.drop_hidden = nn.Dropout(dropout_p_hidden)

        # Training popularity: the sampling distribution and the logQ correction; a buffer, so a
        # checkpoint restores it.  Without a dataset: uniform until counts are loaded.
        if counts is None:
            counts = torch.ones(num_ids, dtype=torch.float64)
        if counts.numel() != num_ids:
            raise ValueError(f'item_counts has {counts.numel()} entries, expected {num_ids}')
        counts = counts.clone()
        counts[0] = 0
        self.register_buffer('item_counts', counts.float())
        # Per-slot GRU states between steps, kept apart for training and evaluation.
        self._states: Dict[str, Optional[List[torch.Tensor]]] = {'train': None, 'eval': None}
        # What is derived from item_counts (sampling weights, log Q), with the counts' version.
        self._derived: Dict[str, Any] = {}

    # -- recurrent step -------------------------------------------------------------------
    def _embed(self, items: torch.Tensor) -> torch.Tensor:
        table = self.item_in if self.embedding == 'separate' else self.item_out  # 'shared'
        return self.drop_embed(F.embedding(items, table, sparse=self.sparse_grad))

    def reset_state(self) -> None:
        """Forget the carried states (the next batch starts from zeros in every slot)."""
        self._states = {'train': None, 'eval': None}

    def step(self, inputs: torch.Tensor, reset: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One session-parallel step: zero the states of ``reset`` slots, advance all slots by
        ``inputs`` and keep the new (detached) states; returns the last layer's output."""
        key = 'train' if self.training else 'eval'
        b = inputs.shape[0]
        states = self._states[key]
        if states is None or states[0].shape[0] != b:
            states = [
                inputs.new_zeros((b, layer.hidden), dtype=self.item_out.dtype)
                for layer in self.layers
            ]
        elif reset is not None and bool(reset.any()):
            keep = (~reset).to(states[0].dtype).unsqueeze(1)
            states = [s * keep for s in states]  # exact zeros for new sessions
        new_states = []
        if self.embedding == 'none':
            # The first layer reads the one-hot input; as in the official code its output gets
            # the "embedding" dropout and later layers the hidden dropout.
            x = self.drop_embed(self.layers[0](inputs, states[0]))
            new_states.append(x.detach())
            start = 1
        else:
            x, start = self._embed(inputs), 0
        for layer, h in zip(self.layers[start:], states[start:]):
            x = self.drop_hidden(layer(x, h))
            new_states.append(x.detach())  # no back-propagation through time
        self._states[key] = new_states
        return x

    def score(self, hidden: torch.Tensor, items: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scores of ``items`` (all ids when ``None``) for each row of ``hidden``."""
        if items is None:
            return F.linear(hidden, self.item_out, self.item_bias)
        out = F.embedding(items, self.item_out, sparse=self.sparse_grad)
        return F.linear(hidden, out, self.item_bias[items])

    # -- training ---------------------------------------------------------------------------
    def _counts_derived(self) -> Dict[str, Any]:
        """The sampling weights and log popularity of the current ``item_counts`` (recomputed
        when the counts change, e.g. by loading a checkpoint)."""
        c = self.item_counts
        key = (c._version, c.data_ptr(), c.device, self.sample_alpha)
        if self._derived.get('key') != key:
            weights = c.double().pow(self.sample_alpha)
            weights[0] = 0
            weights[c <= 0] = 0
            log_p = torch.log((c / c.sum()).clamp_min(1e-12))
            self._derived = dict(
                key=key,
                weights=weights.float(),
                log_p=log_p,
                log_p_samples=self.sample_alpha * log_p,
                empty=float(weights.sum()) <= 0)
        return self._derived

    def sample_negatives(self, n: int) -> torch.Tensor:
        """``n`` item ids drawn with replacement ∝ ``popularity ** sample_alpha``."""
        d = self._counts_derived()
        if d['empty']:
            raise ValueError('item popularity is all zero: no item can be sampled')
        return torch.multinomial(d['weights'], n, replacement=True)

    def _log_q(self, targets: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Log sampling probability of each candidate column: in-batch targets come from the data
        (∝ popularity), extra samples ∝ popularity ** alpha (the official correction)."""
        d = self._counts_derived()
        return torch.cat([d['log_p'][targets], d['log_p_samples'][samples]])

    def sampled_loss(self,
                     hidden: torch.Tensor,
                     target: torch.Tensor,
                     reduction: Optional[str] = None,
                     num_slots: Optional[int] = None) -> torch.Tensor:
        """The loss of ``hidden`` ``(B, d)`` against ``target`` ``(B,)``, scored among the batch's
        targets and ``num_negatives`` shared samples.  ``reduction`` (default: the model's):
        ``'sum'``, ``'mean'`` or ``'slot_mean'`` (the sum / ``num_slots``, default ``B``)."""
        reduction = self.reduction if reduction is None else reduction
        b = hidden.shape[0]
        scale = dict(sum=1.0, mean=1.0 / b, slot_mean=1.0 / (num_slots or b))[reduction]
        samples = (
            self.sample_negatives(self.num_negatives).to(target.device)
            if self.num_negatives > 0 else target.new_zeros(0))
        candidates = torch.cat([target, samples])  # (B + num_negatives,): never all items
        if self.loss_type == 'ce':
            # scores, logQ correction and softmax cross-entropy in one autograd node
            weight = F.embedding(candidates, self.item_out, sparse=self.sparse_grad)
            shift = self._log_q(target, samples) * self.logq if self.logq > 0 else None
            return sampled_softmax_ce(hidden, weight, self.item_bias[candidates], shift, scale)
        logits = self.score(hidden, candidates)
        if self.elu_param > 0:
            logits = F.elu(logits, self.elu_param)
        if self.loss_type == 'bpr-max':
            return bpr_max_loss(logits, self.bpreg, 'sum') * scale
        return top1_max_loss(logits, 'sum') * scale

    # -- the recommender contract -----------------------------------------------------------
    def forward(self,
                inputs: Union[Dict[str, torch.Tensor], torch.Tensor],
                data_samples: Optional[Any] = None,
                mode: str = 'tensor',
                **legacy: Any):
        if isinstance(inputs, torch.Tensor):  # the former call: model(items, targets, ...)
            warnings.warn(
                "GRU4Rec: call model(dict(item=..., target=..., reset=..., "
                "valid=...), mode=...); passing the item tensor and targets, reset, "
                "valid, evaluate as separate arguments is deprecated",
                DeprecationWarning,
                stacklevel=2)
            if isinstance(data_samples, torch.Tensor):  # targets given positionally
                legacy.setdefault('targets', data_samples)
            unknown = set(legacy) - set(_LEGACY_KEYS)
            if unknown:
                raise TypeError(f'GRU4Rec: unexpected arguments {sorted(unknown)}')
            inputs = dict(
                item=inputs, **{
                    _LEGACY_KEYS[k]: v
                    for k, v in legacy.items() if v is not None
                })
            data_samples = None
        elif legacy:
            raise TypeError(f'GRU4Rec: unexpected arguments {sorted(legacy)}; the batch goes '
                            'in inputs (a dict)')
        return super().forward(inputs, data_samples, mode)

    def _advance(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Check ``inputs['item']`` ``(B,)`` and take one step: the last layer's output."""
        items = inputs['item']
        if items.dim() != 1:
            raise ValueError(f'inputs["item"] must be a (B,) item-id tensor (or (T, B) for '
                             f'predict), got {tuple(items.shape)}')
        check_item_ids('GRU4Rec', 'input item ids (inputs["item"])', items, 0, self.num_items)
        return self.step(items, inputs.get('reset'))

    def _target(self, inputs: Dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        if inputs.get('target') is None:
            raise ValueError(f"mode='{mode}' needs inputs['target']")
        return inputs['target']

    def _forward(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``mode='tensor'``: one step; the ``(B, n + 1)`` scores of all item ids."""
        return self.score(self._advance(inputs))

    def loss(self, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """One training step over the busy (``valid``) slots: ``{'loss': scalar}``."""
        hidden = self._advance(inputs)
        target = self._target(inputs, 'loss')
        valid = inputs.get('valid')
        busy = target.numel() if valid is None else int(valid.sum())
        # busy slots predict a real item: padding (0), negative ids and ids past n are errors
        check_item_ids('GRU4Rec', 'target', target, 1, self.num_items,
                       None if busy == target.numel() else valid)
        if busy == 0:
            return {'loss': hidden.sum() * 0}
        if busy < target.numel():  # idle slots in the tail of an epoch
            hidden, target = hidden[valid], target[valid]
        # 'slot_mean', the official scaling, divides by all slots, idle ones included
        return {'loss': self.sampled_loss(hidden, target, num_slots=inputs['item'].numel())}

    def predict(self, inputs: Dict[str, torch.Tensor]) -> List[dict]:
        """One step (``(B,)`` tensors) or a group of steps (``(T, B)``, run in order); one
        :class:`mmext.RankingMetric` dict per scored slot."""
        if inputs['item'].dim() == 2:
            # A group of T consecutive steps (evaluation with group_steps): run them in order.
            outputs = []
            for t in range(inputs['item'].shape[0]):
                outputs += self.predict({k: v[t] for k, v in inputs.items() if v is not None})
            return outputs
        hidden = self._advance(inputs)
        target = self._target(inputs, 'predict')
        valid, evaluate = inputs.get('valid'), inputs.get('evaluate')
        if valid is None:
            valid = torch.ones_like(inputs['item'], dtype=torch.bool)
        # Only held-out targets are scored (leave-one-out splits advance the state through
        # the history without predicting it).
        scored = valid if evaluate is None else valid & evaluate
        # a padding target would count as an event (and be ranked against nothing)
        check_item_ids('GRU4Rec', 'target', target, 1, self.num_items, scored)
        rows = torch.nonzero(scored).flatten()
        scores = self.score(hidden[rows]).float()
        pad = torch.zeros(1, dtype=torch.long)
        # The padding id is 'invalid' (never ranked) and, for exclude_seen, also 'exclude'.
        return [
            dict(scores=s, target=int(t), exclude=pad, invalid=pad)
            for s, t in zip(scores.cpu(), target[rows].tolist())
        ]
