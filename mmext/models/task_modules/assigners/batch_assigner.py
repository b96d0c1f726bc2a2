"""One batch interface for every assigner, so heads have one target path.

mmext's :class:`HungarianAssigner` assigns a whole batch in one ``assign_batch`` call; mmdet's
assigners (and any other with mmdet's interface) assign one image per ``assign`` call.
:func:`as_batch_assigner` gives the latter ``assign_batch`` too, so a head calls
``as_batch_assigner(self.assigner).assign_batch(...)`` whatever its config builds.
"""
from typing import Any, List, Optional, Sequence

from mmdet.models.task_modules.assigners.assign_result import AssignResult
from mmengine.structures import InstanceData

__all__ = ['PerImageBatchAssigner', 'as_batch_assigner']


class PerImageBatchAssigner:
    """``assign_batch`` for an assigner that has only mmdet's per-image ``assign``.

    Args:
        assigner: Anything with ``assign(pred_instances, gt_instances, img_meta, **kwargs)``
            returning an :class:`AssignResult`.
    """

    def __init__(self, assigner: Any) -> None:
        self.assigner = assigner

    def assign_batch(self,
                     pred_instances: Sequence[InstanceData],
                     gt_instances: Sequence[InstanceData],
                     img_metas: Optional[Sequence[Optional[dict]]] = None,
                     **kwargs) -> List[AssignResult]:
        """One :class:`AssignResult` per image: ``assign`` called image by image."""
        metas = list(img_metas) if img_metas is not None else [None] * len(pred_instances)
        return [
            self.assigner.assign(pred_instances=p, gt_instances=g, img_meta=m, **kwargs)
            for p, g, m in zip(pred_instances, gt_instances, metas)
        ]


def as_batch_assigner(assigner: Any) -> Any:
    """``assigner`` itself when it has ``assign_batch`` (mmext's), else it wrapped in
    :class:`PerImageBatchAssigner`; either way ``.assign_batch(preds, gts, metas)`` returns one
    :class:`AssignResult` per image."""
    if callable(getattr(assigner, 'assign_batch', None)):
        return assigner
    return PerImageBatchAssigner(assigner)
