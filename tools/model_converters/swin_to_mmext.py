"""Convert Swin Transformer checkpoints between the official/timm layouts and mmext's.

mmext's ``SwinTransformer`` uses mmpretrain's (and mmdet's) key layout, so mmpretrain/mmdet
checkpoints need no conversion.  Two other layouts exist:

* ``official`` (microsoft/Swin-Transformer, and timm before 0.9): ``layers.{i}`` own the patch
  merging that *ends* stage ``i``; ``head.weight``; ``relative_position_index`` and ``attn_mask``
  are stored as buffers.
* ``timm`` (timm >= 0.9): the merging *starts* stage ``i + 1`` (``layers.{i+1}.downsample``),
  ``head.fc.weight``, no buffers.

Both concatenate a 2x2 neighbourhood as ``[x(0,0), x(1,0), x(0,1), x(1,1)]`` (``(2*dw + dh) * C
+ c``), whereas mmext/mmpretrain order the merged vector channel-major (``c * 4 + dh * 2 + dw``),
so the merging's LayerNorm and reduction are permuted.

Usage::

    python tools/model_converters/swin_to_mmext.py swin_tiny_patch4_window7_224.pth out.pth
    python tools/model_converters/swin_to_mmext.py model.safetensors out.pth --layout timm

The output holds ``state_dict`` with mmpretrain ``ImageClassifier`` keys (``backbone.*`` and, if
the source has a classifier, ``head.fc.*``); load it into a backbone with
``init_cfg=dict(type='Pretrained', checkpoint='out.pth', prefix='backbone.')``.
"""
import argparse
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch
from torch import Tensor

from mmext.utils.progress import file_stage

LAYOUTS = ('official', 'timm')

# Per-block renames, source (official/timm) suffix -> mmext suffix.
BLOCK_KEYS = {
    'norm1': 'norm1',
    'attn.relative_position_bias_table': 'attn.w_msa.relative_position_bias_table',
    'attn.qkv': 'attn.w_msa.qkv',
    'attn.proj': 'attn.w_msa.proj',
    'norm2': 'norm2',
    'mlp.fc1': 'ffn.layers.0.0',
    'mlp.fc2': 'ffn.layers.1',
}


def relative_position_index(table_rows: int) -> Tensor:
    """The ``[M*M, M*M]`` index buffer of a square window with a ``(2M-1)^2``-row bias table."""
    side = int(round(table_rows**0.5))
    if side * side != table_rows or side % 2 == 0:
        raise ValueError(f'a relative position bias table with {table_rows} rows is not '
                         '(2M-1)^2 for a square window M')
    m = (side + 1) // 2
    hh, ww = torch.meshgrid(torch.arange(m), torch.arange(m), indexing='ij')
    h, w = hh.flatten(), ww.flatten()
    return (h[:, None] - h[None, :] + m - 1) * (2 * m - 1) + (w[:, None] - w[None, :] + m - 1)


def _reverse_last3(t: Tensor, sizes: tuple) -> Tensor:
    lead = t.shape[:-1]
    n = len(lead)
    perm = list(range(n)) + [n + 2, n + 1, n]
    return t.reshape(*lead, *sizes).permute(*perm).reshape(*lead, -1)


def merge_to_mmext(t: Tensor) -> Tensor:
    """Reorder the last dim (4C) of a merging norm/reduction: (dw, dh, C) -> (C, dh, dw)."""
    return _reverse_last3(t, (2, 2, t.shape[-1] // 4))


def merge_from_mmext(t: Tensor) -> Tensor:
    """Inverse of :func:`merge_to_mmext`: (C, dh, dw) -> (dw, dh, C)."""
    return _reverse_last3(t, (t.shape[-1] // 4, 2, 2))


def unwrap(ckpt: dict) -> Dict[str, Tensor]:
    """The tensor dict inside a checkpoint (``model``/``state_dict`` wrappers are common)."""
    for key in ('model', 'state_dict', 'model_ema'):
        if isinstance(ckpt, dict) and key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key]
    return ckpt


def detect_layout(sd: Dict[str, Tensor]) -> str:
    if any(k.startswith('stages.') or k.startswith('backbone.stages.') for k in sd):
        raise ValueError('this checkpoint already has mmext/mmpretrain keys (stages.*): load it '
                         'directly, no conversion is needed')
    if not any(k.startswith('layers.') for k in sd):
        raise ValueError('no layers.* keys: this is not an official or timm Swin checkpoint '
                         f'(first keys: {list(sd)[:5]})')
    # Official checkpoints merge at the end of stage 0; timm >= 0.9 at the start of stage 1.
    return 'official' if any(k.startswith('layers.0.downsample.') for k in sd) else 'timm'


def to_mmext(sd: Dict[str, Tensor],
             layout: Optional[str] = None,
             prefix: str = 'backbone.') -> 'OrderedDict[str, Tensor]':
    """Official/timm Swin state dict -> mmext (mmpretrain ImageClassifier) state dict."""
    layout = layout or detect_layout(sd)
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    num_stages = 1 + max(
        int(m.group(1)) for k in sd for m in [re.match(r'layers\.(\d+)\.', k)] if m)
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    for key, value in sd.items():
        if key.endswith('relative_position_index') or key.endswith('attn_mask'):
            continue  # buffers: rebuilt below / at run time
        if key.startswith('patch_embed.proj.'):
            out[prefix + key.replace('patch_embed.proj.', 'patch_embed.projection.')] = value
        elif key.startswith('patch_embed.norm.'):
            out[prefix + key] = value
        elif key.startswith('norm.'):
            out[f'{prefix}norm{num_stages - 1}.{key[5:]}'] = value
        elif key.startswith('head.'):
            if value.dim() == 0 or key.startswith('head.global_pool'):
                continue
            out['head.fc.' + key.split('.')[-1]] = value
        elif (m := re.match(r'layers\.(\d+)\.downsample\.(norm|reduction)\.(\w+)$', key)):
            stage = int(m.group(1)) - (layout == 'timm')
            if stage < 0:
                raise ValueError(f'{key}: a timm checkpoint has no merging before stage 0; is it '
                                 'an official one? pass --layout official')
            out[f'{prefix}stages.{stage}.downsample.{m.group(2)}.{m.group(3)}'] = \
                merge_to_mmext(value)
        elif (m := re.match(
                r'layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias|'
                r'relative_position_bias_table)$', key)):
            stage, block, name, param = m.groups()
            if param == 'relative_position_bias_table':
                new = (f'{prefix}stages.{stage}.blocks.{block}.'
                       f'{BLOCK_KEYS[name + ".relative_position_bias_table"]}')
                out[new] = value
                out[new.replace('bias_table', 'index')] = relative_position_index(value.shape[0])
            elif name in BLOCK_KEYS:
                out[f'{prefix}stages.{stage}.blocks.{block}.{BLOCK_KEYS[name]}.{param}'] = value
            else:
                raise KeyError(f'unexpected Swin block key {key!r}')
        else:
            raise KeyError(f'unexpected key {key!r} in a {layout} Swin checkpoint')
    return out


def from_mmext(sd: Dict[str, Tensor],
               layout: str = 'timm',
               prefix: str = 'backbone.') -> 'OrderedDict[str, Tensor]':
    """mmext state dict (with ``prefix``) -> official or timm layout (no ``attn_mask``)."""
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    inverse = {v: k for k, v in BLOCK_KEYS.items()}
    last = max(
        int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r'stages\.(\d+)\.', k)]
        if m)
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    for key, value in sd.items():
        if key.startswith('head.fc.'):
            out[('head.fc.' if layout == 'timm' else 'head.') + key[8:]] = value
            continue
        if not key.startswith(prefix):
            raise KeyError(f'{key!r} is neither under {prefix!r} nor a head.fc key')
        k = key[len(prefix):]
        if k.startswith('patch_embed.projection.'):
            out[k.replace('projection', 'proj')] = value
        elif k.startswith('patch_embed.norm.'):
            out[k] = value
        elif (m := re.match(r'norm(\d+)\.(\w+)$', k)):
            if int(m.group(1)) != last:
                continue  # official/timm have a final norm only
            out[f'norm.{m.group(2)}'] = value
        elif (m := re.match(r'stages\.(\d+)\.downsample\.(norm|reduction)\.(\w+)$', k)):
            stage = int(m.group(1)) + (layout == 'timm')
            out[f'layers.{stage}.downsample.{m.group(2)}.{m.group(3)}'] = merge_from_mmext(value)
        elif (m := re.match(r'stages\.(\d+)\.blocks\.(\d+)\.(.+)$', k)):
            stage, block, rest = m.groups()
            if rest.endswith('relative_position_index'):
                if layout == 'official':
                    out[f'layers.{stage}.blocks.{block}.attn.relative_position_index'] = value
                continue
            name, param = rest.rsplit('.', 1)
            if param == 'relative_position_bias_table':
                name, param = rest, None
            src = inverse[name]
            out[f'layers.{stage}.blocks.{block}.{src}' + (f'.{param}' if param else '')] = value
        else:
            raise KeyError(f'unexpected mmext key {key!r}')
    return out


def load_any(path: str) -> Dict[str, Tensor]:
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    return unwrap(torch.load(path, map_location='cpu', weights_only=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official .pth, timm .pth/.bin/.safetensors')
    parser.add_argument('dst', help='output .pth for mmext')
    parser.add_argument('--layout', choices=('auto', ) + LAYOUTS, default='auto')
    parser.add_argument(
        '--backbone-only', action='store_true', help='drop the classifier and the backbone. prefix')
    args = parser.parse_args()
    with file_stage('loading', args.src):
        sd = load_any(args.src)
    out = to_mmext(
        sd,
        None if args.layout == 'auto' else args.layout,
        prefix='' if args.backbone_only else 'backbone.')
    if args.backbone_only:
        out = OrderedDict((k, v) for k, v in out.items() if not k.startswith('head.'))
    with file_stage('saving', args.dst):
        torch.save(dict(state_dict=out, meta=dict(converted_from=args.src)), args.dst)
    print(f'{len(sd)} keys ({args.layout}) -> {len(out)} keys in {args.dst}')


if __name__ == '__main__':
    main()
