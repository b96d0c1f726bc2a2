"""Generate mmext's synthetic shapes detection dataset (COCO format) on disk.

    python tools/misc/make_shapes_dataset.py --out data/shapes --num-train 800 --num-val 200

Does nothing if a complete dataset with the same parameters is already there (use --force to
regenerate).  Training with ``ShapesCocoDataset`` generates it on its own; this tool is for
inspecting it or preparing it ahead of time.
"""
import argparse
import json
from pathlib import Path
from typing import List, Optional

from mmext.datasets.shapes import SHAPES_CLASSES, ensure_shapes_dataset


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/shapes', help='dataset directory')
    parser.add_argument('--num-train', type=int, default=800, help='training images')
    parser.add_argument('--num-val', type=int, default=200, help='validation images')
    parser.add_argument('--img-size', type=int, default=128, help='image width and height')
    parser.add_argument('--seed', type=int, default=0, help='seed of every random choice')
    parser.add_argument('--max-objects', type=int, default=6, help='most shapes per image')
    parser.add_argument(
        '--force', action='store_true', help='regenerate even if a matching dataset exists')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Path:
    args = parse_args(argv)
    root = ensure_shapes_dataset(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        img_size=args.img_size,
        seed=args.seed,
        max_objects=args.max_objects,
        force=args.force)
    meta = json.loads((root / 'meta.json').read_text())
    print(f'shapes dataset at {root} (classes: {", ".join(SHAPES_CLASSES)})')
    for split, count in meta.get('counts', {}).items():
        print(f'  {split}: {count["images"]} images, {count["annotations"]} boxes, '
              f'annotations/instances_{split}.json')
    return root


if __name__ == '__main__':
    main()
