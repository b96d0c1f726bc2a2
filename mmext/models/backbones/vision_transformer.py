"""Vision Transformer backbone (Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers
for Image Recognition at Scale", ICLR 2021).

The image is cut into ``p x p`` patches, each linearly embedded (Eq. 1, a stride-``p``
convolution); a learned class token is prepended and a learned position embedding added:

    z_0 = [x_cls; x_p^1 E; ...; x_p^N E] + E_pos                                   (Eq. 1)

then ``L`` pre-norm encoder blocks follow

    z'_l = MSA(LN(z_{l-1})) + z_{l-1}                                               (Eq. 2)
    z_l  = MLP(LN(z'_l)) + z'_l                                                      (Eq. 3)

and a final LayerNorm gives the representation (Eq. 4).  When the input is not the pre-training
size, the grid part of ``E_pos`` is resampled bicubically to the new patch grid (Sec. 3.2,
"Fine-tuning and higher resolution").

State-dict keys follow mmpretrain's ``VisionTransformer`` (``patch_embed.projection``,
``layers.{i}.ln1/attn.qkv/attn.proj/ln2/ffn.layers.0.0/ffn.layers.1``, final norm ``ln1``,
pooled-output norm ``ln2``, ``pre_norm``), so mmpretrain checkpoints load unchanged; timm and the
official JAX ``.npz`` checkpoints go through ``tools/model_converters/vit_*.py``.
"""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import DropPath
from mmcv.cnn.bricks.transformer import FFN
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList

from mmext.registry import MODELS

from .arch_zoo import select_arch
from .drop_path import drop_path_rates
from .pos_embed import resize_pos_embed

__all__ = [
    'VisionTransformer', 'ViTEncoderLayer', 'ViTSelfAttention', 'ViTPatchEmbed', 'resize_pos_embed'
]

IntPair = Union[int, Tuple[int, int]]


def _pair(value: IntPair, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and v > 0 for v in value)):
        raise ValueError(f'VisionTransformer {name} must be a positive int or a pair of them, '
                         f'got {value!r}')
    return int(value[0]), int(value[1])


def _norm(norm_cfg: Dict[str, Any], dims: int) -> nn.Module:
    # mmcv's builder: any registered norm (e.g. a fused LayerNorm 'mmext.FusedLN') plugs in.
    return build_norm_layer(norm_cfg, dims)[1]


class ViTPatchEmbed(nn.Module):
    """Eq. 1's patch embedding: a ``p x p`` convolution with stride ``p``.

    Inputs whose sides are not multiples of ``p`` are zero-padded at the bottom and right (as
    mmcv's ``PatchEmbed`` with ``padding='corner'`` does), so every pixel reaches a patch.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 patch_size: Tuple[int, int],
                 bias: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.projection = nn.Conv2d(
            in_channels, embed_dims, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'VisionTransformer expects images (B, {self.in_channels}, H, W), '
                             f'got a tensor of shape {tuple(x.shape)}')
        ph, pw = self.patch_size
        pad_h, pad_w = -x.shape[2] % ph, -x.shape[3] % pw
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), hw


class ViTSelfAttention(nn.Module):
    """Multi-head self-attention (MSA of Eq. 2) through ``F.scaled_dot_product_attention``.

    One fused ``qkv`` projection, heads of ``embed_dims / num_heads`` channels, softmax scale
    ``1/sqrt(head_dims)``, output projection ``proj``.  On GPU, torch picks a fused
    (flash / memory-efficient) kernel; on CPU its math or flash-CPU path.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'VisionTransformer embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads})')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        # (B, N, 3C) -> 3 x (B, heads, N, head_dims)
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads,
                                      self.head_dims).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        x = x.transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_drop(self.proj(x))


class ViTEncoderLayer(BaseModule):
    """One pre-norm encoder block, Eqs. 2-3, with stochastic depth on both residual branches."""

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 qkv_bias: bool = True,
                 act_cfg: Optional[Dict[str, Any]] = None,
                 norm_cfg: Optional[Dict[str, Any]] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        norm_cfg = norm_cfg or dict(type='LN', eps=1e-6)
        self.ln1 = _norm(norm_cfg, embed_dims)
        self.attn = ViTSelfAttention(
            embed_dims, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop_rate, proj_drop=drop_rate)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.ln2 = _norm(norm_cfg, embed_dims)
        # mmcv's FFN: Linear-act-drop-Linear-drop, its residual added after its DropPath.
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=2,
            ffn_drop=drop_rate,
            dropout_layer=dict(type='DropPath', drop_prob=drop_path_rate)
            if drop_path_rate > 0 else None,
            act_cfg=act_cfg or dict(type='GELU'),
            add_identity=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.ln1(x)))
        return self.ffn(self.ln2(x), identity=x)


@MODELS.register_module()
class VisionTransformer(BaseModule):
    """Vision Transformer backbone (ViT, Dosovitskiy et al., ICLR 2021).

    Args:
        arch: ``'tiny'``/``'small'``/``'base'``/``'large'``/``'huge'`` (aliases ``'t'``, ``'s'``,
            ``'b'``, ``'l'``, ``'h'``, ``'deit-tiny'``, ``'deit-small'``, ``'deit-base'``), or a
            dict with ``embed_dims``, ``num_layers``, ``num_heads``, ``feedforward_channels``.
            tiny/small are DeiT's (192/384 channels, 12 layers); note that mmpretrain's
            ``'small'`` is a different, 768-channel 8-layer model.
        img_size: Pre-training input size; sets the position-embedding grid.  Other input
            sizes work: the embedding is resampled to the input's patch grid.
        patch_size: Patch side ``p`` (any int or pair; 16 and 32 are the paper's).
        in_channels: Image channels.
        out_indices: Layer (int) or sequence of layers whose output is returned (negative
            counts from the end); anything else (a dict, a set) raises ``TypeError``.
        drop_rate: Dropout after the position embedding, attention projection and MLP.
        attn_drop_rate: Dropout on the attention weights.
        drop_path_rate: Stochastic-depth rate of the last layer; layer ``i`` uses
            ``drop_path_rate * i / (num_layers - 1)`` (:func:`drop_path_rates`; a single layer
            gets 0, as in mmpretrain).
        qkv_bias: Bias in the ``qkv`` projection.
        norm_cfg: mmcv norm config of every LayerNorm (``type`` may name any registered norm).
        act_cfg: MLP activation.
        final_norm: LayerNorm after the last layer (Eq. 4).
        out_type: ``'cls_token'`` (B, C), ``'featmap'`` (B, C, h, w) of the patch tokens,
            ``'avg_featmap'`` (B, C) mean of the patch tokens through their own LayerNorm
            ``ln2``, or ``'raw'`` (B, extra + h*w, C).
        with_cls_token: Prepend the class token (needed for ``out_type='cls_token'``).
        frozen_stages: Freeze the embeddings and the first ``frozen_stages`` layers
            (``num_layers`` also freezes the final norms); -1 freezes nothing.
        interpolate_mode: Position-embedding resampling mode.
        interpolate_antialias: Antialias when the grid shrinks (timm resamples with it; mmpretrain
            without; it changes nothing when the grid grows).
        pre_norm: A LayerNorm before the first layer (CLIP-style); the patch conv then has no
            bias.
        with_cp: Gradient checkpointing of every layer (memory for compute, training only).
        init_cfg: ``None`` gives the reference initialisation (see :meth:`init_weights`);
            ``dict(type='Pretrained', checkpoint=PATH)`` loads an mmext/mmpretrain-keyed file.
    """

    # yapf: disable
    arch_zoo: Dict[str, Dict[str, int]] = {
        **dict.fromkeys(('t', 'tiny', 'deit-t', 'deit-tiny'),
                        dict(embed_dims=192, num_layers=12, num_heads=3,
                             feedforward_channels=768)),
        **dict.fromkeys(('s', 'small', 'deit-s', 'deit-small'),
                        dict(embed_dims=384, num_layers=12, num_heads=6,
                             feedforward_channels=1536)),
        **dict.fromkeys(('b', 'base', 'deit-b', 'deit-base'),
                        dict(embed_dims=768, num_layers=12, num_heads=12,
                             feedforward_channels=3072)),
        **dict.fromkeys(('l', 'large'),
                        dict(embed_dims=1024, num_layers=24, num_heads=16,
                             feedforward_channels=4096)),
        **dict.fromkeys(('h', 'huge'),
                        dict(embed_dims=1280, num_layers=32, num_heads=16,
                             feedforward_channels=5120)),
    }
    # yapf: enable
    OUT_TYPES = ('cls_token', 'featmap', 'avg_featmap', 'raw')
    ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')

    def __init__(self,
                 arch: Union[str, Dict[str, int]] = 'base',
                 img_size: IntPair = 224,
                 patch_size: IntPair = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 qkv_bias: bool = True,
                 norm_cfg: Optional[Dict[str, Any]] = None,
                 act_cfg: Optional[Dict[str, Any]] = None,
                 final_norm: bool = True,
                 out_type: str = 'cls_token',
                 with_cls_token: bool = True,
                 frozen_stages: int = -1,
                 interpolate_mode: str = 'bicubic',
                 interpolate_antialias: bool = False,
                 pre_norm: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = {
            k: int(v)
            for k, v in select_arch('VisionTransformer', arch, self.arch_zoo,
                                    self.ARCH_KEYS).items()
        }
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_layers = self.arch_settings['num_layers']
        self.img_size = _pair(img_size, 'img_size')
        self.patch_size = _pair(patch_size, 'patch_size')
        norm_cfg = dict(norm_cfg) if norm_cfg is not None else dict(type='LN', eps=1e-6)
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'VisionTransformer out_type must be one of {self.OUT_TYPES}, got '
                             f'{out_type!r}')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("VisionTransformer out_type='cls_token' needs with_cls_token=True")
        self.out_type = out_type
        self.with_cls_token = with_cls_token
        self.num_extra_tokens = 1 if with_cls_token else 0
        self.interpolate_mode = interpolate_mode
        self.interpolate_antialias = interpolate_antialias
        self.with_cp = with_cp

        self.patch_embed = ViTPatchEmbed(
            in_channels, self.embed_dims, self.patch_size, bias=not pre_norm)
        # the grid the (pre-training) position embedding is laid out on; inputs padded up
        self.patch_resolution = tuple(-(-s // p) for s, p in zip(self.img_size, self.patch_size))
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.cls_token = (
            nn.Parameter(torch.zeros(1, 1, self.embed_dims)) if with_cls_token else None)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_extra_tokens + num_patches, self.embed_dims))
        self._register_load_state_dict_pre_hook(self._resize_loaded_pos_embed)
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.pre_norm = _norm(norm_cfg, self.embed_dims) if pre_norm else nn.Identity()

        self.out_indices = self._out_indices(out_indices)
        # float64 spacing, as mmpretrain's np.linspace
        rates = drop_path_rates(drop_path_rate, self.num_layers, torch.float64)
        self.layers = ModuleList([
            ViTEncoderLayer(
                self.embed_dims,
                self.arch_settings['num_heads'],
                self.arch_settings['feedforward_channels'],
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=rates[i],
                qkv_bias=qkv_bias,
                act_cfg=act_cfg,
                norm_cfg=norm_cfg) for i in range(self.num_layers)
        ])
        self.final_norm = final_norm
        if final_norm:
            self.ln1 = _norm(norm_cfg, self.embed_dims)
        if out_type == 'avg_featmap':
            self.ln2 = _norm(norm_cfg, self.embed_dims)

        if not -1 <= frozen_stages <= self.num_layers:
            raise ValueError(f'VisionTransformer frozen_stages must be in [-1, {self.num_layers}]'
                             f', got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    def _out_indices(self, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        if isinstance(out_indices, int) and not isinstance(out_indices, bool):
            out_indices = [out_indices]
        # a dict or set would iterate in an arbitrary sense (keys): mmpretrain rejects them too
        if not isinstance(out_indices, Sequence) or isinstance(out_indices, str):
            raise TypeError(f'VisionTransformer out_indices must be an int or a sequence of '
                            f'ints, got {type(out_indices).__name__} {out_indices!r}')
        result = []
        for index in out_indices:
            if not isinstance(index, int) or isinstance(index, bool):
                raise TypeError(f'VisionTransformer out_indices entries must be ints, got '
                                f'{index!r}')
            if not -self.num_layers <= index < self.num_layers:
                raise ValueError(f'VisionTransformer out_indices entry {index} is out of range '
                                 f'for {self.num_layers} layers')
            result.append(index % self.num_layers)
        if len(set(result)) != len(result):
            raise ValueError(f'VisionTransformer out_indices {list(out_indices)} repeat a layer')
        return tuple(result)

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """Reference initialisation (timm / Google ViT), then ``init_cfg`` on top.

        Linear weights truncated-normal (std 0.02) with zero biases, LayerNorms ones/zeros, the
        position embedding truncated-normal (std 0.02), the class token normal (std 1e-6), the
        patch convolution PyTorch's default (fan-in uniform).  A non-pretrained ``init_cfg``
        (e.g. mmpretrain's ``Kaiming`` for ``Conv2d``) is applied after it; a ``Pretrained`` one
        loads the file instead (through mmengine, ``strict=False``, logging missing keys).
        """
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        if not any(isinstance(c, dict) and c.get('type') == 'Pretrained' for c in cfgs):
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            if self.cls_token is not None:
                nn.init.normal_(self.cls_token, std=1e-6)
        if self.init_cfg is not None:
            super().init_weights()

    def _resize_loaded_pos_embed(self, state_dict: Dict[str, torch.Tensor], prefix: str, *args: Any,
                                 **kwargs: Any) -> None:
        """Resample a checkpoint's position embedding trained at another size to ours."""
        name = prefix + 'pos_embed'
        if name not in state_dict:
            return
        loaded = state_dict[name]
        if loaded.shape == self.pos_embed.shape:
            return
        extra = self.num_extra_tokens
        if loaded.dim() != 3 or loaded.shape[-1] != self.embed_dims:
            return  # let load_state_dict report the size mismatch
        grid = loaded.shape[1] - extra
        if not self.with_cls_token and math.isqrt(loaded.shape[1] - 1) ** 2 == \
                loaded.shape[1] - 1:  # a class-token checkpoint loaded without one
            loaded, grid = loaded[:, 1:], loaded.shape[1] - 1
        side = math.isqrt(max(grid, 0))
        if side * side != grid:
            raise ValueError(f'{name}: cannot resample a checkpoint position embedding of shape '
                             f'{tuple(loaded.shape)} to {tuple(self.pos_embed.shape)}: its grid '
                             f'of {grid} tokens is not square')
        print_log(
            f'Resampling {name} from a {side}x{side} grid to {self.patch_resolution}',
            logger='current')
        state_dict[name] = resize_pos_embed(loaded, (side, side), self.patch_resolution, extra,
                                            self.interpolate_mode, self.interpolate_antialias)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen: List[nn.Module] = [self.patch_embed, self.drop_after_pos, self.pre_norm]
        frozen += list(self.layers[:self.frozen_stages])
        if self.frozen_stages == self.num_layers:
            frozen += [getattr(self, n) for n in ('ln1', 'ln2') if hasattr(self, n)]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False
        self.pos_embed.requires_grad = False
        if self.cls_token is not None:
            self.cls_token.requires_grad = False

    def train(self, mode: bool = True) -> 'VisionTransformer':
        super().train(mode)
        self._freeze_stages()  # frozen parts stay in eval mode (dropout/drop-path off)
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        batch = x.shape[0]
        x, hw = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1)
        x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, hw, self.num_extra_tokens,
                                 self.interpolate_mode, self.interpolate_antialias)
        x = self.pre_norm(self.drop_after_pos(x))
        outs = []
        for i, layer in enumerate(self.layers):
            if self.with_cp and self.training and x.requires_grad:
                x = cp.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
            if i == self.num_layers - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format(x, hw))
        return tuple(outs)

    def _format(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        patches = x[:, self.num_extra_tokens:]
        if self.out_type == 'featmap':
            return patches.reshape(x.shape[0], hw[0], hw[1], -1).permute(0, 3, 1, 2)
        return self.ln2(patches.mean(dim=1))  # avg_featmap

    # ------------------------------------------------------------------ layer-wise lr decay
    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """``(depth, num_depths)`` of a parameter for layer-wise lr decay.

        Depth 0: embeddings (patch, position, class token, pre-norm); ``i + 1``: layer ``i``;
        ``num_layers + 1``: everything after (final norms, and any head).
        """
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix):]
        if name in ('cls_token', 'pos_embed') or name.startswith(('patch_embed', 'pre_norm')):
            return 0, num_depths
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, num_depths
        return num_depths - 1, num_depths
