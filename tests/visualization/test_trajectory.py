"""mmext.visualization.trajectory: PCA signs, Procrustes (rotation, reflection, scale, chains),
the k-NN outlier score against a hand computation, the loss curve reader, frames and GIFs."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from mmext.visualization.trajectory import (FrameData, chain_procrustes, knn_outlier_score,
                                            normalise_spread, pca_2d, procrustes_align,
                                            read_loss_curve, render_frame, write_gif)


def rotation_2d(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def random_orthogonal(d: int, seed: int, det: float) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    q = q * np.sign(np.diag(r))
    if np.sign(np.linalg.det(q)) != det:
        q[:, 0] *= -1
    return q


@pytest.fixture
def cloud() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(40, 6)) * np.array([5, 3, 2, 1, .5, .1])


# ----------------------------------------------------------------------------- PCA
def test_pca_matches_the_covariance_eigenproblem(cloud):
    res = pca_2d(cloud)
    cov = np.cov(cloud, rowvar=False, bias=True)
    values, vectors = np.linalg.eigh(cov)
    top = vectors[:, ::-1][:, :2].T
    assert res.points.shape == (40, 2)
    np.testing.assert_allclose(np.abs(res.components @ top.T), np.eye(2), atol=1e-10)
    np.testing.assert_allclose(
        res.explained_variance_ratio, values[::-1][:2] / values.sum(), rtol=1e-10)
    np.testing.assert_allclose(res.points, (cloud - cloud.mean(0)) @ res.components.T)


def test_pca_sign_is_deterministic(cloud):
    res = pca_2d(cloud)
    for row in res.components:  # the largest loading of every axis is positive
        assert row[np.argmax(np.abs(row))] > 0
    # the same cloud in another row order, or mirrored, gives the same axes
    perm = np.random.default_rng(1).permutation(len(cloud))
    shuffled = pca_2d(cloud[perm])
    np.testing.assert_allclose(shuffled.components, res.components, atol=1e-12)
    np.testing.assert_allclose(shuffled.points, res.points[perm], atol=1e-10)
    mirrored = pca_2d(-cloud)
    np.testing.assert_allclose(mirrored.components, res.components, atol=1e-12)
    np.testing.assert_allclose(mirrored.points, -res.points, atol=1e-10)
    np.testing.assert_array_equal(pca_2d(cloud).points, res.points)


def test_pca_pads_axes_beyond_the_rank():
    res = pca_2d(np.array([[1.0], [3.0], [4.0]]))  # one column: one axis
    assert res.points.shape == (3, 2)
    np.testing.assert_array_equal(res.points[:, 1], 0)
    np.testing.assert_allclose(res.points[:, 0], [-5 / 3, 1 / 3, 4 / 3])
    np.testing.assert_allclose(res.explained_variance_ratio, [1.0, 0.0])
    assert pca_2d(np.ones((1, 4))).points.shape == (1, 2)  # one point: all zero
    np.testing.assert_array_equal(pca_2d(np.ones((1, 4))).points, 0)


# ----------------------------------------------------------------------------- Procrustes
def test_procrustes_removes_a_known_rotation():
    x = np.random.default_rng(2).normal(size=(30, 2))
    rot = rotation_2d(0.7)
    moved = x @ rot + np.array([3.0, -1.0])
    aligned, t = procrustes_align(moved, x)
    assert np.abs(aligned - x).max() < 1e-10
    np.testing.assert_allclose(t.rotation, rot.T, atol=1e-12)
    assert not t.is_reflection and t.scale == 1.0


@pytest.mark.parametrize('d', [2, 5])
def test_procrustes_removes_a_known_reflection(d):
    x = np.random.default_rng(3).normal(size=(25, d))
    reflection = random_orthogonal(d, seed=d, det=-1.0)
    moved = x @ reflection - 2.5
    aligned, t = procrustes_align(moved, x)
    assert np.abs(aligned - x).max() < 1e-10
    assert t.is_reflection
    np.testing.assert_allclose(t.rotation, reflection.T, atol=1e-10)
    # a proper rotation cannot undo it
    rigid, t_rigid = procrustes_align(moved, x, allow_reflection=False)
    assert not t_rigid.is_reflection
    assert np.abs(rigid - x).max() > 0.1


def test_procrustes_fits_a_uniform_scale():
    x = np.random.default_rng(4).normal(size=(20, 3))
    q = random_orthogonal(3, seed=7, det=1.0)
    moved = 3.0 * x @ q + 1.0
    aligned, t = procrustes_align(moved, x, scale=True)
    assert np.abs(aligned - x).max() < 1e-10
    assert abs(t.scale - 1 / 3) < 1e-12
    np.testing.assert_allclose(t.apply(moved[:4]), x[:4], atol=1e-10)


def test_procrustes_rotation_is_scipys():
    scipy_linalg = pytest.importorskip('scipy.linalg')
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(15, 4)), rng.normal(size=(15, 4))
    _, t = procrustes_align(a, b)
    expected, _ = scipy_linalg.orthogonal_procrustes(a - a.mean(0), b - b.mean(0))
    np.testing.assert_allclose(t.rotation, expected, atol=1e-12)


def test_two_pca_fits_differ_by_what_procrustes_removes(cloud):
    """Rotating the embedding space (or mirroring it) changes the PCA coordinates by an
    orthogonal 2x2 map at most; Procrustes takes the second fit back onto the first exactly."""
    for det in (1.0, -1.0):
        q = random_orthogonal(cloud.shape[1], seed=11, det=det)
        first, second = pca_2d(cloud).points, pca_2d(cloud @ q + 7.0).points
        aligned, _ = procrustes_align(second, first)
        assert np.abs(aligned - first).max() < 1e-10


def test_chain_aligns_each_frame_to_the_previous_aligned_one():
    rng = np.random.default_rng(6)
    base = rng.normal(size=(12, 2))
    frames = [
        base @ rotation_2d(a) * (1 if i % 2 else -1) + rng.normal(size=2)
        for i, a in enumerate([0.0, 0.5, 2.0, -1.0, 3.0])
    ]
    aligned, transforms = chain_procrustes(frames)
    assert len(aligned) == 5 and len(transforms) == 5
    np.testing.assert_array_equal(aligned[0], frames[0])
    for points in aligned[1:]:
        assert np.abs(points - frames[0]).max() < 1e-10
    # a moving cloud: each frame is matched to its predecessor, not to the first one
    drift = [base + 0.3 * t * np.array([1.0, 0.0]) * base[:, :1] for t in range(4)]
    aligned, _ = chain_procrustes([d @ rotation_2d(t) for t, d in enumerate(drift)])
    for t in range(1, 4):
        expected, _ = procrustes_align(drift[t] @ rotation_2d(t), aligned[t - 1])
        np.testing.assert_allclose(aligned[t], expected, atol=1e-12)


def test_normalise_spread():
    out = normalise_spread(np.random.default_rng(7).normal(size=(50, 2)) * 9 + 4)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    assert abs(np.sqrt((out**2).sum(1).mean()) - 1) < 1e-12


# ----------------------------------------------------------------------------- outliers
def test_knn_outlier_score_by_hand():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    # k = 2 nearest others: p0 {p1: 1, p2: 1}; p1 {p0: 1, p2: sqrt 2}; p2 {p0: 1, p1: sqrt 2};
    # p3 {p1: sqrt 41, p2: sqrt 41} (p0 is sqrt 50 away)
    expected = np.exp(
        -np.array([1.0, (1 + math.sqrt(2)) / 2, (1 + math.sqrt(2)) /
                   2, math.sqrt(41)]))
    scores = knn_outlier_score(points, k=2)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    assert int(np.argmin(scores)) == 3
    # k = 3: every other point
    np.testing.assert_allclose(
        knn_outlier_score(points, k=3)[3],
        math.exp(-(math.sqrt(50) + 2 * math.sqrt(41)) / 3),
        rtol=1e-12)


def test_knn_outlier_score_excludes_the_point_itself_not_its_duplicates():
    points = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(knn_outlier_score(points, k=1), [1.0, 1.0, math.exp(-5.0)])


def test_knn_outlier_score_checks_k():
    with pytest.raises(ValueError, match='1 <= k < N'):
        knn_outlier_score(np.zeros((3, 2)), k=3)
    with pytest.raises(ValueError, match='1 <= k < N'):
        knn_outlier_score(np.zeros((3, 2)), k=0)


def test_knn_outlier_score_in_chunks_equals_one_block():
    x = np.random.default_rng(8).normal(size=(300, 40))
    from mmext.visualization import trajectory
    small = trajectory._pairwise_distances(x, max_elements=1000)  # 1 row per chunk
    np.testing.assert_allclose(small, trajectory._pairwise_distances(x), rtol=0, atol=0)
    np.testing.assert_allclose(small[3, 7], np.linalg.norm(x[3] - x[7]), rtol=1e-12)


# ----------------------------------------------------------------------------- curve, frames
def test_read_loss_curve_merges_runs(tmp_path):
    for run, steps in (('20260101_000000', [1, 2, 3]), ('20260102_000000', [3, 4])):
        path = tmp_path / run / 'vis_data' / 'scalars.json'
        path.parent.mkdir(parents=True)
        lines = [
            dict(loss=float(s) + (10 if run.startswith('20260102') else 0), step=s) for s in steps
        ] + [{
            'accuracy/top1': 50.0,
            'step': 1
        }]
        path.write_text('\n'.join(json.dumps(x) for x in lines) + '\n{"loss": 1')  # cut line
    steps, values = read_loss_curve(tmp_path)
    np.testing.assert_array_equal(steps, [1, 2, 3, 4])
    np.testing.assert_array_equal(values, [1, 2, 13, 14])
    assert len(read_loss_curve(tmp_path / 'nothing')[0]) == 0


def _frame(n=30, groups=1, iteration=5):
    rng = np.random.default_rng(iteration)
    points = rng.normal(size=(n * groups, 2))
    scores = rng.random(n * groups)
    return FrameData(
        points=points,
        labels=np.tile(np.arange(n) % 3, groups),
        groups=np.repeat(np.arange(groups), n),
        samples=np.tile(np.arange(n), groups),
        scores=scores,
        worst=np.argsort(scores)[:4],
        iteration=iteration,
        epoch=iteration / 10,
        title='test')


def test_render_frame_with_thumbnails_and_with_texts():
    thumbs = np.random.default_rng(0).integers(0, 255, size=(30, 8, 8, 1), dtype=np.uint8)
    curve = (np.arange(1, 11), np.linspace(2, 1, 10))
    image = render_frame(
        _frame(groups=2), (-3, 3, -3, 3),
        class_names=['a', 'b', 'c'],
        group_names=['image', 'text'],
        thumbnails=thumbs,
        texts=[f'caption {i}' for i in range(30)],
        loss_curve=curve,
        figsize=(6, 3),
        dpi=50)
    assert image.mode == 'RGB' and image.size == (300, 150)
    assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 10  # something was drawn
    text_only = render_frame(_frame(), (-3, 3, -3, 3), texts=None, figsize=(6, 3), dpi=50)
    assert text_only.size == (300, 150)


def test_gif_has_one_frame_per_image_even_when_two_are_equal(tmp_path):
    images = [Image.new('RGB', (16, 8), c) for c in ((255, 0, 0), (255, 0, 0), (0, 0, 255))]
    path = write_gif(images, tmp_path / 'a.gif', fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == 3
        assert gif.info['duration'] == 200
