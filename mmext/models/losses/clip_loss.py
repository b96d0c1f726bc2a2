"""CLIP's symmetric contrastive loss, exact under DistributedDataParallel.

CLIP (Radford et al., ICML 2021, Fig. 3): for ``N`` unit-norm image/text pairs and a learnable
logit scale ``s = exp(t)`` (``t`` initialised at ``log(1 / 0.07)``, clamped so that ``s <= 100``)::

    logits = s * I T^T                                    (N x N)
    L = ( CE(logits, arange N) + CE(logits^T, arange N) ) / 2

Distributed semantics.  Every rank ``r`` holds ``n_r`` pairs, ``N = sum_r n_r``; DDP *averages*
parameter gradients over the ``W`` ranks.  The contract here: after that averaging, every
gradient equals the gradient of the single-process loss ``L`` on the concatenated batch.

* ``local_loss=False`` (each rank computes all ``N`` rows; its loss value is ``L``):

  - ``gather_with_grad=True``: the gather's backward sums over ranks, so rank ``r`` receives
    ``W * dL/df_r`` (every rank differentiates the same ``L``); DDP's ``1/W`` makes it exact.
    The logit scale's gradient is ``dL/ds`` on every rank, exact after averaging too.
  - ``gather_with_grad=False`` (open_clip's default): only the local slice is differentiable, so
    rank ``r`` receives ``dL/df_r`` and DDP's averaging leaves the *encoder* gradients ``W`` times
    too small while the logit scale's is right.  The ratio between the two is the real error
    (open_clip issue #616 sees the same factor from the other side: its gradients *with*
    ``gather_with_grad`` are ``W`` times those without, before DDP averages them).  We scale
    the gradient of the local slice by ``W`` (:class:`~mmext.models.utils.ScaleGrad`), which
    makes it exact with no extra communication.

* ``local_loss=True`` (rank ``r`` computes only its ``n_r`` rows against all ``N`` columns):
  the rank's loss is ``(W / N) * sum of its rows`` so that the ranks' mean is ``L``; the gathered
  columns must carry gradient (``gather_with_grad=True``), the sum in the gather's backward then
  gives ``W * dL/df_r`` and DDP's averaging the exact gradient for any split of the batch.
  ``local_loss=True`` with ``gather_with_grad=False`` cannot be exact (the other ranks' rows'
  gradient with respect to our columns is never sent) and is refused.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_dist_info
from torch import Tensor

from mmext.registry import MODELS

from ..utils import ScaleGrad, gather_features

__all__ = ['CLIPLoss']


@MODELS.register_module()
class CLIPLoss(nn.Module):
    """Symmetric InfoNCE of CLIP with a learnable, clamped logit scale.

    Args:
        logit_scale_init: Initial ``t`` of ``s = exp(t)``; default ``log(1 / 0.07)``.
        max_logit_scale: Upper clamp of ``s`` (applied to ``t`` in place before use); 100.
        learnable_scale: Whether ``t`` is an ``nn.Parameter``.
        local_loss: Compute only the local rows against the global batch (memory ``n x N``).
        gather_with_grad: Gather the other ranks' features with a differentiable all-gather.
        normalize: L2-normalise the inputs.
        loss_weight: Multiplier of the returned loss.
    """

    def __init__(self,
                 logit_scale_init: float = math.log(1 / 0.07),
                 max_logit_scale: float = 100.0,
                 learnable_scale: bool = True,
                 local_loss: bool = False,
                 gather_with_grad: bool = False,
                 normalize: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if max_logit_scale <= 0 or logit_scale_init > math.log(max_logit_scale):
            raise ValueError(f'CLIPLoss logit_scale_init={logit_scale_init!r} must be <= '
                             f'log(max_logit_scale={max_logit_scale!r})')
        if local_loss and not gather_with_grad:
            raise ValueError('CLIPLoss(local_loss=True) needs gather_with_grad=True: the other '
                             "ranks' rows depend on this rank's features and their gradient is "
                             'only sent back by a differentiable gather')
        t = torch.tensor(float(logit_scale_init))
        if learnable_scale:
            self.logit_scale = nn.Parameter(t)
        else:
            self.register_buffer('logit_scale', t)
        self.max_log_scale = math.log(max_logit_scale)
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.normalize = normalize
        self.loss_weight = float(loss_weight)

    def scale(self) -> Tensor:
        """``s = exp(t)`` after clamping ``t`` in place to ``<= log(max_logit_scale)``."""
        with torch.no_grad():
            self.logit_scale.clamp_(max=self.max_log_scale)
        return self.logit_scale.exp()

    def forward(self,
                image_feat: Tensor,
                text_feat: Tensor,
                logit_scale: Optional[Tensor] = None) -> Tensor:
        """Loss of this rank (``(n, D)`` local features); the ranks' mean is the global loss.

        ``logit_scale`` overrides the module's own (already exponentiated) scale.
        """
        if image_feat.dim() != 2 or image_feat.shape != text_feat.shape:
            raise ValueError('CLIPLoss expects image_feat and text_feat of the same (n, D) '
                             f'shape, got {tuple(image_feat.shape)} and {tuple(text_feat.shape)}')
        if not (torch.isfinite(image_feat).all() and torch.isfinite(text_feat).all()):
            raise ValueError('CLIPLoss features contain NaN or Inf')
        if self.normalize:
            image_feat, text_feat = F.normalize(image_feat, dim=-1), F.normalize(text_feat, dim=-1)
        scale = self.scale() if logit_scale is None else logit_scale
        _, world_size = get_dist_info()
        if world_size > 1 and not self.gather_with_grad:
            # only the local slice is differentiable; make up for DDP's 1/W (module docstring)
            image_feat = ScaleGrad.apply(image_feat, float(world_size))
            text_feat = ScaleGrad.apply(text_feat, float(world_size))
        all_image, offset = gather_features(image_feat, with_grad=self.gather_with_grad)
        all_text, _ = gather_features(text_feat, with_grad=self.gather_with_grad)
        num_global, n = all_image.shape[0], image_feat.shape[0]

        if self.local_loss:
            labels = offset + torch.arange(n, device=image_feat.device)
            logits_i2t = scale * image_feat @ all_text.t()
            logits_t2i = scale * text_feat @ all_image.t()
            rows = F.cross_entropy(logits_i2t, labels, reduction='sum') + \
                F.cross_entropy(logits_t2i, labels, reduction='sum')
            loss = rows * (0.5 * world_size / num_global)
        else:
            labels = torch.arange(num_global, device=image_feat.device)
            logits = scale * all_image @ all_text.t()
            loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
        return self.loss_weight * loss
