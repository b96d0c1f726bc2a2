"""FPN pixel decoder of MaskFormer.

MaskFormer (Cheng et al., "Per-Pixel Classification is Not All You Need for Semantic
Segmentation", NeurIPS 2021, Sec. 3.3 and Fig. 2): a pixel decoder turns the backbone's feature
pyramid into per-pixel embeddings ``E_pixel`` (the "mask features", ``C_E x H/4 x W/4``).  The
FPN-style decoder starts from the coarsest level (3x3 conv), then at every finer level adds a 1x1
lateral projection to the nearest-upsampled running map and refines it with a 3x3 conv (Lin et
al., "Feature Pyramid Networks", CVPR 2017).  A last 3x3 conv gives the mask features.

The memory of the transformer predictor is the coarsest backbone feature itself.

Parameter names equal mmdet 3.3's ``PixelDecoder`` (``lateral_convs``, ``output_convs``,
``last_feat_conv``, ``mask_feature``), so MaskFormer checkpoints of mmdet/mmseg load unchanged.
"""
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import Conv2d, ConvModule
from mmengine.model import BaseModule, ModuleList, caffe2_xavier_init
from torch import Tensor

from mmext.registry import MODELS

__all__ = ['PixelDecoder']


@MODELS.register_module()
class PixelDecoder(BaseModule):
    """FPN pixel decoder (MaskFormer, Cheng et al. 2021, Sec. 3.3).

    Args:
        in_channels: Channels of the backbone levels, finest first.
        feat_channels: Channels of the FPN maps.
        out_channels: Channels of the mask features (``C_E``).
        norm_cfg: Norm of the FPN convs (GN with 32 groups, as MaskFormer).
        act_cfg: Activation of the 3x3 convs.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 feat_channels: int,
                 out_channels: int,
                 norm_cfg: Optional[dict] = dict(type='GN', num_groups=32),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) < 1:
            raise ValueError('PixelDecoder needs at least one input level (in_channels=[])')
        self.in_channels = list(in_channels)
        self.num_inputs = len(in_channels)
        self.feat_channels = feat_channels
        self.out_channels = out_channels
        bias = norm_cfg is None  # a norm right after the conv makes its bias redundant
        self.lateral_convs = ModuleList()
        self.output_convs = ModuleList()
        for c in self.in_channels[:-1]:
            self.lateral_convs.append(
                ConvModule(c, feat_channels, 1, bias=bias, norm_cfg=norm_cfg, act_cfg=None))
            self.output_convs.append(
                ConvModule(
                    feat_channels,
                    feat_channels,
                    3,
                    padding=1,
                    bias=bias,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg))
        self.last_feat_conv = self._top_conv(norm_cfg, act_cfg, bias)
        self.mask_feature = Conv2d(feat_channels, out_channels, 3, padding=1)

    def _top_conv(self, norm_cfg, act_cfg, bias) -> Optional[nn.Module]:
        return ConvModule(
            self.in_channels[-1],
            self.feat_channels,
            3,
            padding=1,
            bias=bias,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg)

    @property
    def memory_channels(self) -> int:
        """Channels of the memory handed to the transformer predictor."""
        return self.in_channels[-1]

    def init_weights(self) -> None:
        """Caffe2-Xavier (uniform, ``a=1``) on every conv, zero biases (MaskFormer's init)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                caffe2_xavier_init(m, bias=0)

    def _check(self, feats: Sequence[Tensor]) -> None:
        if len(feats) != self.num_inputs:
            raise ValueError(f'{type(self).__name__}: got {len(feats)} feature levels, '
                             f'in_channels expects {self.num_inputs}')
        for i, (f, c) in enumerate(zip(feats, self.in_channels)):
            if f.dim() != 4 or f.shape[1] != c:
                raise ValueError(f'{type(self).__name__}: level {i} must be [B, {c}, H, W], '
                                 f'got {tuple(f.shape)}')

    def fuse(self, top: Tensor, feats: Sequence[Tensor]) -> Tensor:
        """Top-down pathway from the coarsest map ``top`` to the finest level; mask features."""
        y = top
        for i in range(self.num_inputs - 2, -1, -1):
            lateral = self.lateral_convs[i](feats[i])
            y = self.output_convs[i](
                lateral + F.interpolate(y, size=lateral.shape[-2:], mode='nearest'))
        return self.mask_feature(y)

    def forward(self,
                feats: Sequence[Tensor],
                batch_img_metas: Optional[List[dict]] = None) -> Tuple[Tensor, Tensor]:
        """Returns ``(mask_features [B, out_channels, H/4, W/4], memory [B, C_last, h, w])``."""
        self._check(feats)
        return self.fuse(self.last_feat_conv(feats[-1]), feats), feats[-1]
