"""Padding masks of a batch of images, at a feature map's resolution.

Images of a batch are padded (bottom/right) to one size; attention must not attend to the padded
cells (DETR, Carion et al., ECCV 2020, Sec. 3.2 and appendix A.3).  mmdet's data pre-processor
records the padded batch size as ``batch_input_shape``; mmseg's records it per image as
``pad_shape`` (and pads nothing at test time).  Used by DETR and by MaskFormer's head and pixel
decoder.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['batch_input_shape', 'padding_mask']


def batch_input_shape(img_metas: Sequence[dict]) -> Tuple[int, int]:
    """The padded ``(H, W)`` of the batch: ``batch_input_shape`` (mmdet), else the largest
    ``pad_shape`` (mmseg), else the largest ``img_shape``."""
    meta = img_metas[0]
    if 'batch_input_shape' in meta:
        h, w = meta['batch_input_shape'][:2]
        return int(h), int(w)
    key = 'pad_shape' if all(m.get('pad_shape') is not None for m in img_metas) else 'img_shape'
    try:
        return (max(int(m[key][0]) for m in img_metas), max(int(m[key][1]) for m in img_metas))
    except KeyError as err:
        raise KeyError(f'img_metas need "batch_input_shape", "pad_shape" or "img_shape"; the '
                       f'first holds {sorted(meta)}') from err


def padding_mask(img_metas: Sequence[dict],
                 feat_hw: Tuple[int, int],
                 device: torch.device,
                 none_if_unpadded: bool = False) -> Optional[Tensor]:
    """``[B, h, w]`` bool, True at cells of the ``feat_hw`` map that cover only padding.

    The image-resolution mask is resized with nearest neighbour (as mmdet does), so a cell is
    padding when its sampled pixel is.  With ``none_if_unpadded``, a batch in which no image is
    padded gives None (DETR then skips the masking), as mmdet's DETR does.
    """
    H, W = batch_input_shape(img_metas)
    img_hw = [tuple(meta.get('img_shape', (H, W))[:2]) for meta in img_metas]
    if none_if_unpadded and all(hw == (H, W) for hw in img_hw):
        return None
    mask = torch.ones(len(img_metas), H, W, device=device)
    for i, (h, w) in enumerate(img_hw):
        mask[i, :h, :w] = 0
    return F.interpolate(mask[:, None], size=tuple(feat_hw), mode='nearest')[:, 0].bool()
