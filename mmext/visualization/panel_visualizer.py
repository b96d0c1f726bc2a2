"""What mmext's detection and segmentation visualizers share: ground truth and prediction drawn
side by side or overlaid, class names and colours from ``dataset_meta``, and the way out (a
window, an image file, or the visualization backends).

The drawing itself uses mmengine's :class:`~mmengine.visualization.Visualizer` primitives
(``set_image``, ``draw_bboxes``, ``draw_texts``, ``draw_binary_masks``, ``get_image``), so a
drawing looks the same as any other OpenMMLab one, and the backends (``LocalVisBackend``,
``TensorboardVisBackend``, ...) come from the config's ``visualizer.vis_backends``.
"""
import os
import os.path as osp
import warnings
from typing import Any, List, Optional, Sequence

import cv2
import numpy as np
from mmengine.dist import master_only
from mmengine.visualization import Visualizer

from .palette import RGB, ClassStyle, to_rgb

__all__ = ['PanelVisualizer', 'to_numpy', 'write_rgb']


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array from a tensor, an array, or a box/mask structure of a toolbox (duck typed:
    mmdet's ``HorizontalBoxes`` keep theirs in ``.tensor``, ``BitmapMasks`` convert with
    ``.to_ndarray()``), so that no toolbox needs importing here."""
    if hasattr(value, 'to_ndarray'):
        value = value.to_ndarray()
    value = getattr(value, 'tensor', value)
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def write_rgb(path: str, image: np.ndarray) -> str:
    """Write an ``(H, W, 3)`` uint8 RGB image to ``path`` (any format OpenCV writes), creating
    its folder; raise ``OSError`` when nothing could be written."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(path, np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f'could not write {path} (is its extension an image format?)')
    return path


def as_rgb_image(image: Any) -> np.ndarray:
    """``(H, W, 3)`` uint8 from ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` (values kept, clipped
    to 0-255)."""
    image = to_numpy(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f'expected an (H, W, 3) RGB image, got shape {image.shape}')
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def text_colour_on(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background`` (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


class PanelVisualizer(Visualizer):
    """Base of :class:`DetVisualizer` and :class:`SegVisualizer` (not registered).

    A subclass says where a data sample keeps its ground truth and its prediction and how to draw
    each on an image; this class lays them out and sends the result out.

    Args:
        name: Instance name (mmengine's ``ManagerMixin``; the Runner passes its experiment name).
        image: Optional image to start with, ``(H, W, 3)`` uint8 RGB.
        vis_backends: Backend configs, e.g. ``[dict(type='LocalVisBackend'),
            dict(type='TensorboardVisBackend')]``.
        save_dir: Root folder of the backends (the Runner passes its log dir).
        layout: ``'side_by_side'`` (ground truth left, prediction right, ``panel_gap`` white
            pixels between them) or ``'overlay'`` (both on one image; the subclass says how).
        palette: RGB colour per class; ``None`` takes ``dataset_meta['palette']``, then a default
            palette.
        panel_gap: Width in pixels of the white bar between side-by-side panels.
        font_size: Text size in points; ``None`` scales it with the image.
        fig_save_cfg: Keyword arguments of the figure drawn into (mmengine's).
        fig_show_cfg: Keyword arguments of the figure of the ``show`` window (mmengine's).
    """

    LAYOUTS = ('side_by_side', 'overlay')

    def __init__(
        self,
        name: str = 'visualizer',
        image: Optional[np.ndarray] = None,
        vis_backends: Optional[Sequence[dict]] = None,
        save_dir: Optional[str] = None,
        layout: str = 'side_by_side',
        palette: Optional[Sequence[Any]] = None,
        panel_gap: int = 4,
        font_size: Optional[float] = None,
        fig_save_cfg: dict = dict(frameon=False),
        fig_show_cfg: dict = dict(frameon=False)
    ) -> None:
        if layout not in self.LAYOUTS:
            raise ValueError(f'{type(self).__name__}: layout must be one of {self.LAYOUTS}, '
                             f'got {layout!r}')
        if panel_gap < 0:
            raise ValueError(f'{type(self).__name__}: panel_gap must be >= 0, got {panel_gap}')
        self.layout = layout
        self.palette = None if palette is None else [to_rgb(c) for c in palette]
        self.panel_gap = int(panel_gap)
        self.font_size = font_size
        super().__init__(
            name=name,
            image=image,
            vis_backends=list(vis_backends) if vis_backends is not None else None,
            save_dir=save_dir,
            fig_save_cfg=fig_save_cfg,
            fig_show_cfg=fig_show_cfg)

    # ------------------------------------------------------------------ what subclasses provide
    def _ground_truth(self, data_sample: Any) -> Any:
        """The sample's ground truth element, or ``None``."""
        raise NotImplementedError

    def _prediction(self, data_sample: Any) -> Any:
        """The sample's prediction element, or ``None``."""
        raise NotImplementedError

    def _draw_gt(self, image: np.ndarray, gt: Any, overlay: bool = False) -> np.ndarray:
        """``image`` (H, W, 3) with the ground truth drawn on it; ``overlay``: a prediction will
        be drawn on top."""
        raise NotImplementedError

    def _draw_pred(self, image: np.ndarray, pred: Any, **kwargs: Any) -> np.ndarray:
        """``image`` (H, W, 3) with the prediction drawn on it."""
        raise NotImplementedError

    def _draw_overlay(self, image: np.ndarray, gt: Any, pred: Any, **kwargs: Any) -> np.ndarray:
        """Both on one image: the ground truth first, the prediction over it."""
        if gt is not None:
            image = self._draw_gt(image, gt, overlay=pred is not None)
        if pred is not None:
            image = self._draw_pred(image, pred, **kwargs)
        return image

    def _finish(self, drawn: np.ndarray, gt: Any, pred: Any) -> np.ndarray:
        """Last touch on the laid-out panels (a legend, for instance)."""
        return drawn

    # ------------------------------------------------------------------ shared
    @property
    def style(self) -> ClassStyle:
        """Class names and colours: ``palette`` if given, else ``dataset_meta``'s."""
        return ClassStyle(self.dataset_meta, self.palette)

    def text_px(self, height: int, width: int) -> float:
        """Default text height in pixels for an ``(height, width)`` image: 8 px on the small
        images of our demos, growing with the image (13 px at 640 x 480)."""
        return max(8.0, float(np.sqrt(height * width)) / 40)

    def px_to_points(self, px: float) -> float:
        """Points (matplotlib's text unit) for ``px`` pixels of the drawing figure."""
        return px * 72.0 / float(self.dpi)

    def render(self, image: np.ndarray) -> np.ndarray:
        """The figure drawn so far, as ``(H, W, 3)`` uint8 RGB of ``image``'s size."""
        drawn = self.get_image()[:image.shape[0], :image.shape[1]]
        if drawn.shape[:2] != image.shape[:2]:  # a canvas a pixel short: keep the image there
            full = image.copy()
            full[:drawn.shape[0], :drawn.shape[1]] = drawn
            drawn = full
        return np.ascontiguousarray(drawn)

    def hstack(self, panels: Sequence[np.ndarray]) -> np.ndarray:
        """``panels`` (each (H, W_i, 3)) left to right with ``panel_gap`` white columns between:
        (H, sum W_i + gaps, 3)."""
        gap = np.full((panels[0].shape[0], self.panel_gap, 3), 255, np.uint8)
        parts: List[np.ndarray] = []
        for i, panel in enumerate(panels):
            if i and self.panel_gap:
                parts.append(gap)
            parts.append(panel)
        return np.concatenate(parts, axis=1)

    def draw_datasample(self,
                        image: np.ndarray,
                        data_sample: Any = None,
                        draw_gt: bool = True,
                        draw_pred: bool = True,
                        **kwargs: Any) -> np.ndarray:
        """Draw a data sample's ground truth and prediction on ``image``; nothing is sent out.

        Args:
            image: ``(H, W, 3)`` uint8 RGB, the image the sample's coordinates refer to.
            data_sample: A data sample (``DetDataSample``, ``SegDataSample`` or any
                :class:`~mmengine.structures.BaseDataElement` with the same fields).
            draw_gt: Draw its ground truth, if it has one.
            draw_pred: Draw its prediction, if it has one.
            kwargs: Passed to the subclass's prediction drawing (``pred_score_thr``).

        Returns:
            ``(H, W, 3)`` for one panel or the overlay; ``(H, 2 W + panel_gap, 3)`` side by side
            (ground truth left); taller when the subclass adds a legend.
        """
        image = as_rgb_image(image)
        gt = self._ground_truth(data_sample) if draw_gt and data_sample is not None else None
        pred = self._prediction(data_sample) if draw_pred and data_sample is not None else None
        with warnings.catch_warnings():
            # boxes touching the border and labels at the edge are fine
            warnings.filterwarnings('ignore', message=r'Warning: The .* is out of bounds')
            if self.layout == 'overlay':
                drawn = self._draw_overlay(image, gt, pred, **kwargs)
            else:
                panels = []
                if gt is not None:
                    panels.append(self._draw_gt(image, gt))
                if pred is not None:
                    panels.append(self._draw_pred(image, pred, **kwargs))
                drawn = self.hstack(panels) if panels else image.copy()
            return self._finish(drawn, gt, pred)

    @master_only
    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Any = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0.,
                       out_file: Optional[str] = None,
                       step: int = 0,
                       **kwargs: Any) -> np.ndarray:
        """Draw a data sample (:meth:`draw_datasample`) and send the drawing out.

        It is shown in a window when ``show``; written to ``out_file`` when given, otherwise
        added to every visualization backend as image ``name`` at ``step``.

        Args:
            name: Image identifier for the backends (and the window title).
            image: ``(H, W, 3)`` uint8 RGB.
            data_sample: See :meth:`draw_datasample`.
            draw_gt: Draw the ground truth.
            draw_pred: Draw the prediction.
            show: Show the drawing in a window (needs a display).
            wait_time: Seconds the window stays; 0 waits for a key press.
            out_file: Image file to write (its folder is created).
            step: Step of the backends' record (the training iteration during validation).
            kwargs: Passed to :meth:`draw_datasample`.

        Returns:
            The drawing, (H', W', 3) uint8 RGB.
        """
        drawn = self.draw_datasample(image, data_sample, draw_gt, draw_pred, **kwargs)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            write_rgb(out_file, drawn)
        else:
            self.add_image(name, drawn, step)
        return drawn
