"""Convert MaskFormer checkpoints between mmdet/mmseg's head layout and mmext's.

mmdet's and mmseg's ``MaskFormerHead`` keep the transformer predictor's parameters at head level
(``decode_head.query_embed.weight``, ``panoptic_head.cls_embed.weight``, ...); mmext's head
holds them in its ``predictor`` sub-module (``decode_head.predictor.query_embed.weight``).  The
pixel decoder's keys are the same in all three.

mmext's head maps the toolbox layout **on load**, so mmdet/mmseg checkpoints need no conversion
to be used with mmext.  This script is for the other direction (an mmext checkpoint into mmdet or
mmseg) or to store a converted copy:

    python tools/model_converters/maskformer_keys.py IN.pth OUT.pth --to toolbox
    python tools/model_converters/maskformer_keys.py IN.pth OUT.pth --to mmext

Only keys under ``decode_head.`` / ``panoptic_head.`` (or at top level with ``--prefix ''``) are
touched; everything else (backbone, optimizer state, meta) is copied as is.
"""
import argparse
from collections import OrderedDict
from typing import Dict, Sequence

import torch

from mmext.utils.progress import file_stage

# head-level module names of the toolbox heads that live in mmext's ``predictor``
PREDICTOR_KEYS = ('query_embed', 'transformer_decoder', 'decoder_input_proj', 'decoder_pe',
                  'cls_embed', 'mask_embed')
HEAD_PREFIXES = ('decode_head.', 'panoptic_head.')


def convert(state_dict: Dict[str, torch.Tensor],
            to: str,
            prefixes: Sequence[str] = HEAD_PREFIXES) -> 'OrderedDict[str, torch.Tensor]':
    """Rename the predictor keys under each of ``prefixes`` to the ``to`` layout
    (``'mmext'`` or ``'toolbox'``); returns a new ordered dict."""
    if to not in ('mmext', 'toolbox'):
        raise ValueError(f"to must be 'mmext' or 'toolbox', got {to!r}")
    out = OrderedDict()
    for key, value in state_dict.items():
        new = key
        for prefix in prefixes:
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix):]
            if to == 'mmext' and rest.split('.', 1)[0] in PREDICTOR_KEYS:
                new = f'{prefix}predictor.{rest}'
            elif to == 'toolbox' and rest.startswith('predictor.'):
                new = prefix + rest[len('predictor.'):]
            break
        if new in out:
            raise KeyError(f'{key!r} and another key both map to {new!r}')
        out[new] = value
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--to', choices=('mmext', 'toolbox'), required=True)
    parser.add_argument(
        '--prefix',
        action='append',
        help="head prefix (repeatable); default: 'decode_head.' and "
        "'panoptic_head.'; '' for a bare head state dict")
    args = parser.parse_args(argv)
    with file_stage('loading', args.src):
        ckpt = torch.load(args.src, map_location='cpu', weights_only=False)
    prefixes = tuple(args.prefix) if args.prefix else HEAD_PREFIXES
    if isinstance(ckpt, dict) and 'state_dict' in ckpt:
        ckpt['state_dict'] = convert(ckpt['state_dict'], args.to, prefixes)
    else:
        ckpt = convert(ckpt, args.to, prefixes)
    with file_stage('saving', args.dst):
        torch.save(ckpt, args.dst)
    print(f'wrote {args.dst} ({args.to} layout)')


if __name__ == '__main__':
    main()
