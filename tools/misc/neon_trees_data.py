"""Check the NEON tree-crown data of the deepforest wheel and print what each split holds.

    python tools/misc/neon_trees_data.py [--tile-size 400] [--overlap 120]

Reads every split of :data:`mmext.datasets.NEON_TREES_SPLITS` (each file is checked by the VOC
reader: a malformed file or a missing image fails here, naming it) and prints, per split, the
images or regions, their sizes and trees, and the tiles that training cuts (with
:class:`mmext.datasets.TiledDataset`).  Exits non-zero, with the install command, when the wheel
is not installed.
"""
import argparse
import sys

from mmext.datasets.neon_trees import NEON_TREES_SPLITS, NeonTreesDataset, deepforest_data_dir
from mmext.datasets.tiled import TiledDataset


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tile-size', type=int, default=400)
    parser.add_argument('--overlap', type=int, default=120)
    args = parser.parse_args(argv)
    try:
        print(f'deepforest data: {deepforest_data_dir()}')
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    for split in NEON_TREES_SPLITS:
        ds = NeonTreesDataset(split, pipeline=[])
        parts = []
        for i in range(len(ds)):
            d = ds.get_data_info(i)
            parts.append(f"{d['img_name']} {d['width']}x{d['height']} px, "
                         f"{len(d['instances'])} trees")
        tiles = TiledDataset(ds, tile_size=args.tile_size, overlap=args.overlap)
        info = tiles.metainfo['tiling']
        print(f'{split:12s} ' + '; '.join(parts))
        print(f"{'':12s} {info['tiles']} tiles of {args.tile_size} px (overlap {args.overlap}), "
              f"{info['empty_tiles']} without trees; {info['boxes']['kept']} tile boxes, "
              f"{info['boxes']['cut']} cut below min_visible")
    sys.stdout.flush()


if __name__ == '__main__':
    main()
