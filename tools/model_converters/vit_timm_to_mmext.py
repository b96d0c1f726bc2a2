"""Convert timm ``VisionTransformer`` weights to mmext's (= mmpretrain's) key layout and back.

    python tools/model_converters/vit_timm_to_mmext.py timm_vit.pth mmext_vit.pth
    python tools/model_converters/vit_timm_to_mmext.py timm_vit.pth out.pth --classifier
    python tools/model_converters/vit_timm_to_mmext.py mmext.pth timm.pth --reverse

The input is a timm state dict (``model.state_dict()`` saved with ``torch.save``, or a
``.safetensors`` file); a dict holding it under ``state_dict``/``model`` also works.  The output
is ``{'state_dict': ...}`` with backbone keys (``patch_embed.projection.weight``, ...), loadable
by ``mmext.VisionTransformer(init_cfg=dict(type='Pretrained', checkpoint=OUT))``; with
``--classifier`` keys carry the ``backbone.`` prefix and timm's ``head`` becomes mmpretrain's
``LinearClsHead`` (``head.fc.*``), so ``load_from=OUT`` restores a whole ``ImageClassifier``.

Key map (timm -> mmext):

==============================  =================================
``patch_embed.proj``            ``patch_embed.projection``
``cls_token``, ``pos_embed``    unchanged
``norm_pre``                    ``pre_norm``
``blocks.i.norm1``              ``layers.i.ln1``
``blocks.i.attn.qkv/proj``      ``layers.i.attn.qkv/proj``
``blocks.i.norm2``              ``layers.i.ln2``
``blocks.i.mlp.fc1``            ``layers.i.ffn.layers.0.0``
``blocks.i.mlp.fc2``            ``layers.i.ffn.layers.1``
``norm``                        ``ln1`` (final norm)
``fc_norm``                     ``ln2`` (norm of ``out_type='avg_featmap'``)
``head``                        ``head.fc`` (``--classifier``) or dropped
==============================  =================================

Tensors are copied unchanged (both use ``nn.Linear``/``nn.Conv2d`` layouts).  timm variants with
parts mmext's ViT lacks (layer scale ``ls1/ls2``, q/k norms, register tokens, attention pooling,
position embeddings without a class-token slot) are refused with the offending key.
"""
import argparse
import re
from typing import Dict, List, Tuple

import torch

from mmext.utils.progress import file_stage

# (timm regex, mmext replacement); applied to the whole key, first match wins.
_TIMM_TO_MMEXT: List[Tuple[str, str]] = [
    (r'^patch_embed\.proj\.(weight|bias)$', r'patch_embed.projection.\1'),
    (r'^(cls_token|pos_embed)$', r'\1'),
    (r'^norm_pre\.(weight|bias)$', r'pre_norm.\1'),
    (r'^blocks\.(\d+)\.norm1\.(weight|bias)$', r'layers.\1.ln1.\2'),
    (r'^blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)$', r'layers.\1.attn.\2.\3'),
    (r'^blocks\.(\d+)\.norm2\.(weight|bias)$', r'layers.\1.ln2.\2'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.(weight|bias)$', r'layers.\1.ffn.layers.0.0.\2'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.(weight|bias)$', r'layers.\1.ffn.layers.1.\2'),
    (r'^norm\.(weight|bias)$', r'ln1.\1'),
    (r'^fc_norm\.(weight|bias)$', r'ln2.\1'),
]
_MMEXT_TO_TIMM: List[Tuple[str, str]] = [
    (r'^patch_embed\.projection\.(weight|bias)$', r'patch_embed.proj.\1'),
    (r'^(cls_token|pos_embed)$', r'\1'),
    (r'^pre_norm\.(weight|bias)$', r'norm_pre.\1'),
    (r'^layers\.(\d+)\.ln1\.(weight|bias)$', r'blocks.\1.norm1.\2'),
    (r'^layers\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)$', r'blocks.\1.attn.\2.\3'),
    (r'^layers\.(\d+)\.ln2\.(weight|bias)$', r'blocks.\1.norm2.\2'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)$', r'blocks.\1.mlp.fc1.\2'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.(weight|bias)$', r'blocks.\1.mlp.fc2.\2'),
    (r'^ln1\.(weight|bias)$', r'norm.\1'),
    (r'^ln2\.(weight|bias)$', r'fc_norm.\1'),
]


def _rename(key: str, table: List[Tuple[str, str]]) -> str:
    for pattern, repl in table:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return ''


def _unwrap(checkpoint: Dict) -> Dict[str, torch.Tensor]:
    for key in ('state_dict', 'model', 'state_dict_ema'):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def convert_timm_to_mmext(state_dict: Dict[str, torch.Tensor],
                          classifier: bool = False) -> Dict[str, torch.Tensor]:
    """A timm ViT state dict in mmext/mmpretrain keys (see the module docstring)."""
    state_dict = _unwrap(state_dict)
    out: Dict[str, torch.Tensor] = {}
    prefix = 'backbone.' if classifier else ''
    for key, value in state_dict.items():
        if key.startswith('head.') and key.count('.') == 1:  # the classifier Linear
            if classifier:
                out['head.fc.' + key.split('.', 1)[1]] = value
            continue
        new = _rename(key, _TIMM_TO_MMEXT)
        if not new:
            raise KeyError(f'timm key {key!r} has no mmext VisionTransformer counterpart '
                           '(layer scale, q/k norm, register tokens and attention pooling are '
                           'not supported)')
        out[prefix + new] = value
    pos, cls = state_dict.get('pos_embed'), state_dict.get('cls_token')
    if pos is not None and cls is not None:
        grid = pos.shape[1]
        if int(grid**0.5)**2 == grid:  # no class-token slot (timm no_embed_class=True)
            raise ValueError(f'timm pos_embed {tuple(pos.shape)} has no class-token position '
                             '(no_embed_class=True); mmext adds the embedding after the class '
                             'token is prepended and cannot represent this model')
    return out


def convert_mmext_to_timm(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The inverse of :func:`convert_timm_to_mmext` (backbone or ``backbone.``-prefixed keys)."""
    state_dict = _unwrap(state_dict)
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith('head.fc.'):
            out['head.' + key[len('head.fc.'):]] = value
            continue
        name = key[len('backbone.'):] if key.startswith('backbone.') else key
        new = _rename(name, _MMEXT_TO_TIMM)
        if not new:
            raise KeyError(f'mmext key {key!r} has no timm VisionTransformer counterpart')
        out[new] = value
    return out


def _load(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location='cpu', weights_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='timm checkpoint (.pth/.bin/.safetensors)')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--classifier',
        action='store_true',
        help='keep the head: backbone.* + head.fc.* (mmpretrain ImageClassifier)')
    parser.add_argument('--reverse', action='store_true', help='mmext -> timm instead')
    args = parser.parse_args()
    with file_stage('loading', args.src):
        state_dict = _load(args.src)
    if args.reverse:
        out = convert_mmext_to_timm(state_dict)
    else:
        converted = convert_timm_to_mmext(state_dict, classifier=args.classifier)
        out = dict(state_dict=converted, meta=dict(source='timm', file=args.src))
    with file_stage('saving', args.dst):
        torch.save(out, args.dst)
    print(f'wrote {args.dst}')


if __name__ == '__main__':
    main()
