"""mmext's semantic segmentation visualizer: ``gt_sem_seg`` / ``pred_sem_seg`` as colour overlays
on the image, with a legend of the classes present, drawn with mmengine's Visualizer.

Samples are read by duck typing (a ``PixelData`` whose ``data`` is a (1, H, W) label map), so
this module imports without mmseg.
"""
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from mmext.registry import VISUALIZERS

from .panel_visualizer import PanelVisualizer, text_colour_on, to_numpy

__all__ = ['SegVisualizer', 'label_map']


def label_map(sem_seg: Any) -> np.ndarray:
    """An ``(H, W)`` int64 label map from a ``PixelData`` (``data`` (1, H, W)), a tensor or an
    array of shape (H, W) or (1, H, W)."""
    data = to_numpy(getattr(sem_seg, 'data', sem_seg))
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ValueError(f'a semantic label map must be (H, W) or (1, H, W), got {data.shape}')
    return data.astype(np.int64)


def class_boundaries(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


@VISUALIZERS.register_module()
class SegVisualizer(PanelVisualizer):
    """Draw semantic segmentation ground truth and prediction as colour overlays.

    Every pixel of class ``k`` (except ``ignore_index``) is blended with the class colour:
    ``(1 - alpha) * image + alpha * palette[k]``.  Side by side (default): ground truth left,
    prediction right.  Overlaid: the prediction's colours with the ground truth's class
    boundaries in white.  Below the drawing, a legend names the classes present in either map,
    each on its colour.

    Args:
        alpha: Opacity of the class colours.
        ignore_index: Label left undrawn (mmseg's 255: padding and "don't care").
        legend: Draw the legend strip below.
        Others: see :class:`PanelVisualizer` (``layout``, ``palette``, ``panel_gap``,
            ``font_size``, ``vis_backends``, ``save_dir``, ``name``).
    """

    def __init__(
        self,
        name: str = 'visualizer',
        image: Optional[np.ndarray] = None,
        vis_backends: Optional[Sequence[dict]] = None,
        save_dir: Optional[str] = None,
        layout: str = 'side_by_side',
        alpha: float = 0.5,
        ignore_index: int = 255,
        legend: bool = True,
        palette: Optional[Sequence[Any]] = None,
        panel_gap: int = 4,
        font_size: Optional[float] = None,
        fig_save_cfg: dict = dict(frameon=False),
        fig_show_cfg: dict = dict(frameon=False)
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'SegVisualizer: alpha must be in [0, 1], got {alpha}')
        self.alpha = float(alpha)
        self.ignore_index = int(ignore_index)
        self.legend = bool(legend)
        super().__init__(
            name=name,
            image=image,
            vis_backends=vis_backends,
            save_dir=save_dir,
            layout=layout,
            palette=palette,
            panel_gap=panel_gap,
            font_size=font_size,
            fig_save_cfg=fig_save_cfg,
            fig_show_cfg=fig_show_cfg)

    def _ground_truth(self, data_sample: Any) -> Any:
        return getattr(data_sample, 'gt_sem_seg', None)

    def _prediction(self, data_sample: Any) -> Any:
        return getattr(data_sample, 'pred_sem_seg', None)

    def _draw_gt(self, image: np.ndarray, gt: Any, overlay: bool = False) -> np.ndarray:
        return self.draw_sem_seg(image, gt)

    def _draw_pred(self, image: np.ndarray, pred: Any, **kwargs: Any) -> np.ndarray:
        return self.draw_sem_seg(image, pred)

    def _draw_overlay(self, image: np.ndarray, gt: Any, pred: Any, **kwargs: Any) -> np.ndarray:
        if pred is None:
            return image.copy() if gt is None else self.draw_sem_seg(image, gt)
        drawn = self.draw_sem_seg(image, pred)
        if gt is None:
            return drawn
        edges = class_boundaries(self._checked(label_map(gt), image))
        self.set_image(drawn)
        self.draw_binary_masks(edges[None], colors=[(255, 255, 255)], alphas=[1.0])
        return self.render(drawn)

    def _checked(self, labels: np.ndarray, image: np.ndarray) -> np.ndarray:
        if labels.shape != image.shape[:2]:
            raise ValueError(f'the label map is {labels.shape}, the image {image.shape[:2]}: the '
                             'map must be in the coordinates of the image drawn on')
        return labels

    def present_labels(self, *sem_segs: Any) -> List[int]:
        """Sorted labels found in any of ``sem_segs`` (``None`` skipped), ``ignore_index``
        excluded."""
        found = set()
        for seg in sem_segs:
            if seg is not None:
                found.update(int(v) for v in np.unique(label_map(seg)))
        found.discard(self.ignore_index)
        return sorted(found)

    def draw_sem_seg(self,
                     image: np.ndarray,
                     sem_seg: Any,
                     alpha: Optional[float] = None) -> np.ndarray:
        """Blend each class's pixels with its colour.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            sem_seg: Label map, (H, W) or (1, H, W) (a ``PixelData``, tensor or array).
            alpha: Opacity; ``None`` takes the visualizer's.

        Returns:
            ``(H, W, 3)`` uint8 RGB.
        """
        labels = self._checked(label_map(sem_seg), image)
        classes = [k for k in np.unique(labels) if k != self.ignore_index]
        self.set_image(image)
        if classes:
            style = self.style
            alpha = self.alpha if alpha is None else float(alpha)
            self.draw_binary_masks(
                np.stack([labels == k for k in classes]),
                colors=[style.colour(int(k)) for k in classes],
                alphas=[alpha] * len(classes))
        return self.render(image)

    def _finish(self, drawn: np.ndarray, gt: Any, pred: Any) -> np.ndarray:
        labels = self.present_labels(gt, pred) if self.legend else []
        if not labels:
            return drawn
        # text as tall as on one panel of this height
        px = self.text_px(drawn.shape[0], drawn.shape[0])
        return np.concatenate([drawn, self.draw_legend(labels, drawn.shape[1], px)], axis=0)

    def draw_legend(self, labels: Sequence[int], width: int, text_px: float = 8.0) -> np.ndarray:
        """A white strip ``width`` pixels wide naming ``labels``, each on its class colour, in
        rows that wrap at the strip's width; text ``text_px`` pixels tall (``font_size``, when
        set, wins).

        Returns:
            ``(H_legend, width, 3)`` uint8 RGB.
        """
        style = self.style
        px = text_px if self.font_size is None else self.font_size * float(self.dpi) / 72.0
        char_w, row_h, pad = 0.62 * px, 1.7 * px, 0.5 * px
        entries: List[Tuple[str, float, float]] = []  # (name, x, y)
        x, y = pad, pad
        for label in labels:
            name = style.name(label)
            entry_w = char_w * len(name) + 1.5 * px
            if x > pad and x + entry_w > width:
                x, y = pad, y + row_h
            entries.append((name, x, y))
            x += entry_w
        height = int(np.ceil(y + row_h))
        strip = np.full((height, width, 3), 255, np.uint8)
        self.set_image(strip)
        colours = [style.colour(label) for label in labels]
        self.draw_texts([e[0] for e in entries],
                        np.array([[e[1] + 0.3 * px, e[2] + 0.3 * px] for e in entries]),
                        font_sizes=self.px_to_points(px),
                        colors=[text_colour_on(c) for c in colours],
                        vertical_alignments='top',
                        bboxes=[
                            dict(
                                facecolor=tuple(v / 255 for v in c), pad=0.3 * px, edgecolor='none')
                            for c in colours
                        ])
        return self.render(strip)
