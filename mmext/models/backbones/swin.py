"""Swin Transformer backbone.

Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al., ICCV 2021,
https://arxiv.org/abs/2103.14030).  A 4x4 patch embedding turns the image into ``C`` channel
tokens at stride 4; four stages of Swin blocks (eq. 3, alternating W-MSA and SW-MSA) follow, with
patch merging (2x2 -> stride x2, channels x2) between stages, giving a feature pyramid at strides
4, 8, 16, 32 with ``C, 2C, 4C, 8C`` channels (Sec. 3.1, Fig. 3).  Every requested stage output is
layer-normed and returned as an NCHW map, ready for an FPN.

Variants (Sec. 3.3): Swin-T ``C=96, depths (2, 2, 6, 2)``, Swin-S ``C=96, (2, 2, 18, 2)``,
Swin-B ``C=128, (2, 2, 18, 2)``, Swin-L ``C=192, (2, 2, 18, 2)``; heads ``C / 32`` per stage
doubling each stage.

State-dict keys, outputs and ``frozen_stages`` follow mmpretrain's ``SwinTransformer`` (mmpretrain
1.2; mmdet 3.3's backbone has the same keys), so checkpoints of either load unchanged; official
and timm checkpoints go through ``tools/model_converters/swin_to_mmext.py``.
"""
import copy
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.registry import MODELS

from .arch_zoo import select_arch
from .drop_path import drop_path_rates
from .pos_embed import resize_pos_embed
from .swin_blocks import PatchMerging, SwinBlock, WindowMSA

# mmpretrain's ``stage_cfgs`` keys we implement, and what a block's keys become in ours.
_STAGE_KEYS = ('window_size', 'with_cp', 'pad_small_map', 'drop_paths', 'block_cfgs',
               'downsample_cfg')
_BLOCK_KEYS = ('window_size', 'shift', 'ffn_ratio', 'drop_path', 'pad_small_map', 'norm_cfg',
               'with_cp', 'attn_cfgs', 'ffn_cfgs')
_ATTN_KEYS = dict(
    qkv_bias='qkv_bias', qk_scale='qk_scale', attn_drop='attn_drop_rate', proj_drop='proj_drop')
_FFN_KEYS = dict(ffn_drop='ffn_drop', act_cfg='act_cfg')
_DOWNSAMPLE_KEYS = ('norm_cfg', )


@MODELS.register_module()
class SwinTransformer(BaseModule):
    """Swin Transformer backbone returning multi-scale NCHW features.

    Args:
        arch: A key of :attr:`arch_zoo` (``'tiny' | 'small' | 'base' | 'large'`` or
            ``t/s/b/l``), or a dict with exactly ``embed_dims``, ``depths``, ``num_heads``.
            Alternatively pass those three directly (mmdet style) and leave ``arch`` unset.
        img_size: Nominal input size: sets the grid of the absolute position embedding (any
            input size works).
        patch_size: Side of the patch embedding's conv (4 in the paper).
        in_channels: Image channels.
        window_size: Attention window side ``M`` (7 in the paper for 224 inputs).
        mlp_ratio: MLP hidden width over the block width.
        qkv_bias, qk_scale: Attention projection bias and logit-scale override.
        drop_rate: Dropout after the patch embedding, in the MLPs and after attention.
        attn_drop_rate: Dropout on attention weights.
        drop_path_rate: Stochastic depth of the last block; block ``k`` of ``K`` gets
            ``drop_path_rate * k / (K - 1)`` (linear rule of the paper).
        out_indices: Stages whose (normed) output is returned, in stage order.
        out_after_downsample: Return a stage's output after its patch merging (stride and
            channels of the next stage; the last stage has none) instead of before it
            (mmpretrain's option).
        use_abs_pos_embed: Add a learnt absolute position embedding ``absolute_pos_embed``
            ``[1, h*w, C]`` on the ``img_size / patch_size`` grid after the patch embedding,
            bicubically resampled to other input grids (mmpretrain's option; the paper's "abs.
            pos." ablation, Table 4).
        interpolate_mode: Resampling mode of the absolute position embedding, in the forward
            pass and when a checkpoint of another grid is loaded.
        frozen_stages: ``-1`` freezes nothing; ``i >= 0`` freezes the patch embedding (and the
            absolute position embedding) and stages ``0..i`` (each with its patch merging) and
            their output norms, and keeps them in eval mode (mmpretrain's convention; mmdet's
            ``frozen_stages=i+1`` means the same).
        norm_eval: Keep BatchNorm layers in eval mode while training (no effect with LayerNorm).
        pad_small_map: Pad maps narrower than a window and shift one-window maps (detection and
            segmentation); False errors on the former and skips the shift on the latter
            (classification), as mmpretrain does.
        with_cp: Gradient checkpointing per block.
        norm_cfg: Config of every norm layer (mmcv ``build_norm_layer``), e.g. ``dict(type='LN')``
            or a fused LayerNorm registered in the ``mmext`` scope.
        stage_cfgs: Per-stage overrides with mmpretrain's keys, one dict for every stage or a
            sequence of one per stage: ``window_size``, ``with_cp``, ``pad_small_map``,
            ``drop_paths`` (float or one per block), ``downsample_cfg`` (``norm_cfg``) and
            ``block_cfgs`` (dict, or one per block: ``window_size``, ``shift``, ``ffn_ratio``,
            ``drop_path``, ``pad_small_map``, ``norm_cfg``, ``with_cp``, ``attn_cfgs``
            (``qkv_bias``, ``qk_scale``, ``attn_drop``, ``proj_drop``) and ``ffn_cfgs``
            (``ffn_drop``, ``act_cfg``)).  Other keys raise ``ValueError``.
        init_cfg: mmengine init config, e.g.
            ``dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')``.  Without it the
            weights are initialised as in the official code: truncated normal (std 0.02) for
            linear weights, relative position bias tables and the absolute position embedding,
            zero biases, unit LayerNorms.
    """

    arch_zoo: Dict[str, Dict[str, Any]] = {
        **dict.fromkeys(('t', 'tiny'),
                        dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))),
        **dict.fromkeys(('s', 'small'),
                        dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))),
        **dict.fromkeys(('b', 'base'),
                        dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))),
        **dict.fromkeys(('l', 'large'),
                        dict(embed_dims=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))),
    }
    ARCH_KEYS = ('embed_dims', 'depths', 'num_heads')
    num_extra_tokens = 0  # no class token: the absolute embedding is all grid

    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 img_size: Union[int, tuple] = 224,
                 patch_size: int = 4,
                 in_channels: int = 3,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (3, ),
                 out_after_downsample: bool = False,
                 use_abs_pos_embed: bool = False,
                 interpolate_mode: str = 'bicubic',
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 pad_small_map: bool = False,
                 with_cp: bool = False,
                 norm_cfg: dict = dict(type='LN'),
                 stage_cfgs: Union[dict, Sequence[dict], None] = None,
                 embed_dims: Optional[int] = None,
                 depths: Optional[Sequence[int]] = None,
                 num_heads: Optional[Sequence[int]] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg)
        self.arch_settings = self._resolve_arch(arch, embed_dims, depths, num_heads)
        self.embed_dims = self.arch_settings['embed_dims']
        self.depths = self.arch_settings['depths']
        self.num_heads = self.arch_settings['num_heads']
        num_stages = len(self.depths)
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(i + num_stages if i < 0 else i for i in out_indices)
        if not out_indices or any(not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f'out_indices {out_indices} must name stages in [0, {num_stages})')
        if not -1 <= frozen_stages < num_stages:
            raise ValueError(f'frozen_stages={frozen_stages} must lie in [-1, {num_stages})')
        if window_size < 1:
            raise ValueError(f'window_size={window_size} must be positive')
        stage_cfgs = self._stage_cfgs(stage_cfgs, num_stages)
        self.out_indices = tuple(sorted(set(out_indices)))
        self.out_after_downsample = out_after_downsample
        self.use_abs_pos_embed = use_abs_pos_embed
        self.interpolate_mode = interpolate_mode
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.window_size = window_size

        self.patch_embed = PatchEmbed(
            in_channels=in_channels,
            embed_dims=self.embed_dims,
            conv_type='Conv2d',
            kernel_size=patch_size,
            stride=patch_size,
            input_size=img_size,
            norm_cfg=norm_cfg)
        self.patch_resolution = tuple(self.patch_embed.init_out_size)
        if use_abs_pos_embed:
            self.absolute_pos_embed = nn.Parameter(
                torch.zeros(1, self.patch_resolution[0] * self.patch_resolution[1],
                            self.embed_dims))
        self.drop_after_pos = nn.Dropout(drop_rate)  # name kept from mmpretrain

        rates = drop_path_rates(drop_path_rate, sum(self.depths))  # float32, as the references
        self.stages = ModuleList()
        self.num_features: List[int] = []  # channels of each stage's output
        dims = self.embed_dims
        for i, (depth, heads, cfg) in enumerate(zip(self.depths, self.num_heads, stage_cfgs)):
            stage = SwinStage(
                dims,
                depth,
                heads,
                window_size=cfg.get('window_size', window_size),
                mlp_ratio=mlp_ratio,
                drop_paths=cfg.get('drop_paths', rates[:depth]),
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                pad_small_map=cfg.get('pad_small_map', pad_small_map),
                norm_cfg=norm_cfg,
                with_cp=cfg.get('with_cp', with_cp),
                downsample=i < num_stages - 1,
                block_cfgs=cfg.get('block_cfgs'),
                downsample_cfg=cfg.get('downsample_cfg'))
            rates = rates[depth:]
            self.stages.append(stage)
            next_dims = stage.downsample.out_channels if stage.downsample is not None else dims
            self.num_features.append(next_dims if out_after_downsample else dims)
            dims = next_dims
        for i in self.out_indices:
            self.add_module(f'norm{i}', build_norm_layer(norm_cfg, self.num_features[i])[1])
        self._freeze_stages()

    @classmethod
    def _resolve_arch(cls, arch: Union[str, dict, None], embed_dims: Optional[int],
                      depths: Optional[Sequence[int]],
                      num_heads: Optional[Sequence[int]]) -> Dict[str, Any]:
        """``arch_settings`` from an arch name, an arch dict or mmdet's explicit values."""
        explicit = dict(embed_dims=embed_dims, depths=depths, num_heads=num_heads)
        given = {k for k, v in explicit.items() if v is not None}
        if given and arch is not None:
            raise ValueError(f'give either arch={arch!r} or {sorted(given)}, not both')
        if given and given != set(explicit):
            raise ValueError(f'explicit settings need embed_dims, depths and num_heads; '
                             f'missing {sorted(set(explicit) - given)}')
        arch = explicit if given else ('tiny' if arch is None else arch)
        settings = select_arch('SwinTransformer', arch, cls.arch_zoo, cls.ARCH_KEYS, exact=True)
        dims, depths = int(settings['embed_dims']), list(settings['depths'])
        heads = list(settings['num_heads'])
        if len(depths) != len(heads) or not depths:
            raise ValueError(f'depths {depths} and num_heads {heads} must have the same, non-zero '
                             'length (one entry per stage)')
        for i, h in enumerate(heads):
            if (dims * 2**i) % h:
                raise ValueError(f'stage {i} has {dims * 2 ** i} channels, not divisible by '
                                 f'num_heads[{i}]={h}')
        return dict(embed_dims=dims, depths=depths, num_heads=heads)

    @staticmethod
    def _stage_cfgs(stage_cfgs: Union[dict, Sequence[dict], None],
                    num_stages: int) -> List[Dict[str, Any]]:
        """One checked override dict per stage (mmpretrain: a dict applies to every stage)."""
        if stage_cfgs is None or isinstance(stage_cfgs, dict):
            stage_cfgs = [copy.deepcopy(dict(stage_cfgs or {})) for _ in range(num_stages)]
        stage_cfgs = [dict(c) for c in stage_cfgs]
        if len(stage_cfgs) != num_stages:
            raise ValueError(f'stage_cfgs has {len(stage_cfgs)} entries for {num_stages} stages')
        for i, cfg in enumerate(stage_cfgs):
            unknown = sorted(set(cfg) - set(_STAGE_KEYS))
            if unknown:
                raise ValueError(f'stage_cfgs[{i}]: unsupported key(s) {unknown} (supported: '
                                 f'{list(_STAGE_KEYS)}; depth, num_heads and embed_dims come '
                                 'from arch)')
        return stage_cfgs

    @property
    def out_channels(self) -> List[int]:
        """Channels of the returned maps, in stage order (an FPN's ``in_channels``)."""
        return [self.num_features[i] for i in self.out_indices]

    def init_weights(self) -> None:
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        if any(isinstance(c, dict) and c.get('type') == 'Pretrained' for c in cfgs):
            super().init_weights()  # the checkpoint replaces everything
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                nn.init.ones_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, WindowMSA):
                trunc_normal_(m.relative_position_bias_table, std=.02)
        if self.use_abs_pos_embed:
            trunc_normal_(self.absolute_pos_embed, std=.02)
        super().init_weights()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.patch_embed.projection.in_channels:
            raise ValueError(f'SwinTransformer expects [B, '
                             f'{self.patch_embed.projection.in_channels}, H, W] images, got '
                             f'{tuple(x.shape)}')
        x, hw = self.patch_embed(x)  # pads H, W up to multiples of patch_size
        if self.use_abs_pos_embed:
            x = x + resize_pos_embed(self.absolute_pos_embed, self.patch_resolution, hw,
                                     self.num_extra_tokens, self.interpolate_mode)
        x = self.drop_after_pos(x)
        outs = []  # in stage order, as mmpretrain and mmdet return them
        for i, stage in enumerate(self.stages):
            x = stage(x, hw)
            if self.out_after_downsample and stage.downsample is not None:
                x, hw = stage.downsample(x, hw)
            if i in self.out_indices:
                outs.append(self._to_map(getattr(self, f'norm{i}')(x), hw, i))
            if not self.out_after_downsample and stage.downsample is not None:
                x, hw = stage.downsample(x, hw)
        return tuple(outs)

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """``(depth, num_layers)`` of a parameter for layer-wise learning-rate decay.

        Depth 0 is the patch embedding, block ``j`` of stage ``i`` is ``sum(depths[:i]) + j + 1``,
        a stage's patch merging shares the depth of its last block, and everything else (output
        norms, neck, head) is the last depth, ``sum(depths) + 1``.  Same numbering as mmpretrain,
        so its ``LearningRateDecayOptimWrapperConstructor`` works with this backbone.
        """
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'patch_embed':
            return 0, num_layers
        if parts[0] == 'stages' and len(parts) > 3:
            stage = int(parts[1])
            before = sum(self.depths[:stage])
            if parts[2] == 'blocks':
                return before + int(parts[3]) + 1, num_layers
            return before + self.depths[stage], num_layers  # downsample
        return num_layers - 1, num_layers

    def _to_map(self, tokens: Tensor, hw: Tuple[int, int], stage: int) -> Tensor:
        return tokens.view(-1, *hw, self.num_features[stage]).permute(0, 3, 1, 2).contiguous()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        # Old mmpretrain/mmdet checkpoints stored the shift masks as buffers; they are rebuilt.
        for key in [k for k in state_dict if k.startswith(prefix) and k.endswith('attn_mask')]:
            del state_dict[key]
        self._resize_bias_tables(state_dict, prefix)
        self._resize_abs_pos_embed(state_dict, prefix)
        # mmcls < 0.17 named the last stage's output norm 'norm' (our modules never use it).
        last = len(self.stages) - 1
        if hasattr(self, f'norm{last}'):
            for key in [k for k in state_dict if k.startswith(prefix + 'norm.')]:
                state_dict[f'{prefix}norm{last}.{key[len(prefix) + 5:]}'] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def _resize_bias_tables(self, state_dict: dict, prefix: str) -> None:
        """Fit bias tables of another window size (e.g. 7 -> 12 for 384-px fine-tuning) by
        bicubic interpolation over the ``(2M-1) x (2M-1)`` offset grid, as the official
        fine-tuning code and timm do; the index buffer is our own."""
        for name, m in self.named_modules():
            if not isinstance(m, WindowMSA):
                continue
            key = f'{prefix}{name}.relative_position_bias_table'
            table = state_dict.get(key)
            ours = m.relative_position_bias_table
            if table is None or table.shape == ours.shape or table.shape[1] != ours.shape[1]:
                continue  # a head-count mismatch is left for load_state_dict to report
            src, dst = int(round(table.shape[0]**0.5)), 2 * m.window_size[0] - 1
            if src * src != table.shape[0]:
                raise ValueError(f'{key}: {table.shape[0]} rows is not a square (2M-1)^2 table')
            grid = table.T.reshape(1, -1, src, src).float()
            grid = F.interpolate(grid, size=(dst, dst), mode='bicubic', align_corners=False)
            state_dict[key] = grid.reshape(-1, dst * dst).T.to(table.dtype).contiguous()
            state_dict[f'{prefix}{name}.relative_position_index'] = \
                m.relative_position_index.clone()
            print_log(
                f'resized {key} from {tuple(table.shape)} to {tuple(ours.shape)}', logger='current')

    def _resize_abs_pos_embed(self, state_dict: dict, prefix: str) -> None:
        """Fit an absolute position embedding of another (square) grid to ours, with
        ``interpolate_mode``, as mmpretrain does."""
        key = f'{prefix}absolute_pos_embed'
        loaded = state_dict.get(key)
        if not self.use_abs_pos_embed or loaded is None:
            return
        ours = self.absolute_pos_embed
        if loaded.shape == ours.shape or loaded.dim() != 3 or loaded.shape[-1] != ours.shape[-1]:
            return  # equal, or a mismatch load_state_dict reports
        side = math.isqrt(loaded.shape[1] - self.num_extra_tokens)
        if side * side != loaded.shape[1] - self.num_extra_tokens:
            raise ValueError(f'{key}: cannot resample a {tuple(loaded.shape)} embedding to '
                             f'{tuple(ours.shape)}: its {loaded.shape[1]} tokens are no square '
                             'grid')
        state_dict[key] = resize_pos_embed(loaded, (side, side), self.patch_resolution,
                                           self.num_extra_tokens, self.interpolate_mode)
        print_log(
            f'resized {key} from {tuple(loaded.shape)} to {tuple(ours.shape)}', logger='current')

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen: List[nn.Module] = [self.patch_embed, self.drop_after_pos]
        frozen += [self.stages[i] for i in range(self.frozen_stages + 1)]
        frozen += [getattr(self, f'norm{i}') for i in self.out_indices if i <= self.frozen_stages]
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False
        if self.use_abs_pos_embed:  # frozen with the patch embedding it is added to, as mmdet
            self.absolute_pos_embed.requires_grad = False

    def train(self, mode: bool = True) -> 'SwinTransformer':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


class SwinStage(BaseModule):
    """``depth`` Swin blocks (W-MSA, SW-MSA, W-MSA, ...) and, except in the last stage, the
    patch merging that feeds the next stage.  Key names: ``blocks.{j}``, ``downsample``.

    ``block_cfgs`` (one dict for every block, or one per block) and ``downsample_cfg`` take
    mmpretrain's keys (see :class:`SwinTransformer`'s ``stage_cfgs``); ``drop_paths`` is one
    rate per block or one for all.
    """

    def __init__(self,
                 embed_dims: int,
                 depth: int,
                 num_heads: int,
                 window_size: int,
                 mlp_ratio: float,
                 drop_paths: Union[float, Sequence[float]],
                 downsample: bool,
                 norm_cfg: dict,
                 with_cp: bool,
                 block_cfgs: Union[dict, Sequence[dict], None] = None,
                 downsample_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **block_kwargs) -> None:
        super().__init__(init_cfg)
        if isinstance(drop_paths, (int, float)):
            drop_paths = [float(drop_paths)] * depth
        if block_cfgs is None or isinstance(block_cfgs, dict):
            block_cfgs = [dict(block_cfgs or {})] * depth
        if len(drop_paths) != depth or len(block_cfgs) != depth:
            raise ValueError(f'a stage of {depth} blocks got {len(drop_paths)} drop_paths and '
                             f'{len(block_cfgs)} block_cfgs')
        self.blocks = ModuleList()
        for j in range(depth):
            kwargs = dict(
                block_kwargs,
                embed_dims=embed_dims,
                num_heads=num_heads,
                window_size=window_size,
                shift=j % 2 == 1,
                mlp_ratio=mlp_ratio,
                drop_path=drop_paths[j],
                norm_cfg=norm_cfg,
                with_cp=with_cp)
            kwargs.update(_block_overrides(block_cfgs[j]))
            self.blocks.append(SwinBlock(**kwargs))
        downsample_cfg = dict(downsample_cfg or {})
        unknown = sorted(set(downsample_cfg) - set(_DOWNSAMPLE_KEYS))
        if unknown:
            raise ValueError(f'downsample_cfg: unsupported key(s) {unknown} (supported: '
                             f'{list(_DOWNSAMPLE_KEYS)})')
        self.downsample = (
            PatchMerging(
                embed_dims, 2 * embed_dims, norm_cfg=downsample_cfg.get('norm_cfg', norm_cfg))
            if downsample else None)

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        """Run the blocks; the caller takes the stage output and applies ``downsample``."""
        for block in self.blocks:
            x = block(x, hw)
        return x


def _block_overrides(cfg: dict) -> Dict[str, Any]:
    """mmpretrain's ``block_cfgs`` entry -> :class:`SwinBlock` keyword arguments."""
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - set(_BLOCK_KEYS))
    if unknown:
        raise ValueError(f'block_cfgs: unsupported key(s) {unknown} (supported: '
                         f'{list(_BLOCK_KEYS)})')
    out = {
        ('mlp_ratio' if k == 'ffn_ratio' else k): v
        for k, v in cfg.items() if k not in ('attn_cfgs', 'ffn_cfgs')
    }
    for group, names in (('attn_cfgs', _ATTN_KEYS), ('ffn_cfgs', _FFN_KEYS)):
        sub = dict(cfg.get(group) or {})
        unknown = sorted(set(sub) - set(names))
        if unknown:
            raise ValueError(f'block_cfgs.{group}: unsupported key(s) {unknown} (supported: '
                             f'{list(names)})')
        out.update({names[k]: v for k, v in sub.items()})
    return out
