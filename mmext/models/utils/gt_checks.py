"""Ground-truth checks of detection heads that name the offending image.

A NaN or infinite ground-truth coordinate silently yields no positive in FCOS's target
assignment and an anonymous NaN cost in DETR's matching; both heads call
:func:`raise_on_nonfinite_gt_boxes` once per batch so the error names the image instead.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ['raise_on_nonfinite_gt_boxes']


def _describe(index: int, meta: Optional[dict]) -> str:
    meta = meta or {}
    what = [f'{k}={meta[k]!r}' for k in ('img_path', 'img_id') if meta.get(k) is not None]
    return f'image {index} of the batch' + (f' ({", ".join(what)})' if what else '')


def raise_on_nonfinite_gt_boxes(boxes: Sequence[Tensor], img_metas: Optional[Sequence[dict]],
                                owner: str) -> None:
    """Raise a ``ValueError`` naming the images whose ground-truth boxes hold NaN or inf.

    Args:
        boxes: Per image ``[n_i, 4]`` box tensors (``n_i`` may be 0).
        img_metas: Per image meta dicts; ``img_path`` and ``img_id`` are quoted when present.
        owner: Name of the caller, to start the message with.

    The fast path is one ``isfinite(...).all()`` over the batch, i.e. one host sync; images are
    only scanned one by one on failure.
    """
    if not boxes or bool(torch.isfinite(torch.cat([b.reshape(-1) for b in boxes])).all()):
        return
    metas = list(img_metas) if img_metas is not None else [None] * len(boxes)
    found = []
    for i, (b, meta) in enumerate(zip(boxes, metas)):
        bad = ~torch.isfinite(b).all(-1)
        if bool(bad.any()):
            shown = b[bad][:3].tolist()
            found.append(f'{_describe(i, meta)}: {int(bad.sum())} of {len(b)} box(es), e.g. '
                         f'{shown}')
    if found:
        raise ValueError(f'{owner}: ground-truth boxes with NaN or infinite coordinates in ' +
                         '; '.join(found) + ' (check the annotations and the data pipeline)')
