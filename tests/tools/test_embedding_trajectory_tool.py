"""tools/analysis/embedding_trajectory.py: a GIF with one frame per snapshot, from the snapshots
of a real run and from its checkpoints; frames of text-only (recommender) snapshots; the errors.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from demo_runs import VIT_TRAJECTORY_ITERS
from PIL import Image

from mmext.engine.embedding_probe import ProbeEmbedding, load_snapshot, save_snapshot, write_index

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / 'tools' / 'analysis' / 'embedding_trajectory.py'


@pytest.fixture(scope='module')
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location('embedding_trajectory', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(*args: str) -> subprocess.CompletedProcess:
    pythonpath = os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')])
    env = dict(os.environ, PYTHONPATH=pythonpath)
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)


def gif_frames(path: Path) -> int:
    with Image.open(path) as gif:
        assert gif.format == 'GIF'
        return gif.n_frames


def test_gif_has_one_frame_per_snapshot(vit_trajectory_run, tmp_path):
    out = tmp_path / 'vis'
    proc = run_tool(vit_trajectory_run.work_dir, '--out-dir', out, '--outliers', '4', '--dpi', '50')
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    snapshots = sorted((vit_trajectory_run.work_dir / 'trajectory').glob('iter_*.npz'))
    assert len(snapshots) == len(VIT_TRAJECTORY_ITERS)
    assert gif_frames(out / 'trajectory.gif') == len(snapshots)
    frames = sorted((out / 'frames').glob('frame_*.png'))
    assert len(frames) == len(snapshots)
    with Image.open(frames[0]) as png:
        assert png.size == (500, 260)  # --figsize 10 x 5.2 in at --dpi 50
    assert f'{len(snapshots)}/{len(snapshots)}' in proc.stdout  # the progress bar ran to the end


def test_checkpoints_are_embedded_like_the_hook_did(tool, vit_trajectory_run, tmp_path):
    """--config/--checkpoints embeds the hook's probe with each checkpoint: the snapshots equal
    the ones the hook wrote at the same iterations (same weights, same samples)."""
    work = vit_trajectory_run.work_dir
    checkpoints = [work / 'iter_20.pth', work / 'iter_10.pth']  # any order
    args = [str(tmp_path), '--config', str(vit_trajectory_run.config), '--scalars', str(work)]
    args += ['--checkpoints', *map(str, checkpoints), '--dpi', '40']
    tool.main(args + ['--cfg-options', *vit_trajectory_run.cfg_options])
    assert gif_frames(tmp_path / 'trajectory_vis' / 'trajectory.gif') == 2
    for it in (10, 20):
        ours = load_snapshot(tmp_path / 'trajectory_checkpoints' / f'iter_{it:07d}.npz')
        hooks = load_snapshot(work / 'trajectory' / f'iter_{it:07d}.npz')
        assert ours.iteration == it
        np.testing.assert_array_equal(ours.indices, hooks.indices)
        np.testing.assert_array_equal(ours.labels, hooks.labels)
        np.testing.assert_array_equal(ours.thumbnails, hooks.thumbnails)
        np.testing.assert_allclose(
            ours.embeddings['embedding'], hooks.embeddings['embedding'], rtol=1e-4, atol=1e-5)


def test_no_snapshots_says_where_it_looked_and_what_to_add(tool, tmp_path):
    with pytest.raises(SystemExit) as error:
        tool.main([str(tmp_path)])
    message = str(error.value)
    assert f'{tmp_path / "trajectory" / "index.json"}' in message
    assert "type='mmext.EmbeddingTrajectoryHook'" in message
    assert '--checkpoints' in message
    with pytest.raises(SystemExit, match=f'not found: x.py, {tmp_path / "a.pth"}'):
        tool.main([str(tmp_path), '--config', 'x.py', '--checkpoints', str(tmp_path / 'a.pth')])


def _recommender_snapshots(directory: Path, steps=(0, 7, 14), n=30):
    """Snapshots shaped like SASRec's: one ``user`` embedding, no labels or images, ids as
    text; each a rotated (or mirrored) and shifted copy of a slowly moving cloud."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n, 8))
    entries = []
    for t, it in enumerate(steps):
        q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
        emb = (base + 0.05 * t * base**2) @ q + rng.normal(size=8)
        probe = ProbeEmbedding(
            embeddings=dict(user=emb.astype(np.float32)),
            labels=np.full(n, -1),
            indices=np.arange(n) * 3,
            texts=np.array([f'user {3 * i} -> item {i % 5 + 1}' for i in range(n)]))
        save_snapshot(directory / f'iter_{it:07d}.npz', probe, it, t)
        entries.append(dict(file=f'iter_{it:07d}.npz', iter=it, epoch=t))
    write_index(directory, dict(indices=(np.arange(n) * 3).tolist(), names=['user']), entries)


def test_text_snapshots_and_frame_selection(tool, tmp_path):
    _recommender_snapshots(tmp_path / 'trajectory')
    tool.main([str(tmp_path), '--max-frames', '2', '--knn', '3', '--dpi', '40'])
    assert gif_frames(tmp_path / 'trajectory_vis' / 'trajectory.gif') == 2  # first and last
    tool.main([str(tmp_path), '--knn', '3', '--dpi', '40'])
    assert gif_frames(tmp_path / 'trajectory_vis' / 'trajectory.gif') == 3
    assert len(list((tmp_path / 'trajectory_vis' / 'frames').glob('*.png'))) == 3
    with pytest.raises(SystemExit, match="no embedding \\['image'\\]"):
        tool.main([str(tmp_path), '--embedding', 'image'])
    # MP4 where ffmpeg exists, else a clear error once the GIF is written
    (tmp_path / 'trajectory_vis' / 'trajectory.gif').unlink()
    mp4 = [str(tmp_path), '--knn', '3', '--dpi', '40', '--mp4']
    if tool.ffmpeg_available() is None:
        with pytest.raises(SystemExit, match='no ffmpeg writer'):
            tool.main(mp4)
    else:
        tool.main(mp4)
        assert (tmp_path / 'trajectory_vis' / 'trajectory.mp4').stat().st_size > 0
    assert gif_frames(tmp_path / 'trajectory_vis' / 'trajectory.gif') == 3


def test_frames_undo_rotations_between_snapshots(tool, tmp_path):
    """Snapshots that differ by an orthogonal map of the embedding space (and a shift) give the
    same frame after PCA + Procrustes, whatever sign each PCA fit took."""
    _recommender_snapshots(tmp_path)
    from mmext.engine.embedding_probe import load_trajectory
    _, snaps = load_trajectory(tmp_path)
    rng = np.random.default_rng(3)
    for snap in snaps:  # one cloud, re-embedded by rotations and reflections
        q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
        snap.embeddings['user'] = snaps[0].embeddings['user'].astype(np.float64) @ q + 5.0
    frames, limits = tool.compute_frames(snaps, ['user'], knn=3, num_outliers=2)
    for frame in frames[1:]:
        np.testing.assert_allclose(frame.points, frames[0].points, atol=1e-9)
        np.testing.assert_allclose(frame.scores, frames[0].scores, rtol=1e-9)
        np.testing.assert_array_equal(frame.worst, frames[0].worst)
    assert limits[1] > 0 and limits[0] == -limits[1]
