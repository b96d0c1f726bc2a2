"""One-to-one (Hungarian) assignment of predictions to targets, for a whole batch at once.

DETR (Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020, Sec. 3.1, eq. 1)
trains on the permutation of the ``N`` predictions that minimises ``sum_i L_match(y_i,
y_hat_sigma(i))``, where the matching cost is a weighted sum of terms (classification, L1 box,
GIoU; mask BCE and Dice in MaskFormer).  The optimal permutation is a linear sum assignment,
solved exactly by the Hungarian method (Kuhn 1955; Munkres 1957).

:class:`HungarianAssigner` keeps mmdet's interface (``assign(pred_instances, gt_instances,
img_meta)`` -> :class:`AssignResult` with 1-based ``gt_inds``, ``0`` for background, and
``labels``), so ``assigner=dict(type='mmext.HungarianAssigner', match_costs=[...])`` drops into
mmdet's DETR-family heads and MaskFormer.  :meth:`HungarianAssigner.assign_batch` assigns all
images of a batch: every cost term is computed once on a padded ``[B, Q, G_max]`` tensor and the
batch is solved in one call to :func:`mmext.ops.linear_sum_assignment`, which picks its backend
(mmext's compiled solver for CPU costs, else scipy on one host copy of the batch).
"""
import warnings
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmdet.models.task_modules.assigners.assign_result import AssignResult
from mmdet.models.task_modules.assigners.base_assigner import BaseAssigner
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from mmext.ops import LSA_BACKENDS, linear_sum_assignment
from mmext.registry import TASK_UTILS, build_with_fallback

from .finite_check import nonfinite_blocks, nonfinite_images
from .match_costs import MatchBatch, as_batched_cost

CostCfg = Union[dict, ConfigDict]
SOLVERS = LSA_BACKENDS + ('torch', )  # 'torch': deprecated, solved as 'auto'


@TASK_UTILS.register_module()
class HungarianAssigner(BaseAssigner):
    """Minimum-cost one-to-one matching of predictions (queries) to ground truths.

    Args:
        match_costs: One match-cost config or a non-empty list of them; the cost matrix is their
            sum.  Unscoped types resolve to mmext's costs first, then mmdet's.
        solver: The ``backend`` of :func:`mmext.ops.linear_sum_assignment`: ``'auto'``
            (default: mmext's compiled solver for CPU costs when mmext's ops are built, else
            scipy), or force ``'compiled'`` / ``'scipy'``.  ``'torch'`` (the removed torch
            solver, which no measurement found faster) is deprecated: it warns and means
            ``'auto'``.

    All solvers are exact, so they reach the same total cost; they can only differ in which of
    several equally cheap matchings they return.
    """

    def __init__(self, match_costs: Union[CostCfg, List[CostCfg]], solver: str = 'auto') -> None:
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        if not match_costs:
            raise ValueError('match_costs must not be an empty list')
        if solver not in SOLVERS:
            raise ValueError(f'solver must be one of {SOLVERS}, got {solver!r}')
        if solver == 'torch':
            warnings.warn(
                "HungarianAssigner: solver='torch' is deprecated and solved as "
                "'auto' (same optimum; see docs/components/hungarian_assigner.md)",
                DeprecationWarning,
                stacklevel=2)
            solver = 'auto'
        self.solver = solver
        self.match_costs = [
            build_with_fallback(TASK_UTILS, cfg) if isinstance(cfg, dict) else cfg
            for cfg in match_costs
        ]

    # ------------------------------------------------------------------ costs
    def _cost_terms(self, batch: MatchBatch) -> Tensor:
        cost = None
        for term in self.match_costs:
            c = as_batched_cost(term).weighted_batch_cost(batch)
            cost = c if cost is None else cost.add_(c)  # in place; same order as mmdet's sum
        return cost

    @torch.no_grad()  # matching is not differentiated (mmdet detaches before scipy, too)
    def batch_cost(self,
                   pred_instances: Sequence[InstanceData],
                   gt_instances: Sequence[InstanceData],
                   img_metas: Optional[Sequence[Optional[dict]]] = None) -> Dict[str, Tensor]:
        """Total ``[B, Q_max, G_max]`` cost plus ``num_preds``/``num_gts``, NaN/inf-checked.

        Raises:
            ValueError: A term has NaN/inf inside some image's valid block; the message names
                the term(s) and the 0-based image index(es).
        """
        preds, gts = list(pred_instances), list(gt_instances)
        metas = list(img_metas) if img_metas is not None else [None] * len(preds)
        batch = MatchBatch.from_instances(preds, gts, metas)
        cost = self._cost_terms(batch)
        bad, valid = nonfinite_blocks(cost, batch.num_preds, batch.num_gts)
        if bool(bad.any()):  # single sync; only on failure do we look at the terms
            found = []
            for term in self.match_costs:
                c = as_batched_cost(term).weighted_batch_cost(batch)
                imgs = nonfinite_images(c, valid).nonzero().flatten().tolist()
                if imgs:
                    found.append(f'{type(term).__name__} in image(s) {imgs}')
            where = '; '.join(found) or (
                f'the summed cost in image(s) {bad.nonzero().flatten().tolist()}')
            raise ValueError(f'HungarianAssigner: NaN or inf match cost: {where} '
                             '(0-based image index within the batch).')
        return dict(
            cost=cost, num_preds=batch.num_preds, num_gts=batch.num_gts, gt_labels=batch.gt_labels)

    def assign_batch(self,
                     pred_instances: Sequence[InstanceData],
                     gt_instances: Sequence[InstanceData],
                     img_metas: Optional[Sequence[Optional[dict]]] = None,
                     **kwargs) -> List[AssignResult]:
        """Assign every image of a batch; returns one :class:`AssignResult` per image, equal to
        what :meth:`assign` gives for that image alone."""
        if len(pred_instances) == 0:
            return []
        out = self.batch_cost(pred_instances, gt_instances, img_metas)
        cost, num_preds, num_gts = out['cost'], out['num_preds'], out['num_gts']
        B, Q, G = cost.shape
        device = num_gts.device
        if G == 0:  # no targets anywhere: everything is background
            match = torch.full((B, Q), -1, dtype=torch.long, device=device)
        else:  # [B, Q]: 0-based matched target per query, -1 when unmatched
            match = linear_sum_assignment(cost, num_preds, num_gts, backend=self.solver)
        gt_inds = match + 1  # 1-based target index, 0 = background
        if G:
            labels = out['gt_labels'].gather(1, match.clamp(min=0))
            labels = torch.where(match >= 0, labels, labels.new_full((), -1))
        else:
            labels = torch.full((B, Q), -1, dtype=torch.long, device=device)
        results = []
        for b, (nq, ng) in enumerate(zip(num_preds.tolist(), num_gts.tolist())):
            results.append(
                AssignResult(
                    num_gts=ng, gt_inds=gt_inds[b, :nq], max_overlaps=None, labels=labels[b, :nq]))
        return results

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               img_meta: Optional[dict] = None,
               **kwargs) -> AssignResult:
        """mmdet's per-image interface (a batch of one).

        Args:
            pred_instances: ``scores [Q, C]`` logits, ``bboxes [Q, 4]`` pixel xyxy and/or
                ``masks [Q, ...]`` as the match costs need.
            gt_instances: ``labels [G]``, ``bboxes [G, 4]`` and/or ``masks [G, ...]``.
            img_meta: Needs ``img_shape`` (h, w) for box costs.

        Returns:
            :class:`AssignResult`: ``gt_inds`` (1-based target, 0 background), ``labels``
            (target label, -1 background), ``max_overlaps=None``.
        """
        return self.assign_batch([pred_instances], [gt_instances], [img_meta])[0]
