"""mmext's detection visualizer: boxes, class names, scores and instance masks of a data sample's
``gt_instances`` and ``pred_instances``, drawn with mmengine's Visualizer.

Samples are read by duck typing (``bboxes``, ``labels``, ``scores``, ``masks`` fields of an
mmengine ``InstanceData``; mmdet's box and mask structures through ``.tensor`` and
``.to_ndarray()``), so this module imports without mmdet.
"""
from typing import Any, Dict, Optional, Sequence

import numpy as np

from mmext.registry import VISUALIZERS

from .palette import to_rgb
from .panel_visualizer import PanelVisualizer, text_colour_on, to_numpy

__all__ = ['DetVisualizer', 'instance_arrays']


def instance_arrays(instances: Any) -> Dict[str, Optional[np.ndarray]]:
    """The fields of an ``InstanceData`` as numpy arrays.

    Returns:
        ``bboxes`` (N, 4) float x1y1x2y2, ``labels`` (N,) int64, ``scores`` (N,) float or
        ``None``, ``masks`` (N, H, W) bool or ``None``; N = 0 when there are no boxes.
    """
    bboxes = getattr(instances, 'bboxes', None)
    bboxes = (
        np.zeros((0, 4), np.float32)
        if bboxes is None else to_numpy(bboxes).astype(np.float32).reshape(-1, 4))
    labels = getattr(instances, 'labels', None)
    labels = (
        np.zeros(len(bboxes), np.int64)
        if labels is None else to_numpy(labels).astype(np.int64).reshape(-1))
    scores = getattr(instances, 'scores', None)
    scores = None if scores is None else to_numpy(scores).astype(np.float32).reshape(-1)
    masks = getattr(instances, 'masks', None)
    masks = None if masks is None else to_numpy(masks).astype(bool)
    if len(labels) != len(bboxes) or (scores is not None and len(scores) != len(bboxes)):
        raise ValueError(f'instances disagree in length: {len(bboxes)} boxes, {len(labels)} '
                         f'labels, {None if scores is None else len(scores)} scores')
    return dict(bboxes=bboxes, labels=labels, scores=scores, masks=masks)


@VISUALIZERS.register_module()
class DetVisualizer(PanelVisualizer):
    """Draw detection ground truth and predictions (boxes, labels, scores, masks).

    Side by side (default): the ground truth on the left, predictions above the score threshold
    on the right, each box in its class colour with a ``"name"`` / ``"name 0.87"`` label at its
    top-left corner.  Overlaid: both on one image, ground-truth boxes dashed and unlabelled,
    predictions solid and labelled.  Instance masks (``masks`` of either) are filled in the class
    colour.

    Args:
        score_thr: Predictions scoring at or below this are not drawn (``pred_score_thr`` of
            :meth:`add_datasample` overrides it per call).
        line_width: Box line width in points (mmengine caps it at a quarter of the font size).
        bbox_alpha: Opacity of the box lines.
        mask_alpha: Opacity of the mask fill.
        text_colour: Label text colour; ``None`` picks black or white against the class colour.
        Others: see :class:`PanelVisualizer` (``layout``, ``palette``, ``panel_gap``,
            ``font_size``, ``vis_backends``, ``save_dir``, ``name``).

    Example:
        >>> vis = DetVisualizer(vis_backends=[dict(type='LocalVisBackend')], save_dir='out')
        >>> vis.dataset_meta = dict(classes=('circle', 'square'), palette=[(220, 20, 60),
        ...                         (0, 130, 200)])
        >>> vis.add_datasample('000001', image, data_sample, out_file='out/000001.png')
    """

    def __init__(
        self,
        name: str = 'visualizer',
        image: Optional[np.ndarray] = None,
        vis_backends: Optional[Sequence[dict]] = None,
        save_dir: Optional[str] = None,
        layout: str = 'side_by_side',
        score_thr: float = 0.3,
        palette: Optional[Sequence[Any]] = None,
        line_width: float = 2.0,
        bbox_alpha: float = 0.9,
        mask_alpha: float = 0.5,
        text_colour: Optional[Any] = None,
        panel_gap: int = 4,
        font_size: Optional[float] = None,
        fig_save_cfg: dict = dict(frameon=False),
        fig_show_cfg: dict = dict(frameon=False)
    ) -> None:
        for key, value in dict(bbox_alpha=bbox_alpha, mask_alpha=mask_alpha).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'DetVisualizer: {key} must be in [0, 1], got {value}')
        self.score_thr = float(score_thr)
        self.line_width = float(line_width)
        self.bbox_alpha = float(bbox_alpha)
        self.mask_alpha = float(mask_alpha)
        self.text_colour = None if text_colour is None else to_rgb(text_colour)
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
        return getattr(data_sample, 'gt_instances', None)

    def _prediction(self, data_sample: Any) -> Any:
        return getattr(data_sample, 'pred_instances', None)

    def _draw_gt(self, image: np.ndarray, gt: Any, overlay: bool = False) -> np.ndarray:
        # over predictions the ground truth is dashed and unlabelled, so the two read apart
        return self.draw_instances(
            image, gt, line_style='--' if overlay else '-', with_labels=not overlay)

    def _draw_pred(self,
                   image: np.ndarray,
                   pred: Any,
                   pred_score_thr: Optional[float] = None,
                   **kwargs: Any) -> np.ndarray:
        thr = self.score_thr if pred_score_thr is None else float(pred_score_thr)
        return self.draw_instances(image, pred, score_thr=thr)

    def draw_instances(self,
                       image: np.ndarray,
                       instances: Any,
                       score_thr: Optional[float] = None,
                       line_style: str = '-',
                       with_labels: bool = True) -> np.ndarray:
        """Draw ``instances`` on ``image``.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            instances: ``InstanceData`` with ``bboxes`` (N, 4) x1y1x2y2 in ``image``'s pixels,
                ``labels`` (N,), optionally ``scores`` (N,) and ``masks`` (N, H, W).
            score_thr: Keep instances scoring above it (instances without scores are all kept).
            line_style: matplotlib line style of the boxes.
            with_labels: Write ``"name"`` (``"name score"`` with scores) at each box.

        Returns:
            ``(H, W, 3)`` uint8 RGB.
        """
        arrays = instance_arrays(instances)
        keep = np.ones(len(arrays['bboxes']), bool)
        if score_thr is not None and arrays['scores'] is not None:
            keep = arrays['scores'] > score_thr
        self.set_image(image)
        h, w = image.shape[:2]
        style = self.style
        labels = arrays['labels'][keep]
        colours = [style.colour(int(label)) for label in labels]
        if arrays['masks'] is not None and keep.any():
            masks = arrays['masks'][keep]
            if masks.shape[1:] != (h, w):
                raise ValueError(f'instance masks are {masks.shape[1:]}, the image {(h, w)}: '
                                 'masks must be in the coordinates of the image drawn on')
            self.draw_binary_masks(masks, colors=colours, alphas=[self.mask_alpha] * len(masks))
        if keep.any():
            boxes = arrays['bboxes'][keep].copy()
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)  # a box leaving the image ends at its edge
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
            self.draw_bboxes(
                boxes,
                edge_colors=colours,
                line_styles=line_style,
                line_widths=self.line_width,
                alpha=self.bbox_alpha)
            if with_labels:
                scores = arrays['scores'][keep] if arrays['scores'] is not None else None
                self._draw_labels(boxes, labels, scores, colours, (h, w))
        return self.render(image)

    def _draw_labels(self, boxes: np.ndarray, labels: np.ndarray, scores: Optional[np.ndarray],
                     colours: Sequence[tuple], image_hw: tuple) -> None:
        """``"name score"`` on a box of the class colour at the top-left corner of each box."""
        h, w = image_hw
        style = self.style
        texts = [
            style.name(int(label)) + ('' if scores is None else f' {scores[i]:.2f}')
            for i, label in enumerate(labels)
        ]
        if self.font_size is not None:
            sizes = [float(self.font_size)] * len(texts)
        else:  # a quarter of the box's size, between 8 px and the image's text size
            side = np.sqrt(
                np.maximum(boxes[:, 2] - boxes[:, 0], 1) * np.maximum(boxes[:, 3] - boxes[:, 1], 1))
            px = np.clip(0.25 * side, 8.0, self.text_px(h, w))
            sizes = [self.px_to_points(float(p)) for p in px]
        # a label that would run past the right edge ends at its box's right edge instead
        text_px = np.array([s / 72.0 * float(self.dpi) for s in sizes])
        too_wide = boxes[:, 0] + 0.62 * text_px * np.array([len(t) for t in texts]) > w
        x = np.where(too_wide, boxes[:, 2], boxes[:, 0]).clip(0, w - 1)
        positions = np.stack([x, boxes[:, 1].clip(0, h - 1)], axis=1)
        text_colours = [
            text_colour_on(c) if self.text_colour is None else self.text_colour for c in colours
        ]
        self.draw_texts(
            texts,
            positions,
            font_sizes=sizes,
            colors=text_colours,
            vertical_alignments='top',
            horizontal_alignments=['right' if wide else 'left' for wide in too_wide],
            bboxes=[
                dict(facecolor=tuple(v / 255 for v in c), alpha=0.8, pad=0.4, edgecolor='none')
                for c in colours
            ])
