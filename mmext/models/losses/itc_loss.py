"""Image-text contrastive loss of ALBEF / BLIP with queues and momentum distillation.

ALBEF (Li et al., "Align before Fuse", NeurIPS 2021), eqs. (1)-(3) and (6); BLIP (Li et al.,
ICML 2022) uses the same loss.  With unit-norm projections ``g_v(v)``, ``g_w(w)``, momentum
features ``g'_v``, ``g'_w`` and the keys ``K_w = [global momentum text batch  U  text queue]``
(``K_v`` likewise)::

    s_i2t(I, T_k) = g_v(v_cls)^T g'_w(w'_k) / tau          p_i2t = softmax_k s_i2t     (eq. 1-2)
    L_itc = 1/2 E[ H(y_i2t, p_i2t) + H(y_t2i, p_t2i) ]                                 (eq. 3)
    y     = alpha * softmax(s'(momentum queries vs K)) + (1 - alpha) * y_hard          (eq. 6)

``y_hard`` puts mass on the sample's own pair or, with ``idx`` (retrieval fine-tuning), spreads it
uniformly over every key with the same image id, in the batch *and* in the queue, so several
captions of one image are all positives.  ``tau`` is learnable, initialised at 0.07 and clamped to
``[0.001, 0.5]`` before every use.

Differences from the reference code (ALBEF, BLIP, mmpretrain's ``ITCHead``):

* **any global batch size**: the queue wraps around slot by slot (:class:`FeatureQueue`) instead
  of ``assert queue_size % batch_size == 0``;
* **exact under DDP**: the keys are the momentum features of the *global* batch (gathered), each
  rank's loss is scaled by ``W / N`` (``W`` ranks, ``N`` global rows) so that DDP's gradient
  averaging yields exactly the gradient of the single-process loss on the concatenated batch, and
  the queue receives the gathered batch in rank order (identical on every rank);
* **distillation off works**: the queue does not depend on ``use_distill`` (mmpretrain's head only
  creates its queues when distilling and then fails without them);
* without momentum features the online features are the keys, gathered with gradient
  (a CLIP-style in-batch ITC, still exact under DDP).

It is a loss module (``forward(image_feat, text_feat, image_feat_m, text_feat_m, idx)``) that also
speaks mmpretrain's head protocol (``loss(feats, data_samples)``, attributes ``temp`` and
``alpha``), so it drops into ``mmpretrain.BlipRetrieval`` as ``head=dict(type='mmext.ITCLoss')``:
that model computes the momentum features itself, shares its ``temp`` parameter with the head and
lets ``WarmupParamHook`` (or :class:`~mmext.engine.hooks.ITCAlphaWarmupHook`) set ``alpha``.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_dist_info
from torch import Tensor

from mmext.registry import MODELS

from ..utils import gather_features, gather_no_grad
from .feature_queue import FeatureQueue

__all__ = ['ITCLoss']


@MODELS.register_module()
class ITCLoss(nn.Module):
    """ALBEF/BLIP image-text contrastive loss (see the module docstring for the equations).

    Args:
        embed_dim: Width of the projected features (and of the queues).
        queue_size: Number of queued momentum features ``K``; 0 disables the queues.
        temperature: Initial temperature ``tau``.
        temp_range: ``(min, max)`` clamp of ``tau``, applied in place before every use.
        learnable_temp: Whether ``tau`` is an ``nn.Parameter`` that receives gradient.
        use_distill: Soft targets ``alpha * softmax(momentum sims) + (1 - alpha) * hard``;
            needs the momentum features.
        alpha: Distillation weight (ramped up from 0 by a warm-up hook in ALBEF/BLIP).
        normalize: L2-normalise the inputs (harmless if they already are: the gradient of a
            normalisation at a unit vector composed with the outer one is unchanged).
        loss_weight: Multiplier of the returned loss.
    """

    def __init__(self,
                 embed_dim: int,
                 queue_size: int = 0,
                 temperature: float = 0.07,
                 temp_range: Tuple[float, float] = (0.001, 0.5),
                 learnable_temp: bool = True,
                 use_distill: bool = True,
                 alpha: float = 0.4,
                 normalize: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 0:
            raise ValueError(f'ITCLoss queue_size must be an int >= 0, got {queue_size!r}')
        lo, hi = temp_range
        if not 0 < lo <= temperature <= hi:
            raise ValueError(f'ITCLoss temperature {temperature!r} must lie in temp_range '
                             f'{tuple(temp_range)!r} with a positive minimum')
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'ITCLoss alpha must be in [0, 1], got {alpha!r}')
        self.embed_dim = int(embed_dim)
        self.temp_range = (float(lo), float(hi))
        temp = torch.tensor(float(temperature))
        if learnable_temp:
            self.temp = nn.Parameter(temp)
        else:
            self.register_buffer('temp', temp)
        self.use_distill = use_distill
        self.alpha = float(alpha)
        self.normalize = normalize
        self.loss_weight = float(loss_weight)
        self.queue: Optional[FeatureQueue] = (
            FeatureQueue(queue_size, dict(image=embed_dim, text=embed_dim))
            if queue_size > 0 else None)

    # --- mmpretrain head protocol -------------------------------------------------------------
    def loss(self,
             feats: Sequence,
             data_samples: Optional[List] = None,
             **kwargs) -> Dict[str, Tensor]:
        """``feats[-1] = [image_feat, text_feat, image_feat_m, text_feat_m]`` as
        ``mmpretrain.BlipRetrieval`` passes them; ``idx`` from the samples' ``image_id``."""
        image_feat, text_feat, image_feat_m, text_feat_m = feats[-1]
        idx = None
        if data_samples is not None and len(data_samples) and \
                all('image_id' in ds for ds in data_samples):
            idx = torch.tensor([int(ds.image_id) for ds in data_samples], device=image_feat.device)
        loss = self(image_feat, text_feat, image_feat_m, text_feat_m, idx=idx)
        return dict(itc_loss=loss)

    # --- the loss -----------------------------------------------------------------------------
    def _check(self, name: str, x: Optional[Tensor], n: int) -> None:
        if x is None:
            return
        if x.dim() != 2 or x.shape != (n, self.embed_dim):
            raise ValueError(f'ITCLoss {name} must have shape ({n}, {self.embed_dim}), got '
                             f'{tuple(x.shape)}')
        if not torch.isfinite(x).all():
            raise ValueError(f'ITCLoss {name} contains NaN or Inf')

    def clamp_temperature(self) -> Tensor:
        with torch.no_grad():
            self.temp.clamp_(*self.temp_range)
        return self.temp

    def forward(self,
                image_feat: Tensor,
                text_feat: Tensor,
                image_feat_m: Optional[Tensor] = None,
                text_feat_m: Optional[Tensor] = None,
                idx: Optional[Tensor] = None,
                enqueue: bool = True) -> Tensor:
        """The ITC loss of this rank's rows (its mean over ranks is the global-batch loss).

        Args:
            image_feat, text_feat: ``(n, D)`` online projections of the local pairs.
            image_feat_m, text_feat_m: ``(n, D)`` momentum projections (keys, queue entries,
                distillation targets); ``None`` for both uses the online features as keys.
            idx: ``(n,)`` non-negative image ids; equal ids are positives of each other.
            enqueue: Write the gathered momentum batch into the queue after the loss.
        """
        n = image_feat.shape[0]
        for name, x in (('image_feat', image_feat), ('text_feat', text_feat),
                        ('image_feat_m', image_feat_m), ('text_feat_m', text_feat_m)):
            self._check(name, x, n)
        if (image_feat_m is None) != (text_feat_m is None):
            raise ValueError('ITCLoss needs both image_feat_m and text_feat_m, or neither')
        has_momentum = image_feat_m is not None
        if self.use_distill and self.alpha > 0 and not has_momentum:
            raise ValueError('ITCLoss with use_distill=True needs image_feat_m and text_feat_m '
                             '(momentum features); pass them or set use_distill=False')
        if idx is not None:
            idx = idx.reshape(-1).long()
            if idx.shape[0] != n:
                raise ValueError(f'ITCLoss idx must have {n} entries, got {idx.shape[0]}')
            if (idx < 0).any():
                raise ValueError('ITCLoss idx must be non-negative image ids (-1 marks unused '
                                 'queue slots)')
        if self.normalize:
            image_feat, text_feat = F.normalize(image_feat, dim=-1), F.normalize(text_feat, dim=-1)
            if has_momentum:
                image_feat_m = F.normalize(image_feat_m, dim=-1)
                text_feat_m = F.normalize(text_feat_m, dim=-1)
        temp = self.clamp_temperature()
        _, world_size = get_dist_info()

        # Keys of the global batch: momentum features need no gradient; online ones do.
        if has_momentum:
            image_keys, offset = gather_features(image_feat_m.detach(), with_grad=False)
            text_keys, _ = gather_features(text_feat_m.detach(), with_grad=False)
        else:
            image_keys, offset = gather_features(image_feat, with_grad=True)
            text_keys, _ = gather_features(text_feat, with_grad=True)
        num_global = image_keys.shape[0]
        batch_ids = gather_no_grad(idx) if idx is not None else None

        queue_len = len(self.queue) if self.queue is not None else 0
        if queue_len:
            image_keys = torch.cat([image_keys, self.queue.get('image').detach()])
            text_keys = torch.cat([text_keys, self.queue.get('text').detach()])

        targets = self._hard_targets(n, offset, num_global, queue_len, idx, batch_ids,
                                     image_feat.device)
        sim_i2t = image_feat @ text_keys.t() / temp
        sim_t2i = text_feat @ image_keys.t() / temp
        if self.use_distill and self.alpha > 0:
            with torch.no_grad():
                sim_i2t_m = image_feat_m @ text_keys.t() / temp
                sim_t2i_m = text_feat_m @ image_keys.t() / temp
                t_i2t = self.alpha * sim_i2t_m.softmax(1) + (1 - self.alpha) * targets
                t_t2i = self.alpha * sim_t2i_m.softmax(1) + (1 - self.alpha) * targets
        else:
            t_i2t = t_t2i = targets
        rows = -(F.log_softmax(sim_i2t, dim=1) * t_i2t).sum(1) \
            - (F.log_softmax(sim_t2i, dim=1) * t_t2i).sum(1)
        # sum of this rank's rows * W / N: DDP averages over W ranks -> mean over the N rows
        loss = rows.sum() * (0.5 * world_size / num_global)

        if enqueue and self.queue is not None and self.training:
            ids = batch_ids if batch_ids is not None else torch.full(
                (num_global, ), -1, dtype=torch.long, device=image_keys.device)
            self.queue.enqueue(
                dict(image=image_keys[:num_global].detach(), text=text_keys[:num_global].detach()),
                ids)
        return self.loss_weight * loss

    def _hard_targets(self, n: int, offset: int, num_global: int, queue_len: int,
                      idx: Optional[Tensor], batch_ids: Optional[Tensor],
                      device: torch.device) -> Tensor:
        """``(n, N + Q)`` rows summing to one: own pair, or every key with the same image id."""
        if idx is None:
            targets = torch.zeros(n, num_global + queue_len, device=device)
            targets[torch.arange(n, device=device), offset + torch.arange(n, device=device)] = 1
            return targets
        key_ids = batch_ids
        if queue_len:
            key_ids = torch.cat([batch_ids, self.queue.get('idx').to(device)])
        pos = (idx[:, None] == key_ids[None, :]).float()
        return pos / pos.sum(1, keepdim=True)  # each row has its own pair, so sum >= 1
