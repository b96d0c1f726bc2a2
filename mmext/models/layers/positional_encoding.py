"""Fixed sine/cosine 2-D positional encoding of DETR.

DETR: End-to-End Object Detection with Transformers (Carion et al., ECCV 2020,
https://arxiv.org/abs/2005.12872), Sec. 3.2 and appendix A.4: the Transformer of "Attention is All
You Need" (Vaswani et al., 2017, Sec. 3.5) encodes a 1-D position ``p`` as

    PE(p, 2i) = sin(p / T^(2i / d)),    PE(p, 2i + 1) = cos(p / T^(2i / d)),

and DETR applies it separately to the row ``y`` and the column ``x`` of each feature-map cell,
``d = num_feats`` channels each, concatenated as ``[PE(y), PE(x)]`` (``2 * num_feats`` channels).
Positions are counted over the *valid* (unpadded) cells only, by cumulative sums of the inverted
padding mask, and with ``normalize=True`` they are divided by the valid extent of their row/column
and multiplied by ``scale`` (``2 pi``), so padding never shifts the code of a real pixel.

Outputs equal ``mmdet.models.layers.SinePositionalEncoding`` (mmdet 3.3.0).
"""
import math
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import Tensor

from mmext.registry import MODELS


@MODELS.register_module()
class SinePositionalEncoding(BaseModule):
    """Mask-aware 2-D sine positional encoding (DETR, Carion et al., 2020).

    Args:
        num_feats: Channels per axis; the output has ``2 * num_feats`` channels (``y`` first).
        temperature: ``T`` of the wavelength progression. Defaults to 10000.
        normalize: Divide positions by the valid extent of their row/column (plus ``eps``) and
            multiply by ``scale``. Defaults to False.
        scale: Range of normalised positions. Defaults to ``2 * pi``.
        eps: Added to the normaliser. Defaults to 1e-6.
        offset: Added to the 1-based positions before normalising. Defaults to 0.
        init_cfg: Unused (no parameters); kept for the ``BaseModule`` interface.
    """

    def __init__(self,
                 num_feats: int,
                 temperature: int = 10000,
                 normalize: bool = False,
                 scale: float = 2 * math.pi,
                 eps: float = 1e-6,
                 offset: float = 0.,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if normalize and not isinstance(scale, (int, float)):
            raise TypeError(f'normalize=True needs a numeric scale, got {type(scale).__name__}')
        if num_feats <= 0 or num_feats % 2:
            raise ValueError(f'num_feats must be a positive even number, got {num_feats}')
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps
        self.offset = offset

    def forward(self, mask: Optional[Tensor], input: Optional[Tensor] = None) -> Tensor:
        """Encode every cell of a ``[B, H, W]`` padding mask (non-zero = padding).

        With ``mask=None`` no cell is padded and ``input`` (``[B, C, H, W]``) gives the shape.

        Returns:
            ``[B, 2 * num_feats, H, W]`` float32 codes.
        """
        if mask is None:
            if input is None:
                raise ValueError('SinePositionalEncoding needs a mask or an input tensor')
            valid = input.new_ones((input.size(0), ) + tuple(input.shape[-2:]), dtype=torch.int)
        else:
            valid = (mask == 0).to(torch.int)
        # 1-based index of each cell among the valid cells of its column (y) / row (x)
        y_pos = valid.cumsum(1, dtype=torch.float32)
        x_pos = valid.cumsum(2, dtype=torch.float32)
        if self.normalize:
            # the last cumsum entry is the valid extent of that column/row
            y_pos = (y_pos + self.offset) / (y_pos[:, -1:, :] + self.eps) * self.scale
            x_pos = (x_pos + self.offset) / (x_pos[:, :, -1:] + self.eps) * self.scale
        # wavelengths T^(2i/d), each shared by a (sin, cos) channel pair
        pair = torch.arange(self.num_feats, dtype=torch.float32, device=valid.device) // 2
        inv_freq = self.temperature**(2 * pair / self.num_feats)
        return torch.cat((self._sin_cos(y_pos / inv_freq[:, None, None, None]),
                          self._sin_cos(x_pos / inv_freq[:, None, None, None])),
                         dim=0).transpose(0, 1).contiguous()

    @staticmethod
    def _sin_cos(angles: Tensor) -> Tensor:
        """``[d, B, H, W]`` angles -> sin on even, cos on odd channels (interleaved)."""
        out = torch.empty_like(angles)
        out[0::2] = angles[0::2].sin()
        out[1::2] = angles[1::2].cos()
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_feats={self.num_feats}, '
                f'temperature={self.temperature}, normalize={self.normalize}, '
                f'scale={self.scale}, eps={self.eps}, offset={self.offset})')
