"""Building blocks of the Swin Transformer: (shifted) window attention, the block, patch merging.

Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al., ICCV 2021,
https://arxiv.org/abs/2103.14030).  A block (Sec. 3.2, eq. 3) is

    z' = x + DropPath(W-MSA(LN(x)))        (SW-MSA in every second block)
    z  = z' + DropPath(MLP(LN(z')))

and window attention inside one ``M x M`` window (eq. 4) is

    Attention(Q, K, V) = SoftMax(Q K^T / sqrt(d) + B) V

with ``B`` gathered from a learned ``(2M-1)^2 x heads`` relative position bias table.  Shifted
windows (Sec. 3.2, Fig. 4) roll the map by ``M // 2`` so windows straddle the previous partition;
an additive mask of ``-100`` keeps tokens that were not neighbours before the roll from attending
to each other.  We add bias and mask once and hand the sum to
:func:`torch.nn.functional.scaled_dot_product_attention` as its ``attn_mask``.

Module and parameter names (``attn.w_msa.qkv``, ``ffn.layers.0.0``, ``downsample.reduction``...)
follow mmpretrain's/mmdet's layout so their Swin checkpoints load without conversion.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# The reference implementations (official, timm, mmpretrain, mmdet) mask with -100, not -inf:
# exp(-100) underflows to 0 in fp32 all the same, and the value is kept for exact parity.
MASK_VALUE = -100.0


def relative_position_index(window: Tuple[int, int]) -> Tensor:
    """``[Wh*Ww, Wh*Ww]`` index into the ``(2Wh-1)(2Ww-1)`` bias table for every token pair.

    Pair ``(i, j)`` with offsets ``dh = h_i - h_j`` and ``dw = w_i - w_j`` reads row
    ``(dh + Wh - 1) * (2Ww - 1) + (dw + Ww - 1)``.
    """
    wh, ww = window
    hh, ww_ = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing='ij')
    h, w = hh.flatten(), ww_.flatten()
    dh = h[:, None] - h[None, :] + wh - 1
    dw = w[:, None] - w[None, :] + ww - 1
    return dh * (2 * ww - 1) + dw


def to_windows(x: Tensor, window: int) -> Tensor:
    """``[B, H, W, C]`` (H, W multiples of ``window``) -> ``[B, nW, window*window, C]``."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).transpose(2, 3)
    return x.reshape(b, (h // window) * (w // window), window * window, c)


def from_windows(x: Tensor, h: int, w: int) -> Tensor:
    """Inverse of :func:`to_windows`: ``[B, nW, M*M, C]`` -> ``[B, h, w, C]``."""
    b, _, n, c = x.shape
    m = int(round(n**0.5))
    x = x.view(b, h // m, w // m, m, m, c).transpose(2, 3)
    return x.reshape(b, h, w, c)


def shift_mask(hw: Tuple[int, int], window: int, shift: int, device: torch.device,
               dtype: torch.dtype) -> Tensor:
    """Additive ``[nW, M*M, M*M]`` mask for a padded map rolled up-left by ``shift``.

    After the roll the last ``shift`` rows/columns hold tokens from the opposite border.  The map
    is split into 3 bands per axis (``[0, H-M)``, ``[H-M, H-shift)``, ``[H-shift, H)``); two tokens
    may attend to each other only if they lie in the same band along both axes.
    """
    h, w = hw
    region = torch.zeros(1, h, w, 1, device=device, dtype=dtype)
    bands = ((0, -window), (-window, -shift), (-shift, None))
    label = 0
    for hs in bands:
        for ws in bands:
            region[:, hs[0]:hs[1], ws[0]:ws[1], :] = label
            label += 1
    region = to_windows(region, window)[0, ..., 0]  # [nW, M*M]
    different = region[:, :, None] != region[:, None, :]
    return torch.zeros_like(different, dtype=dtype).masked_fill(different, MASK_VALUE)


class WindowMSA(BaseModule):
    """Multi-head self-attention inside windows with a relative position bias (eq. 4).

    Args:
        embed_dims: Channels ``C`` of the tokens.
        num_heads: Number of heads; ``C`` must be divisible by it.
        window_size: Window side ``M``.
        qkv_bias: Learn a bias for the q, k, v projection.
        qk_scale: Override of the ``head_dims ** -0.5`` logit scale.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} is not divisible by num_heads={num_heads}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.window_size = (window_size, window_size)
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1)**2, num_heads))
        # Persistent, as in mmpretrain/mmdet checkpoints, so theirs load with strict=True.
        self.register_buffer('relative_position_index', relative_position_index(self.window_size))
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def position_bias(self) -> Tensor:
        """``B`` of eq. 4 as ``[heads, M*M, M*M]``."""
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """``x``: ``[B, nW, N, C]`` window tokens; ``mask``: ``[nW, N, N]`` additive or None."""
        b, nw, n, c = x.shape
        head_dims = c // self.num_heads
        qkv = self.qkv(x).view(b, nw, n, 3, self.num_heads, head_dims).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # [B, nW, heads, N, d]
        bias = self.position_bias()  # [heads, N, N], shared by all windows
        if mask is None:
            q, k, v = (t.reshape(b * nw, self.num_heads, n, head_dims) for t in (q, k, v))
            attn_mask = bias.unsqueeze(0)  # broadcast over every window of every image
        else:
            # Windows x heads form SDPA's head axis, so the per-window mask broadcasts over the
            # images as a view instead of being copied once per image.
            q, k, v = (t.reshape(b, nw * self.num_heads, n, head_dims) for t in (q, k, v))
            attn_mask = (bias.unsqueeze(0) + mask.unsqueeze(1).to(bias.dtype)).reshape(
                1, nw * self.num_heads, n, n)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.attn_drop if self.training else 0.,
            scale=self.scale)
        out = out.reshape(b, nw, self.num_heads, n, head_dims).transpose(2, 3).reshape(b, nw, n, c)
        return self.proj_drop(self.proj(out))


class ShiftWindowMSA(BaseModule):
    """W-MSA or SW-MSA on a token map: pad to whole windows, roll, attend, undo both.

    Args:
        embed_dims, num_heads, window_size: As :class:`WindowMSA`.
        shift_size: Roll of the shifted variant (``window_size // 2``), 0 for plain W-MSA.
        drop_path: Stochastic depth probability of this residual branch.
        pad_small_map: What to do when a map side is at most ``window_size``.  False (the
            classification behaviour of mmpretrain and the official code): a map exactly one
            window wide is not shifted, a smaller one is an error.  True (detection and
            segmentation, mmdet's behaviour): pad to a whole window and shift anyway.
        **attn_kwargs: ``qkv_bias``, ``qk_scale``, ``attn_drop``, ``proj_drop`` of
            :class:`WindowMSA`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int,
                 shift_size: int = 0,
                 drop_path: float = 0.,
                 pad_small_map: bool = False,
                 init_cfg: Optional[dict] = None,
                 **attn_kwargs) -> None:
        super().__init__(init_cfg)
        if not 0 <= shift_size < window_size:
            raise ValueError(f'shift_size={shift_size} must lie in [0, window_size={window_size})')
        self.window_size = window_size
        self.shift_size = shift_size
        self.pad_small_map = pad_small_map
        self.w_msa = WindowMSA(embed_dims, num_heads, window_size, **attn_kwargs)
        self.drop = build_dropout(dict(type='DropPath', drop_prob=drop_path))
        self._masks: Dict[tuple, Tensor] = {}  # masks depend on the padded size only

    def _mask(self, hw: Tuple[int, int], shift: int, x: Tensor) -> Tensor:
        key = (hw, shift, x.device, x.dtype)
        if key not in self._masks:
            if len(self._masks) > 16:  # multi-scale training sees many sizes: keep a few
                self._masks.clear()
            self._masks[key] = shift_mask(hw, self.window_size, shift, x.device, x.dtype)
        return self._masks[key]

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        b, length, c = x.shape
        h, w = hw_shape
        if length != h * w:
            raise ValueError(f'{length} tokens do not form the stated {h}x{w} map')
        m, shift = self.window_size, self.shift_size
        if min(h, w) < m and not self.pad_small_map:
            raise ValueError(
                f'feature map {h}x{w} is smaller than window_size={m}: enlarge the input, lower '
                'window_size, or set pad_small_map=True (detection/segmentation behaviour)')
        if min(h, w) == m and not self.pad_small_map:
            shift = 0  # one window covers the map: the official classifier does not shift
        x = x.view(b, h, w, c)
        # Pad right/bottom with zeros before rolling, as the official detection code does; the
        # zero tokens then take part in attention like any other (they are not masked).
        pad_b, pad_r = (m - h % m) % m, (m - w % m) % m
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        mask = self._mask((hp, wp), shift, x) if shift else None
        x = from_windows(self.w_msa(to_windows(x, m), mask), hp, wp)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        if pad_b or pad_r:
            x = x[:, :h, :w]
        return self.drop(x.reshape(b, h * w, c))


class SwinBlock(BaseModule):
    """One Swin block (eq. 3): pre-norm (S)W-MSA and pre-norm MLP, each with a residual.

    Args:
        embed_dims: Channels.
        num_heads: Attention heads.
        window_size: Window side ``M``.
        shift: Use shifted windows (every second block of a stage).
        mlp_ratio: MLP hidden width over ``embed_dims``.
        drop_path: Stochastic depth probability of both residual branches.
        drop_rate: Dropout after the attention projection and inside the MLP.
        attn_drop_rate: Dropout on the attention weights.
        qkv_bias, qk_scale: See :class:`WindowMSA`.
        pad_small_map: See :class:`ShiftWindowMSA`.
        norm_cfg: Norm layer config for mmcv's ``build_norm_layer`` (``LN`` or a fused LayerNorm).
        with_cp: Recompute the block in backward instead of storing its activations.
        proj_drop, ffn_drop: Dropout after the attention projection and inside the MLP, when
            they should differ from ``drop_rate`` (mmpretrain's ``attn_cfgs``/``ffn_cfgs``).
        act_cfg: MLP activation (GELU).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int = 7,
                 shift: bool = False,
                 mlp_ratio: float = 4.,
                 drop_path: float = 0.,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 pad_small_map: bool = False,
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 proj_drop: Optional[float] = None,
                 ffn_drop: Optional[float] = None,
                 act_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = ShiftWindowMSA(
            embed_dims,
            num_heads,
            window_size,
            shift_size=window_size // 2 if shift else 0,
            drop_path=drop_path,
            pad_small_map=pad_small_map,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate if proj_drop is None else proj_drop)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        # mmcv's FFN: Linear-GELU-Dropout-Linear-Dropout, then DropPath and the residual.
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=int(embed_dims * mlp_ratio),
            num_fcs=2,
            ffn_drop=drop_rate if ffn_drop is None else ffn_drop,
            act_cfg=dict(type='GELU') if act_cfg is None else act_cfg,
            dropout_layer=dict(type='DropPath', drop_prob=drop_path),
            add_identity=True)

    def _forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        x = x + self.attn(self.norm1(x), hw_shape)
        return self.ffn(self.norm2(x), identity=x)

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        if self.with_cp and self.training and x.requires_grad:
            return checkpoint(self._forward, x, hw_shape, use_reentrant=False)
        return self._forward(x, hw_shape)


class PatchMerging(BaseModule):
    """Patch merging (Sec. 3.1): concatenate each 2x2 neighbourhood, LayerNorm, project 4C -> 2C.

    An odd side is zero-padded at the bottom/right first.  The 4C vector is ordered channel-major,
    ``c * 4 + dh * 2 + dw``, the layout mmcv's ``nn.Unfold``-based merging produces and so the one
    mmpretrain/mmdet checkpoints hold; official and timm checkpoints concatenate the four
    neighbours instead (``(2 * dw + dh) * C + c``) and are reordered by
    ``tools/model_converters/swin_to_mmext.py``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm = build_norm_layer(norm_cfg, 4 * in_channels)[1]
        self.reduction = nn.Linear(4 * in_channels, out_channels, bias=False)

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tuple[Tensor, Tuple[int, int]]:
        b, length, c = x.shape
        h, w = hw_shape
        if length != h * w:
            raise ValueError(f'{length} tokens do not form the stated {h}x{w} map')
        x = x.view(b, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        # [B, h2, dh, w2, dw, C] -> [B, h2, w2, C, dh, dw]: channel-major 2x2 neighbourhoods.
        x = x.view(b, h2, 2, w2, 2, c).permute(0, 1, 3, 5, 2, 4).reshape(b, h2 * w2, 4 * c)
        return self.reduction(self.norm(x)), (h2, w2)
