"""Resampling a learnt absolute position embedding to another patch grid.

ViT (Dosovitskiy et al., ICLR 2021, Sec. 3.2, "Fine-tuning and higher resolution") and Swin's
optional absolute embedding are laid out on the pre-training patch grid; other input sizes (and
checkpoints trained at another size) use the embedding interpolated in 2-D to their grid.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ['resize_pos_embed']


def resize_pos_embed(pos_embed: torch.Tensor,
                     src_hw: Tuple[int, int],
                     dst_hw: Tuple[int, int],
                     num_extra_tokens: int = 1,
                     mode: str = 'bicubic',
                     antialias: bool = False) -> torch.Tensor:
    """Resample the grid part of a ``(1, extra + h*w, C)`` position embedding to ``dst_hw``.

    The leading ``num_extra_tokens`` rows (class token) are kept as they are; the grid rows are
    viewed as a ``C``-channel ``h x w`` image and interpolated with half-pixel centres
    (``align_corners=False``).  Interpolation runs in float32 (bicubic needs it).
    """
    if tuple(src_hw) == tuple(dst_hw):
        return pos_embed
    if pos_embed.dim() != 3 or pos_embed.shape[1] != num_extra_tokens + src_hw[0] * src_hw[1]:
        raise ValueError(f'pos_embed of shape {tuple(pos_embed.shape)} does not hold '
                         f'{num_extra_tokens} extra tokens + a {src_hw[0]}x{src_hw[1]} grid')
    extra, grid = pos_embed[:, :num_extra_tokens], pos_embed[:, num_extra_tokens:]
    channels = grid.shape[-1]
    grid = grid.reshape(1, src_hw[0], src_hw[1], channels).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid.float(), size=tuple(dst_hw), mode=mode, align_corners=False,
        antialias=antialias).to(pos_embed.dtype)
    return torch.cat([extra, grid.flatten(2).transpose(1, 2)], dim=1)
