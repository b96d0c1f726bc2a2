"""Animate how a model's embedding space moves during training.

    # from the snapshots mmext.EmbeddingTrajectoryHook wrote into a work dir
    python tools/analysis/embedding_trajectory.py WORK_DIR [--out-dir DIR] [--embedding NAME ...]
        [--outliers 8] [--knn 10] [--fps 4] [--mp4] [--max-frames N]
    # from checkpoints: embed the probe set with each of them first
    python tools/analysis/embedding_trajectory.py WORK_DIR --config CONFIG \
        --checkpoints A.pth B.pth ... [--probe-size 256] [--seed 0] [--embedding-type auto]

Per snapshot (one frame each, in iteration order): the probe's embeddings (several kinds, e.g.
ITC's image and text, are drawn together) are projected to 2-D by PCA, scaled to unit RMS
spread, and aligned to the previous aligned frame by orthogonal Procrustes (reflections
allowed), which removes the axis flips and rotations between independent PCA fits.  Points are
coloured by label; the training loss (mmengine's ``scalars.json``) is drawn up to the frame's
iteration; the ``--outliers`` points of lowest k-NN outlier score ``exp(-mean distance to the
--knn nearest neighbours)``, computed in the full embedding space, are ringed, numbered and shown
as thumbnails (or their ids/captions).

Writes ``OUT_DIR/frames/frame_XXXX.png``, ``OUT_DIR/trajectory.gif`` (as many frames as
snapshots) and, with ``--mp4`` where ffmpeg exists, ``OUT_DIR/trajectory.mp4``.  ``OUT_DIR``
defaults to ``WORK_DIR/trajectory_vis``.  See docs/tools/embedding_trajectory.md.
"""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config, DictAction
from mmengine.utils import ProgressBar

from mmext.engine.embedding_probe import (NoSnapshotsError, Snapshot, load_trajectory,
                                          save_snapshot, snapshot_name, write_index)
from mmext.visualization.trajectory import (FrameData, chain_procrustes, ffmpeg_available,
                                            knn_outlier_score, normalise_spread, pca_2d,
                                            read_loss_curve, render_frame, write_gif, write_mp4)

HOOK = 'EmbeddingTrajectoryHook'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Frames and a GIF of the embedding trajectory of a training run')
    parser.add_argument(
        'work_dir',
        help='work dir of the run (snapshots in WORK_DIR/trajectory/); with --checkpoints, '
        'where the embedded snapshots are written (WORK_DIR/trajectory_checkpoints/)')
    parser.add_argument('--out-dir', help='output folder (default: WORK_DIR/trajectory_vis)')
    parser.add_argument(
        '--embedding',
        nargs='+',
        help='which embeddings of the snapshots to draw, e.g. image text (default: all)')
    parser.add_argument(
        '--outliers', type=int, default=8, help='number of lowest outlier scores highlighted')
    parser.add_argument('--knn', type=int, default=10, help='neighbours k of the outlier score')
    parser.add_argument('--fps', type=float, default=4.0, help='frames per second')
    parser.add_argument('--mp4', action='store_true', help='also write an MP4 (needs ffmpeg)')
    parser.add_argument(
        '--max-frames',
        type=int,
        help='draw at most this many snapshots, evenly spaced (first and last kept)')
    parser.add_argument(
        '--procrustes-scale',
        action='store_true',
        help='let Procrustes fit a uniform scale too (frames are already scaled to unit spread)')
    parser.add_argument('--loss-key', default='loss', help='scalar drawn beside the points')
    parser.add_argument(
        '--scalars', help='scalars.json (or a run or work dir holding them); default: WORK_DIR')
    parser.add_argument('--figsize', type=float, nargs=2, default=(10.0, 5.2), metavar=('W', 'H'))
    parser.add_argument('--dpi', type=int, default=80)
    ckpt = parser.add_argument_group('embedding checkpoints instead of reading snapshots')
    ckpt.add_argument('--config', help='the config the checkpoints were trained with')
    ckpt.add_argument('--checkpoints', nargs='+', help='checkpoint files, in any order')
    ckpt.add_argument(
        '--probe-size',
        type=int,
        help='probe samples (default: the config\'s EmbeddingTrajectoryHook, else 256)')
    ckpt.add_argument('--seed', type=int, help='seed of the probe draw (default: hook\'s, else 0)')
    ckpt.add_argument(
        '--embedding-type',
        help="what to embed: auto, classifier, vit_cls_token, sasrec, gru4rec, itc "
        "(default: the hook's, else auto)")
    ckpt.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = parser.parse_args(argv)
    if bool(args.config) != bool(args.checkpoints):
        parser.error('--config and --checkpoints go together')
    if args.outliers < 0 or args.knn < 1:
        parser.error('--outliers must be >= 0 and --knn >= 1')
    return args


# ----------------------------------------------------------------------------- checkpoints
def _hook_options(cfg: Config) -> Dict[str, Any]:
    for hook in cfg.get('custom_hooks', None) or []:
        if str(hook.get('type', '')).split('.')[-1] == HOOK:
            return dict(hook)
    return {}


def embed_checkpoints(args: argparse.Namespace) -> Path:
    """Embed the probe with every checkpoint; returns the folder of the snapshots."""
    import torch

    import mmext  # noqa: F401  (registry nodes, safe checkpoint loading)
    from mmext.engine.embedding_probe import EmbeddingProbe
    from mmext.registry import RUNNERS, explained_unknown_types

    missing = [c for c in [args.config, *args.checkpoints] if not Path(c).is_file()]
    if missing:
        raise SystemExit(f'not found: {", ".join(missing)}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    hook = _hook_options(cfg)
    out = Path(args.work_dir) / 'trajectory_checkpoints'
    out.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix='embedding_trajectory_')  # the Runner's own logs
    try:
        cfg.work_dir, cfg.load_from, cfg.resume = scratch, None, False
        cfg.custom_hooks = [h for h in cfg.get('custom_hooks', None) or [] if h is not hook]
        cfg.log_level = 'WARNING'
        with explained_unknown_types():
            runner = RUNNERS.build(cfg)
        split = hook.get('split', 'val')
        loader = runner.val_dataloader if split == 'val' else runner.test_dataloader
        probe = EmbeddingProbe(
            loader.dataset,
            loader.collate_fn,
            embedding=args.embedding_type or hook.get('embedding', 'auto'),
            size=args.probe_size or hook.get('probe_size', 256),
            seed=args.seed if args.seed is not None else hook.get('seed', 0),
            batch_size=hook.get('batch_size', 64),
            label_key=hook.get('label_key', 'gt_label'),
            thumbnail_size=hook.get('thumbnail_size', 32))
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        entries = []
        bar = ProgressBar(len(args.checkpoints))
        for path in args.checkpoints:
            checkpoint = runner.load_checkpoint(path, map_location='cpu')
            meta = checkpoint.get('meta', {}) if isinstance(checkpoint, dict) else {}
            iteration, epoch = int(meta.get('iter', 0)), float(meta.get('epoch', 0))
            with torch.no_grad():
                result = probe.embed(model)
            name = snapshot_name(iteration)
            save_snapshot(out / name, result, iteration, epoch)
            entries = [e for e in entries if e['iter'] != iteration]
            entries.append(dict(file=name, iter=iteration, epoch=epoch, checkpoint=str(path)))
            bar.update()
        sys.stdout.write('\n')
        write_index(out, probe.describe(model), entries)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- frames
def pick_frames(snapshots: List[Snapshot], max_frames: Optional[int]) -> List[Snapshot]:
    """At most ``max_frames`` snapshots, evenly spaced, the first and the last kept."""
    if not max_frames or len(snapshots) <= max_frames:
        return snapshots
    keep = np.unique(np.round(np.linspace(0, len(snapshots) - 1, max(max_frames, 2))))
    return [snapshots[int(i)] for i in keep]


def compute_frames(snapshots: Sequence[Snapshot],
                   names: Sequence[str],
                   knn: int = 10,
                   num_outliers: int = 8,
                   procrustes_scale: bool = False) -> Tuple[List[FrameData], Tuple[float, ...]]:
    """PCA, chained Procrustes and outlier scores of every snapshot.

    Returns:
        ``(frames, limits)``: one :class:`FrameData` per snapshot and the common
        ``(xmin, xmax, ymin, ymax)`` of the scatter.
    """
    clouds, metas = [], []
    for snap in snapshots:
        unknown = [n for n in names if n not in snap.embeddings]
        if unknown:
            raise SystemExit(f'{snap.path} has no embedding {unknown}; it has '
                             f'{sorted(snap.embeddings)}')
        points = np.concatenate([snap.embeddings[n] for n in names]).astype(np.float64)
        n = len(snap.labels)
        metas.append((np.tile(snap.labels,
                              len(names)), np.repeat(np.arange(len(names)),
                                                     n), np.tile(np.arange(n), len(names))))
        clouds.append(points)
    fits = [pca_2d(points) for points in clouds]
    projected = [normalise_spread(fit.points) for fit in fits]
    aligned, _ = chain_procrustes(projected, scale=procrustes_scale)
    frames = []
    for snap, points, full, fit, (labels, groups, samples) in zip(snapshots, aligned, clouds, fits,
                                                                  metas):
        k = min(knn, len(full) - 1)
        scores = knn_outlier_score(full, k) if k >= 1 else np.ones(len(full))
        worst = np.argsort(scores, kind='stable')[:num_outliers]
        ratio = fit.explained_variance_ratio
        frames.append(
            FrameData(
                points=points,
                labels=labels,
                groups=groups,
                samples=samples,
                scores=scores,
                worst=worst,
                iteration=snap.iteration,
                epoch=snap.epoch,
                title=f'{" + ".join(names)}: PCA (axes {ratio[0]:.0%}, {ratio[1]:.0%} of the '
                'variance) + Procrustes'))
    # robust: a far outlier in one frame must not shrink every other frame (it is drawn on the
    # border instead)
    extent = float(np.quantile(np.abs(np.concatenate([f.points for f in frames])), 0.995)) * 1.15
    extent = extent or 1.0
    return frames, (-extent, extent, -extent, extent)


def main(argv=None) -> None:
    args = parse_args(argv)
    work_dir = Path(args.work_dir)
    source = embed_checkpoints(args) if args.checkpoints else work_dir
    try:
        probe, snapshots = load_trajectory(source)
    except NoSnapshotsError as e:
        raise SystemExit(str(e)) from None
    names = args.embedding or list(snapshots[0].embeddings)
    snapshots = pick_frames(snapshots, args.max_frames)
    scalars = Path(args.scalars) if args.scalars else work_dir
    loss = read_loss_curve(scalars, args.loss_key)
    if not len(loss[0]) and args.checkpoints and not args.scalars:
        loss = read_loss_curve(Path(args.checkpoints[0]).parent, args.loss_key)
    frames, limits = compute_frames(snapshots, names, args.knn, args.outliers,
                                    args.procrustes_scale)

    out_dir = Path(args.out_dir) if args.out_dir else work_dir / 'trajectory_vis'
    frame_dir = out_dir / 'frames'
    frame_dir.mkdir(parents=True, exist_ok=True)
    for old in frame_dir.glob('frame_*.png'):  # a previous, longer animation's frames
        old.unlink()
    classes = probe.get('classes') or []
    last = snapshots[-1]
    images = []
    print(f'Drawing {len(frames)} frames of {len(last.labels)} probe samples ({", ".join(names)})')
    bar = ProgressBar(len(frames))
    for i, (frame, snap) in enumerate(zip(frames, snapshots)):
        image = render_frame(
            frame,
            limits,
            class_names=classes,
            group_names=names,
            thumbnails=snap.thumbnails,
            texts=snap.texts,
            thumbnail_groups=[g for g, name in enumerate(names) if name != 'text'],
            loss_curve=loss,
            loss_key=args.loss_key,
            figsize=tuple(args.figsize),
            dpi=args.dpi)
        image.save(frame_dir / f'frame_{i:04d}.png')
        images.append(image)
        bar.update()
    sys.stdout.write('\n')
    gif = write_gif(images, out_dir / 'trajectory.gif', fps=args.fps)
    print(f'{len(images)} frames -> {frame_dir}/, {gif}')
    if args.mp4:
        if ffmpeg_available() is None:
            raise SystemExit('--mp4: no ffmpeg writer found (matplotlib.animation has no '
                             "'ffmpeg'); the GIF and the PNG frames were written")
        print(f'-> {write_mp4(images, out_dir / "trajectory.mp4", fps=args.fps)}')


if __name__ == '__main__':
    main()
