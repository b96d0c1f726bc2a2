"""Print a config fully resolved, as the Runner gets it.

    python tools/misc/print_config.py CONFIG [--cfg-options k=v ...] [--save-path resolved.py]

The ``_base_`` chain is merged (``mmdet::`` / ``mmpretrain::`` bases included, read from the
installed toolboxes), ``{{_base_.x}}`` references are substituted and ``--cfg-options`` applied
last.  ``--save-path`` also writes it (``.py``, ``.json`` or ``.yaml``); a saved ``.py`` is a
stand-alone config that ``tools/train.py`` accepts.
"""
import sys  # isort:skip
from pathlib import Path  # isort:skip

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # tools/: process_defaults
    sys.path.append(str(Path(__file__).resolve().parents[1]))
import process_defaults  # noqa: F401 isort:skip  (silences foreign start-up warnings)
import argparse
from typing import List, Optional

from mmengine.config import Config, DictAction

SAVE_SUFFIXES = ('.py', '.json', '.yaml', '.yml')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Print a config with its bases merged')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--save-path', help=f"also write it here ({', '.join(SAVE_SUFFIXES)})")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, as for tools/train.py')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Config:
    args = parse_args(argv)
    if args.save_path and Path(args.save_path).suffix not in SAVE_SUFFIXES:
        raise SystemExit(f'--save-path must end with one of {SAVE_SUFFIXES}: {args.save_path}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    text = cfg.pretty_text
    print(f'Config:\n{text}')
    if args.save_path:
        save_path = Path(args.save_path)
        save_path.parent.mkdir(parents=True, exist_ok=True)
        if save_path.suffix == '.py':
            save_path.write_text(text)  # what Config.dump writes, without formatting it again
        else:
            cfg.dump(str(save_path))
        print(f'saved to {args.save_path}')
    return cfg


if __name__ == '__main__':
    main()
