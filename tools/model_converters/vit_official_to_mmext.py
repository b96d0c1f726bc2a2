"""Convert the official (Google Research ``vision_transformer``, JAX/Flax) ``.npz`` ViT
checkpoints to mmext's (= mmpretrain's) key layout, and back.

    python tools/model_converters/vit_official_to_mmext.py ViT-B_16.npz vit-b16_mmext.pth
    python tools/model_converters/vit_official_to_mmext.py ViT-B_16.npz out.pth --classifier

Both layouts of the ``.npz`` are read: the original one (``Transformer/encoderblock_{i}/
MultiHeadDotProductAttention_1``, ``LayerNorm_2``, ``MlpBlock_3``, position embedding under
``Transformer/posembed_input``) and big_vision's (``params/`` prefix, ``..._0``/``LayerNorm_1``/
``MlpBlock_0``, top-level ``pos_embedding``), with or without an ``opt/target/`` prefix.
Per-layer scanned checkpoints (one stacked ``encoderblock``) are refused.

Layout changes (Flax stores ``x @ kernel``, PyTorch ``x @ weight.T``):

* ``embedding/kernel`` ``(p, p, C_in, D)`` -> ``patch_embed.projection.weight`` ``(D, C_in, p, p)``;
* ``query/key/value/kernel`` ``(D, heads, head_dims)`` -> rows of ``attn.qkv.weight`` ``(3D, D)``,
  their biases ``(heads, head_dims)`` flattened and concatenated;
* ``out/kernel`` ``(heads, head_dims, D)`` -> ``attn.proj.weight`` ``(D, D)``;
* ``Dense_0/1/kernel`` ``(in, out)`` -> ``ffn.layers.0.0/1.weight`` ``(out, in)``;
* ``LayerNorm_*/scale`` -> ``weight``; ``encoder_norm`` -> final ``ln1``; ``cls`` -> ``cls_token``;
* ``head/kernel`` -> ``head.fc.weight`` with ``--classifier`` (keys then prefixed ``backbone.``).
"""
import argparse
import re
from typing import Dict, Mapping

import numpy as np
import torch

from mmext.utils.progress import file_stage, track


def _layout(weights: Mapping[str, np.ndarray]) -> Dict[str, str]:
    prefix = ''
    for candidate in ('opt/target/', 'params/', 'params/img/'):
        if f'{candidate}embedding/kernel' in weights:
            prefix = candidate
    if f'{prefix}embedding/kernel' not in weights:
        raise KeyError("not an official ViT .npz: no 'embedding/kernel' (checked the '', "
                       "'opt/target/', 'params/' and 'params/img/' prefixes)")
    if f'{prefix}Transformer/encoderblock/LayerNorm_0/scale' in weights:
        raise ValueError('scanned (stacked-layer) big_vision checkpoints are not supported')
    big_vision = f'{prefix}pos_embedding' in weights
    return dict(
        prefix=prefix,
        pos=f'{prefix}pos_embedding'
        if big_vision else f'{prefix}Transformer/posembed_input/pos_embedding',
        mha='MultiHeadDotProductAttention_0' if big_vision else 'MultiHeadDotProductAttention_1',
        ln2='LayerNorm_1' if big_vision else 'LayerNorm_2',
        mlp='MlpBlock_0' if big_vision else 'MlpBlock_3')


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).float()


def convert_official_to_mmext(weights: Mapping[str, np.ndarray],
                              classifier: bool = False) -> Dict[str, torch.Tensor]:
    """An official ViT ``.npz`` (as a mapping name -> array) in mmext keys."""
    lay = _layout(weights)
    p = lay['prefix']
    pre = 'backbone.' if classifier else ''
    out: Dict[str, torch.Tensor] = {}
    kernel = weights[f'{p}embedding/kernel']
    if kernel.ndim != 4:
        raise ValueError(f'embedding/kernel must be (p, p, C_in, D), got {kernel.shape}')
    out[pre + 'patch_embed.projection.weight'] = _t(kernel.transpose(3, 2, 0, 1))
    out[pre + 'patch_embed.projection.bias'] = _t(weights[f'{p}embedding/bias'])
    if f'{p}cls' in weights:
        out[pre + 'cls_token'] = _t(weights[f'{p}cls']).reshape(1, 1, -1)
    out[pre + 'pos_embed'] = _t(weights[lay['pos']]).reshape(1, -1, kernel.shape[-1])
    blocks = sorted({
        int(m.group(1))
        for k in weights
        for m in [re.match(rf'^{re.escape(p)}Transformer/encoderblock_(\d+)/', k)] if m
    })
    if blocks != list(range(len(blocks))) or not blocks:
        raise ValueError(f'encoder blocks must be numbered 0..N-1, found {blocks}')
    for i in blocks:
        src = f'{p}Transformer/encoderblock_{i}/'
        dst = f'{pre}layers.{i}.'
        mha = src + lay['mha'] + '/'
        out[dst + 'ln1.weight'] = _t(weights[src + 'LayerNorm_0/scale'])
        out[dst + 'ln1.bias'] = _t(weights[src + 'LayerNorm_0/bias'])
        dims = weights[mha + 'query/kernel'].shape[0]
        out[dst + 'attn.qkv.weight'] = torch.cat([
            _t(weights[f'{mha}{n}/kernel']).reshape(dims, -1).t() for n in ('query', 'key', 'value')
        ])
        if f'{mha}query/bias' in weights:
            out[dst + 'attn.qkv.bias'] = torch.cat(
                [_t(weights[f'{mha}{n}/bias']).reshape(-1) for n in ('query', 'key', 'value')])
        out[dst + 'attn.proj.weight'] = _t(weights[mha + 'out/kernel']).reshape(-1, dims).t()
        out[dst + 'attn.proj.bias'] = _t(weights[mha + 'out/bias'])
        out[dst + 'ln2.weight'] = _t(weights[src + lay['ln2'] + '/scale'])
        out[dst + 'ln2.bias'] = _t(weights[src + lay['ln2'] + '/bias'])
        for r, name in ((0, 'ffn.layers.0.0'), (1, 'ffn.layers.1')):
            out[f'{dst}{name}.weight'] = _t(weights[f'{src}{lay["mlp"]}/Dense_{r}/kernel']).t()
            out[f'{dst}{name}.bias'] = _t(weights[f'{src}{lay["mlp"]}/Dense_{r}/bias'])
    out[pre + 'ln1.weight'] = _t(weights[f'{p}Transformer/encoder_norm/scale'])
    out[pre + 'ln1.bias'] = _t(weights[f'{p}Transformer/encoder_norm/bias'])
    if classifier and f'{p}head/kernel' in weights:
        if f'{p}pre_logits/kernel' in weights:
            raise ValueError('this checkpoint has a pre_logits layer before its head, which '
                             "mmpretrain's LinearClsHead cannot hold; convert without "
                             '--classifier')
        out['head.fc.weight'] = _t(weights[f'{p}head/kernel']).t()
        out['head.fc.bias'] = _t(weights[f'{p}head/bias'])
    return {k: v.contiguous() for k, v in out.items()}


def convert_mmext_to_official(state_dict: Mapping[str, torch.Tensor],
                              num_heads: int) -> Dict[str, np.ndarray]:
    """The inverse (original layout, no prefix): mmext backbone keys -> ``.npz`` arrays."""
    sd = {
        k[len('backbone.'):] if k.startswith('backbone.') else k: v.detach().cpu().numpy()
        for k, v in state_dict.items()
    }
    out: Dict[str, np.ndarray] = {}
    out['embedding/kernel'] = sd['patch_embed.projection.weight'].transpose(2, 3, 1, 0)
    out['embedding/bias'] = sd['patch_embed.projection.bias']
    if 'cls_token' in sd:
        out['cls'] = sd['cls_token']
    out['Transformer/posembed_input/pos_embedding'] = sd['pos_embed']
    num_layers = len({k.split('.')[1] for k in sd if k.startswith('layers.')})
    for i in range(num_layers):
        src, dst = f'layers.{i}.', f'Transformer/encoderblock_{i}/'
        mha = dst + 'MultiHeadDotProductAttention_1/'
        out[dst + 'LayerNorm_0/scale'] = sd[src + 'ln1.weight']
        out[dst + 'LayerNorm_0/bias'] = sd[src + 'ln1.bias']
        qkv = sd[src + 'attn.qkv.weight']
        dims = qkv.shape[1]
        for j, name in enumerate(('query', 'key', 'value')):
            out[f'{mha}{name}/kernel'] = qkv[j * dims:(j + 1) * dims].T.reshape(
                dims, num_heads, dims // num_heads)
            if src + 'attn.qkv.bias' in sd:
                out[f'{mha}{name}/bias'] = sd[src + 'attn.qkv.bias'][j * dims:(j + 1) * dims] \
                    .reshape(num_heads, dims // num_heads)
        out[mha + 'out/kernel'] = sd[src + 'attn.proj.weight'].T.reshape(
            num_heads, dims // num_heads, dims)
        out[mha + 'out/bias'] = sd[src + 'attn.proj.bias']
        out[dst + 'LayerNorm_2/scale'] = sd[src + 'ln2.weight']
        out[dst + 'LayerNorm_2/bias'] = sd[src + 'ln2.bias']
        for r, name in ((0, 'ffn.layers.0.0'), (1, 'ffn.layers.1')):
            out[f'{dst}MlpBlock_3/Dense_{r}/kernel'] = sd[f'{src}{name}.weight'].T
            out[f'{dst}MlpBlock_3/Dense_{r}/bias'] = sd[f'{src}{name}.bias']
    out['Transformer/encoder_norm/scale'] = sd['ln1.weight']
    out['Transformer/encoder_norm/bias'] = sd['ln1.bias']
    if 'head.fc.weight' in state_dict:
        out['head/kernel'] = state_dict['head.fc.weight'].detach().cpu().numpy().T
        out['head/bias'] = state_dict['head.fc.bias'].detach().cpu().numpy()
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official ViT .npz')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--classifier',
        action='store_true',
        help='keep the head: backbone.* + head.fc.* (mmpretrain ImageClassifier)')
    args = parser.parse_args()
    with np.load(args.src) as weights:
        # the arrays are read (and decompressed) one by one here: the long part
        arrays = {name: weights[name] for name in track(weights.files, f'reading {args.src}')}
    converted = convert_official_to_mmext(arrays, classifier=args.classifier)
    with file_stage('saving', args.dst):
        torch.save(
            dict(state_dict=converted, meta=dict(source='official-npz', file=args.src)), args.dst)
    print(f'wrote {args.dst}')


if __name__ == '__main__':
    main()
