"""The linear stochastic-depth schedule of ViT/DeiT and Swin backbones.

Stochastic depth (Huang et al., ECCV 2016) drops a residual branch with a probability that grows
linearly with depth: from 0 at the first block to ``drop_path_rate`` at the last.
"""
from typing import List

import torch

__all__ = ['drop_path_rates']


def drop_path_rates(drop_path_rate: float,
                    num_blocks: int,
                    dtype: torch.dtype = torch.float32) -> List[float]:
    """``num_blocks`` rates evenly spaced over ``[0, drop_path_rate]`` (a single block: 0).

    ``dtype`` is the precision the spacing is computed in; the references differ and the rate
    sets DropPath's ``1 / keep_prob`` scale, so each backbone keeps its reference's: float32 for
    Swin (official code, mmpretrain, mmdet: ``torch.linspace``), float64 for ViT (mmpretrain:
    ``np.linspace``).
    """
    if num_blocks < 0:
        raise ValueError(f'num_blocks must be >= 0, got {num_blocks}')
    return torch.linspace(0, drop_path_rate, num_blocks, dtype=dtype, device='cpu').tolist()
