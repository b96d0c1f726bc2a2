"""Small real training runs of the demo configs, for the tests of the analysis tools.

Each function trains a demo config for a few iterations through ``tools/train.py`` in a
subprocess (as a user would) and returns a :class:`DemoRun`: the config, the ``--cfg-options``
that shrink it (pass them to any tool that rebuilds the config), the work dir with mmengine's
``<timestamp>/vis_data/scalars.json`` and the last checkpoint.  ``tests/conftest.py`` wraps them
in session-scoped fixtures (``fcos_demo_run``, ``sasrec_demo_run``, ``vit_demo_run``,
``itc_demo_run``, ``vit_trajectory_run``) so that a run is trained once per test session, and
only when a test asks.
"""
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoRun:
    config: Path
    cfg_options: List[str]  # for tools that take `--cfg-options k=v ...`
    work_dir: Path
    checkpoint: Path

    @property
    def scalars(self) -> Path:
        """The run's ``<timestamp>/vis_data/scalars.json`` (one run per work dir here)."""
        found = sorted(self.work_dir.glob('*/vis_data/scalars.json'))
        assert found, f'{self.work_dir} has no scalars.json'
        return found[-1]


def train(config: Path, work_dir: Path, cfg_options: Sequence[str], timeout: int = 900) -> DemoRun:
    """Run ``tools/train.py config --work-dir work_dir --cfg-options ...``; fail with its log."""
    pythonpath = os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])
    env = dict(os.environ, PYTHONPATH=pythonpath)
    proc = subprocess.run([
        sys.executable,
        str(ROOT / 'tools' / 'train.py'),
        str(config), '--work-dir',
        str(work_dir), '--cfg-options', *cfg_options
    ],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'training {config.name} failed:\n{log[-4000:]}'
    checkpoint = Path((work_dir / 'last_checkpoint').read_text().strip())
    return DemoRun(Path(config), list(cfg_options), Path(work_dir), checkpoint)


def _no_workers(*splits: str) -> List[str]:
    opts = []
    for split in splits:
        opts += [
            f'{split}_dataloader.num_workers=0', f'{split}_dataloader.persistent_workers=False'
        ]
    return opts


def fcos_options(data_dir: Path, num_train: int = 32, num_val: int = 8) -> List[str]:
    """The FCOS shapes demo shrunk to ``num_train``/``num_val`` images of a generated set in
    ``data_dir``, one epoch, validated once, every prediction kept (one epoch predicts little)."""
    shapes = dict(num_train=num_train, num_val=num_val, img_size=128, seed=3)
    ann = f'{data_dir}/annotations/instances_val.json'
    opts = [
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'model.test_cfg.score_thr=0.0',
        'default_hooks.logger.interval=1', f'val_evaluator.ann_file={ann}',
        f'test_evaluator.ann_file={ann}', *_no_workers('train', 'val', 'test')
    ]
    for split in ('train', 'val', 'test'):
        opts.append(f'{split}_dataloader.dataset.data_root={data_dir}')
        opts += [f'{split}_dataloader.dataset.shapes_cfg.{k}={v}' for k, v in shapes.items()]
    return opts


def fcos_run(root: Path) -> DemoRun:
    """``make demo``'s config (FCOS, shapes), 32 training images, one epoch (2 iterations)."""
    return train(ROOT / 'configs' / 'fcos' / 'fcos_r18_fpn_shapes-128_demo.py', root / 'work',
                 fcos_options(root / 'shapes'))


def sasrec_run(root: Path) -> DemoRun:
    """SASRec on ml-100k (the recbole wheel's copy), two short epochs, validated after each."""
    opts = [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=5',
        'default_hooks.checkpoint.interval=1'
    ]
    return train(ROOT / 'configs' / 'sasrec' / 'sasrec_ml100k.py', root / 'work', opts)


def vit_run(root: Path) -> DemoRun:
    """The ViT digits demo, two epochs, validated after each."""
    opts = [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=5',
        'default_hooks.checkpoint.interval=1'
    ]
    return train(ROOT / 'configs' / 'vit' / 'vit-tiny-p8_digits-32_demo.py', root / 'work', opts)


def itc_run(root: Path) -> DemoRun:
    """The ITC digits demo (image-text dual encoder), two epochs, validated after each."""
    opts = [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=5',
        'default_hooks.checkpoint.interval=1'
    ]
    return train(ROOT / 'configs' / 'itc' / 'itc_vit-tiny_digits_demo.py', root / 'work', opts)


#: iterations at which :func:`vit_trajectory_run` writes snapshots and checkpoints
VIT_TRAJECTORY_ITERS = (0, 10, 20, 23)


def vit_trajectory_run(root: Path) -> DemoRun:
    """The ViT digits trajectory config for one epoch (23 iterations): a 64-image probe embedded
    every 10 iterations, before training and at the end (iterations 0, 10, 20, 23), and a
    checkpoint at iterations 10, 20 and 23 (all kept)."""
    opts = [
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=5',
        'default_hooks.checkpoint.interval=10', 'default_hooks.checkpoint.by_epoch=False',
        'default_hooks.checkpoint.max_keep_ckpts=-1', 'custom_hooks.0.interval=10',
        'custom_hooks.0.by_epoch=False', 'custom_hooks.0.probe_size=64'
    ]
    return train(ROOT / 'configs' / 'vit' / 'vit-tiny-p8_digits-32_trajectory.py', root / 'work',
                 opts)
