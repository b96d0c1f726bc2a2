"""Embedding trajectories: PCA to 2-D, chained Procrustes alignment, k-NN outlier scores, frames.

The maths (numpy only) and the drawing (matplotlib, PIL; imported when a frame is drawn) of
``tools/analysis/embedding_trajectory.py``.  The snapshots it draws are written by
:class:`mmext.engine.hooks.EmbeddingTrajectoryHook` (format: :mod:`mmext.engine.embedding_probe`).

* :func:`pca_2d`: centred PCA by SVD, each axis signed so that its largest loading is positive;
* :func:`procrustes_align`: the orthogonal map (rotation or reflection, optionally times a
  uniform scale) that best superimposes one point set on another; :func:`chain_procrustes` aligns
  every frame to the previous *aligned* frame, which removes the sign flips and rotations that
  separate two independent PCA fits of slowly moving points;
* :func:`knn_outlier_score`: ``exp(-mean distance to the k nearest neighbours)``, low = outlier;
* :func:`render_frame`, :func:`write_gif`, :func:`write_mp4`: one PNG per snapshot and the
  animation.

No vision toolbox is imported here (the lean core can draw a recommender's trajectory).
"""
import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    'PCAResult', 'pca_2d', 'ProcrustesTransform', 'procrustes_align', 'chain_procrustes',
    'knn_outlier_score', 'normalise_spread', 'read_loss_curve', 'FrameData', 'render_frame',
    'write_gif', 'write_mp4', 'ffmpeg_available'
]


# ----------------------------------------------------------------------------- PCA
class PCAResult(NamedTuple):
    """What :func:`pca_2d` returns.

    Attributes:
        points: ``(N, n_components)`` coordinates of the centred rows on the principal axes.
        components: ``(n_components, D)`` unit principal axes (rows), signed as documented.
        mean: ``(D,)`` the mean that was subtracted.
        explained_variance_ratio: ``(n_components,)`` share of the total variance per axis.
    """
    points: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray


def pca_2d(X: np.ndarray, n_components: int = 2) -> PCAResult:
    """Principal component analysis of the rows of ``X`` by SVD of the centred data.

    ``X - mean = U S V^T``; the axes are the first rows of ``V^T`` and the coordinates
    ``(X - mean) V``.  An axis is defined up to its sign, and LAPACK's choice of sign is not
    stable across inputs that differ slightly (or only in row order), so each axis is signed
    such that its loading of largest absolute value is positive (the first such loading on a
    tie).  Axes beyond the rank of the data (fewer than ``n_components`` rows or columns) are
    zero.

    Args:
        X: ``(N, D)`` points (any float dtype; computed in float64).
        n_components: Number of axes. Defaults to 2.

    Returns:
        :class:`PCAResult` with ``points`` ``(N, n_components)``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f'pca_2d expects an (N, D) array, got shape {X.shape}')
    n, d = X.shape
    if n == 0:
        raise ValueError('pca_2d: no points')
    mean = X.mean(axis=0)
    centred = X - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    rank = min(n_components, vt.shape[0])
    components = np.zeros((n_components, d))
    components[:rank] = vt[:rank]
    for row in components[:rank]:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1.0
    variance = s**2
    total = variance.sum()
    ratio = np.zeros(n_components)
    if total > 0:
        ratio[:rank] = variance[:rank] / total
    return PCAResult(centred @ components.T, components, mean, ratio)


# ----------------------------------------------------------------------------- Procrustes
@dataclass
class ProcrustesTransform:
    """``x -> scale * (x - source_mean) @ rotation + target_mean``.

    Attributes:
        rotation: ``(D, D)`` orthogonal matrix (determinant -1 for a reflection).
        scale: Uniform scale (1 unless asked for).
        source_mean: ``(D,)`` centroid of the source points.
        target_mean: ``(D,)`` centroid of the target points.
    """
    rotation: np.ndarray
    scale: float
    source_mean: np.ndarray
    target_mean: np.ndarray

    @property
    def is_reflection(self) -> bool:
        return bool(np.linalg.det(self.rotation) < 0)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map ``(M, D)`` points (e.g. other points of the source frame) with this transform."""
        points = np.asarray(points, dtype=np.float64)
        return self.scale * (points - self.source_mean) @ self.rotation + self.target_mean


def procrustes_align(source: np.ndarray,
                     target: np.ndarray,
                     scale: bool = False,
                     allow_reflection: bool = True) -> Tuple[np.ndarray, ProcrustesTransform]:
    """Superimpose ``source`` on ``target`` (row ``i`` on row ``i``) by orthogonal Procrustes.

    With centred ``A = source - mean(source)``, ``B = target - mean(target)`` and the SVD
    ``A^T B = U S V^T``, the orthogonal ``R`` minimising ``||A R - B||_F`` is ``R = U V^T``
    (Schoenemann 1966; what :func:`scipy.linalg.orthogonal_procrustes` returns).  ``R`` may be a
    reflection: two PCA fits of the same cloud can differ by an axis flip, which no rotation
    undoes.  With ``allow_reflection=False`` the best proper rotation is taken instead (Kabsch:
    the sign of the last singular direction is flipped when ``det(U V^T) < 0``).  With
    ``scale=True`` the uniform scale ``s = trace(S D) / ||A||_F^2`` (``D`` the sign flip, if any)
    is applied too; otherwise ``s = 1`` and distances are preserved.

    Args:
        source: ``(N, D)`` points to move.
        target: ``(N, D)`` points to match.
        scale: Also fit a uniform scale. Defaults to False.
        allow_reflection: Allow ``det(R) = -1``. Defaults to True.

    Returns:
        ``(aligned, transform)``: ``aligned`` ``(N, D)`` = ``transform.apply(source)``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2:
        raise ValueError('procrustes_align needs two (N, D) arrays of the same shape, got '
                         f'{source.shape} and {target.shape}')
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    a, b = source - source_mean, target - target_mean
    u, s, vt = np.linalg.svd(a.T @ b)
    signs = np.ones(len(s))
    if not allow_reflection and np.linalg.det(u @ vt) < 0:
        signs[-1] = -1.0
    rotation = (u * signs) @ vt
    factor = 1.0
    if scale:
        norm = float((a**2).sum())
        factor = float((s * signs).sum()) / norm if norm > 0 else 1.0
    transform = ProcrustesTransform(rotation, factor, source_mean, target_mean)
    return transform.apply(source), transform


def chain_procrustes(
        frames: Sequence[np.ndarray],
        scale: bool = False,
        allow_reflection: bool = True) -> Tuple[List[np.ndarray], List[ProcrustesTransform]]:
    """Align each frame to the previous *aligned* frame: ``a_0 = f_0``,
    ``a_t = procrustes_align(f_t, a_{t-1})``.

    Chaining (rather than aligning everything to one reference) follows the points as they move:
    consecutive frames are close, so the fit is well posed even when the first and last frames
    share little structure.

    Args:
        frames: ``T`` arrays ``(N, D)`` of the same points (same rows) at successive steps.
        scale, allow_reflection: see :func:`procrustes_align`.

    Returns:
        ``(aligned, transforms)``: ``T`` aligned ``(N, D)`` arrays and the ``T`` transforms
        (the first is the identity).
    """
    if not frames:
        return [], []
    first = np.asarray(frames[0], dtype=np.float64)
    d = first.shape[1]
    aligned = [first]
    transforms = [ProcrustesTransform(np.eye(d), 1.0, np.zeros(d), np.zeros(d))]
    for frame in frames[1:]:
        points, transform = procrustes_align(frame, aligned[-1], scale, allow_reflection)
        aligned.append(points)
        transforms.append(transform)
    return aligned, transforms


def normalise_spread(points: np.ndarray) -> np.ndarray:
    """``(N, D)`` points centred and divided by their RMS distance to the centroid (1 after).

    Used for display only: an embedding's overall scale drifts during training (norms grow or
    shrink), and frames at one scale keep the animation's axes fixed.
    """
    points = np.asarray(points, dtype=np.float64)
    centred = points - points.mean(axis=0)
    rms = math.sqrt(float((centred**2).sum(axis=1).mean())) if len(points) else 0.0
    return centred / rms if rms > 0 else centred


# ----------------------------------------------------------------------------- outliers
def _pairwise_distances(X: np.ndarray, max_elements: int = 1 << 22) -> np.ndarray:
    """Exact Euclidean distances ``(N, N)`` (differences, not the Gram trick), in row chunks of
    at most ``max_elements`` differences."""
    n, d = X.shape
    out = np.empty((n, n))
    rows = max(1, max_elements // max(1, n * d))
    for start in range(0, n, rows):
        diff = X[start:start + rows, None, :] - X[None, :, :]
        out[start:start + rows] = np.sqrt(np.einsum('ijk,ijk->ij', diff, diff))
    return out


def knn_outlier_score(X: np.ndarray, k: int = 10) -> np.ndarray:
    """k-nearest-neighbour outlier score of every row of ``X``; low = outlier.

    .. math::

        s_i = \\exp\\Big(-\\frac{1}{k} \\sum_{j \\in N_k(i)} \\lVert x_i - x_j \\rVert_2\\Big)

    where :math:`N_k(i)` are the ``k`` rows nearest to row ``i`` in Euclidean distance, row
    ``i`` itself excluded (by index: a duplicate of ``x_i`` is a neighbour at distance 0).
    Distances are **not scaled**: they are in the units of ``X`` (the raw embedding space), so
    scores compare points of one set, not sets of different scale; the ranking is that of the
    mean k-NN distance.  This is the feature-based score of cleanlab's ``OutOfDistribution``
    (Kuan & Mueller, 2022) without its distance scaling, written from the formula.

    Args:
        X: ``(N, D)`` points; computed in float64.
        k: Number of neighbours, ``1 <= k < N``.

    Returns:
        ``(N,)`` scores in ``(0, 1]``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f'knn_outlier_score expects an (N, D) array, got shape {X.shape}')
    n = len(X)
    if not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f'knn_outlier_score needs 1 <= k < N = {n}, got k={k!r}')
    dist = _pairwise_distances(X)
    np.fill_diagonal(dist, np.inf)
    nearest = np.partition(dist, k - 1, axis=1)[:, :k]
    return np.exp(-nearest.mean(axis=1))


# ----------------------------------------------------------------------------- loss curve
def read_loss_curve(work_dir: Union[str, Path], key: str = 'loss') -> Tuple[np.ndarray, np.ndarray]:
    """Training ``key`` against the iteration from every ``<work_dir>/*/vis_data/scalars.json``.

    mmengine's ``LoggerHook`` writes one JSON line per logged iteration with ``step`` = the
    iteration count.  Several run directories (a resumed run) are merged, a later run's value
    winning at a step both logged.  ``work_dir`` may also be a run directory or the file itself.

    Returns:
        ``(steps, values)``, sorted by step; both empty when nothing was found.
    """
    work_dir = Path(work_dir)
    if work_dir.is_file():
        files = [work_dir]
    else:
        files = sorted(work_dir.glob('*/vis_data/scalars.json')) + sorted(
            work_dir.glob('vis_data/scalars.json'))
    curve: Dict[int, float] = {}
    for path in files:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by an interrupted run
                if key in record and 'step' in record:
                    curve[int(record['step'])] = float(record[key])
    steps = np.array(sorted(curve), dtype=np.int64)
    return steps, np.array([curve[s] for s in steps], dtype=np.float64)


# ----------------------------------------------------------------------------- drawing
#: marker per embedding kind (image, text, ...) when several are drawn together
MARKERS = ('o', '^', 's', 'D', 'v', 'P')


@dataclass
class FrameData:
    """Everything one frame shows.

    Attributes:
        points: ``(M, 2)`` aligned 2-D coordinates.
        labels: ``(M,)`` class index per point, -1 = unlabelled.
        groups: ``(M,)`` index into ``group_names`` (which embedding a point is).
        samples: ``(M,)`` probe sample of each point (index into ``thumbnails``/``texts``).
        scores: ``(M,)`` outlier scores (:func:`knn_outlier_score`).
        worst: indices (into the M points) of the lowest scores, lowest first.
        iteration, epoch: When the snapshot was taken (epochs trained, maybe fractional).
        title: Figure title.
    """
    points: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    samples: np.ndarray
    scores: np.ndarray
    worst: np.ndarray
    iteration: int
    epoch: float
    title: str = ''


def _label_colours(num_classes: int):
    import matplotlib
    name = 'tab10' if num_classes <= 10 else 'tab20' if num_classes <= 20 else 'viridis'
    cmap = matplotlib.colormaps[name]
    if name == 'viridis':
        return [cmap(i / max(1, num_classes - 1)) for i in range(num_classes)]
    return [cmap(i) for i in range(num_classes)]


def _thumbnail_image(thumb: np.ndarray) -> Tuple[np.ndarray, Optional[str]]:
    """``(h, w, C)`` uint8 -> what ``imshow`` takes, and its colour map."""
    if thumb.ndim == 3 and thumb.shape[-1] == 1:
        return thumb[..., 0], 'gray'
    return thumb, None


def render_frame(frame: FrameData,
                 limits: Tuple[float, float, float, float],
                 class_names: Sequence[str] = (),
                 group_names: Sequence[str] = ('embedding', ),
                 thumbnails: Optional[np.ndarray] = None,
                 texts: Optional[Sequence[str]] = None,
                 thumbnail_groups: Sequence[int] = (0, ),
                 loss_curve: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                 loss_key: str = 'loss',
                 figsize: Tuple[float, float] = (10.0, 5.2),
                 dpi: int = 80):
    """Draw one frame: the aligned points coloured by label (legend), the loss curve up to the
    frame's iteration beside them, and the lowest outlier scores ringed and numbered, each shown
    as its thumbnail (or its text/id when there is no image).

    Args:
        frame: The frame's points and scores.
        limits: ``(xmin, xmax, ymin, ymax)`` of the scatter, the same for every frame; points
            outside are drawn on the border (clipped), so far outliers stay visible.
        class_names: Name per label index (legend); missing names read ``class <i>``.
        group_names: Name per embedding group (marker legend when there are several).
        thumbnails: ``(N, h, w, C)`` uint8 per probe sample, or None.
        texts: Text per probe sample (caption, item id...), or None.
        thumbnail_groups: Groups whose points are shown by their sample's thumbnail (the
            others, e.g. ITC's captions, by their text).
        loss_curve: ``(steps, values)`` of the whole run (:func:`read_loss_curve`) or None.
        loss_key: Name of the curve's scalar (y label).
        figsize, dpi: Figure size in inches and resolution.

    Returns:
        ``PIL.Image.Image`` (RGB).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from PIL import Image

    fig = Figure(figsize=figsize, dpi=dpi)
    canvas = FigureCanvasAgg(fig)  # no pyplot: no global figure state, no display needed
    grid = fig.add_gridspec(
        2, 2, width_ratios=(1.25, 1.0), height_ratios=(1.0, 1.1), wspace=0.18, hspace=0.45)
    ax = fig.add_subplot(grid[:, 0])
    points = np.clip(frame.points, [limits[0], limits[2]], [limits[1], limits[3]])
    labels = np.asarray(frame.labels)
    known = sorted(int(v) for v in np.unique(labels) if v >= 0)
    num_classes = max([len(class_names)] + [v + 1 for v in known])
    colours = _label_colours(max(1, num_classes))
    handles = []
    for g, group in enumerate(group_names):
        marker = MARKERS[g % len(MARKERS)]
        in_group = frame.groups == g
        for value in ([-1] if (labels[in_group] < 0).any() else []) + known:
            mask = in_group & (labels == value)
            if not mask.any():
                continue
            colour = (0.45, 0.45, 0.45, 1.0) if value < 0 else colours[value]
            ax.scatter(
                points[mask, 0],
                points[mask, 1],
                s=12 if marker == 'o' else 16,
                c=[colour],
                marker=marker,
                alpha=0.75,
                linewidths=0)
    if known:
        for value in known:
            name = class_names[value] if value < len(class_names) else f'class {value}'
            handles.append(
                Line2D([], [], marker='o', ls='', color=colours[value], label=str(name), ms=5))
    if len(group_names) > 1:
        for g, group in enumerate(group_names):
            handles.append(
                Line2D([], [],
                       marker=MARKERS[g % len(MARKERS)],
                       ls='',
                       color='0.3',
                       label=str(group),
                       ms=5))
    # the worst outliers: ringed and numbered
    for rank, i in enumerate(frame.worst, 1):
        x, y = points[i]
        ax.scatter([x], [y], s=70, facecolors='none', edgecolors='black', linewidths=1.2)
        ax.annotate(
            str(rank), (x, y),
            xytext=(4, 4),
            textcoords='offset points',
            fontsize=8,
            fontweight='bold')
    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(limits[2], limits[3])
    ax.set_aspect('equal', adjustable='box')
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(frame.title, fontsize=10)
    if handles:
        ax.legend(
            handles=handles,
            fontsize=7,
            loc='upper left',
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
            handletextpad=0.2,
            borderaxespad=0.2)

    # the loss curve up to this frame
    lax = fig.add_subplot(grid[0, 1])
    if loss_curve is not None and len(loss_curve[0]):
        steps, values = loss_curve
        lax.plot(steps, values, color='0.85', lw=1)
        seen = steps <= frame.iteration
        lax.plot(steps[seen], values[seen], color='tab:red', lw=1.3)
        lax.axvline(frame.iteration, color='0.3', lw=0.8, ls='--')
        lax.set_xlim(0, max(int(steps[-1]), frame.iteration, 1))
    else:
        lax.text(
            0.5,
            0.5,
            'no scalars.json',
            ha='center',
            va='center',
            transform=lax.transAxes,
            fontsize=8)
    lax.set_xlabel('iteration', fontsize=8, labelpad=1)
    lax.set_ylabel(loss_key, fontsize=8)
    lax.tick_params(labelsize=7)
    lax.set_title(f'iteration {frame.iteration}, epoch {frame.epoch:.3g}', fontsize=9)

    # the worst outliers: thumbnails or texts
    cell = grid[1, 1]
    worst = list(frame.worst)
    if worst:
        cols = min(len(worst), 4)
        rows = int(math.ceil(len(worst) / cols))
        sub = cell.subgridspec(rows, cols, wspace=0.15, hspace=0.7)
        for rank, i in enumerate(worst, 1):
            tax = fig.add_subplot(sub[(rank - 1) // cols, (rank - 1) % cols])
            tax.set_xticks([])
            tax.set_yticks([])
            sample = int(frame.samples[i])
            value = int(labels[i])
            label = (
                class_names[value] if 0 <= value < len(class_names) else
                (f'class {value}' if value >= 0 else ''))
            text = str(texts[sample]) if texts is not None else f'#{sample}'
            is_image = thumbnails is not None and int(frame.groups[i]) in thumbnail_groups
            if is_image:
                image, cmap = _thumbnail_image(thumbnails[sample])
                tax.imshow(image, cmap=cmap, interpolation='nearest')
            else:
                wrapped = '\n'.join(text[j:j + 16] for j in range(0, min(len(text), 48), 16))
                tax.text(
                    0.5,
                    0.5,
                    wrapped,
                    ha='center',
                    va='center',
                    fontsize=6,
                    transform=tax.transAxes)
            tax.set_title(f'{rank}: {label} s={frame.scores[i]:.2g}', fontsize=6.5, pad=2)
        fig.text(
            0.57 + 0.43 * 0.5,
            0.49,
            f'lowest {len(worst)} k-NN outlier scores',
            ha='center',
            fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.92, bottom=0.06)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return Image.fromarray(rgba[..., :3].copy())


# ----------------------------------------------------------------------------- animation
def write_gif(images: Sequence,
              path: Union[str, Path],
              fps: float = 4.0,
              hold_last: float = 1.5) -> Path:
    """An animated GIF of PIL images, one frame each (``fps`` frames per second, the last one
    shown ``hold_last`` seconds longer), looping.

    Every frame is quantised to its own 256-colour palette.  PIL merges a frame identical to the
    previous one into it; to keep exactly ``len(images)`` frames, such a frame gets one corner
    pixel changed (trajectory frames differ anyway: their titles name the iteration).
    """
    from PIL import Image
    if not images:
        raise ValueError('write_gif: no frames')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = []
    for im in images:
        frame = im.convert('RGB').quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        if frames and np.array_equal(np.asarray(frame), np.asarray(frames[-1])) and \
                frame.getpalette()[:768] == frames[-1].getpalette()[:768]:
            pixels = np.asarray(frame).copy()
            pixels[0, 0] = 1 if pixels[0, 0] == 0 else 0
            patched = Image.fromarray(pixels, mode='P')
            patched.putpalette(frame.getpalette())
            frame = patched
        frames.append(frame)
    duration = [int(round(1000 / fps))] * len(frames)
    duration[-1] += int(round(1000 * hold_last))
    frames[0].save(
        path,
        save_all=True,
        append_images=frames[1:],
        duration=duration,
        loop=0,
        optimize=False,
        disposal=1)
    return path


def ffmpeg_available() -> Optional[str]:
    """The ffmpeg executable matplotlib's writer would use, or None."""
    try:
        from matplotlib import animation, rcParams
    except ImportError:
        return None
    if not animation.writers.is_available('ffmpeg'):
        return None
    return shutil.which(rcParams['animation.ffmpeg_path'])


def write_mp4(images: Sequence, path: Union[str, Path], fps: float = 4.0) -> Path:
    """An H.264 MP4 of PIL images through ffmpeg (raises ``RuntimeError`` without one)."""
    exe = ffmpeg_available()
    if exe is None:
        raise RuntimeError('write_mp4: no ffmpeg writer (matplotlib.animation.writers has no '
                           "'ffmpeg'); install ffmpeg or write the GIF only")
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        for i, im in enumerate(images):
            im.convert('RGB').save(f'{tmp}/{i:05d}.png')
        cmd = [
            exe, '-y', '-loglevel', 'error', '-framerate',
            str(fps), '-i', f'{tmp}/%05d.png', '-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2', '-pix_fmt',
            'yuv420p', '-c:v', 'libx264',
            str(path)
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'ffmpeg failed ({proc.returncode}): {proc.stderr[-2000:]}')
    return path
