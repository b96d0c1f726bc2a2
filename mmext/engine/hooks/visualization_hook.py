"""Draw validation and test results with the runner's visualizer (detection or segmentation).

One hook for both tasks: what is drawn is the visualizer's business (:class:`mmext.DetVisualizer`
draws ``gt_instances`` / ``pred_instances``, :class:`mmext.SegVisualizer` ``gt_sem_seg`` /
``pred_sem_seg``); the hook picks the images, reads them from disk and says where the drawing
goes.  It is registered under three names, ``VisualizationHook`` and, for configs written for
mmdet or mmseg, ``DetVisualizationHook`` and ``SegVisualizationHook``.  mmdet's and mmseg's own
visualizers work with it too.
"""
import logging
import os
import os.path as osp
from typing import Any, Optional, Sequence

import cv2
import numpy as np
from mmengine.fileio import get
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.visualization import Visualizer

from mmext.registry import HOOKS
from mmext.visualization.display import NO_DISPLAY_MESSAGE, has_display

__all__ = ['VisualizationHook', 'read_rgb']


def read_rgb(path: str, backend_args: Optional[dict] = None) -> np.ndarray:
    """The image file at ``path`` (local or any mmengine file backend) as ``(H, W, 3)`` uint8
    RGB."""
    buffer = np.frombuffer(get(path, backend_args=backend_args), np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'{path} is not an image OpenCV can read')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@HOOKS.register_module(name=['VisualizationHook', 'DetVisualizationHook', 'SegVisualizationHook'])
class VisualizationHook(Hook):
    """Draw every ``interval``-th validation and test image with its ground truth and prediction.

    During validation a drawing goes to the visualizer's backends (``visualizer.vis_backends``
    of the config: ``LocalVisBackend`` writes
    ``<log_dir>/vis_data/vis_image/val_<image>_<iter>.png``, ``TensorboardVisBackend`` an image
    ``val_<image>`` at the training iteration).  During test it
    goes to ``test_out_dir`` when set (one file per image, named as the image), else to the
    backends.  ``tools/test.py --show-dir DIR`` sets ``draw=True``, ``interval=1`` and
    ``test_out_dir=DIR``.

    Args:
        draw: Draw at all (off by default: drawing costs time).
        interval: Draw the images whose index in the split is a multiple of it (the first image,
            then every ``interval``-th).
        score_thr: Detection score threshold passed to the visualizer (``pred_score_thr``);
            ``None`` leaves the visualizer's own (``DetVisualizer(score_thr=0.3)``).
        show: Also show each drawing in a window (needs a display; without one a warning is
            logged and nothing is shown).
        wait_time: Seconds a shown image stays; 0 waits for a key press.
        test_out_dir: Folder of the test drawings.  A relative path is taken inside the run's
            log dir (``<work_dir>/<timestamp>/``), an absolute one as is.
        backend_args: mmengine file backend arguments to read the images.
    """

    priority = 'NORMAL'

    def __init__(self,
                 draw: bool = False,
                 interval: int = 50,
                 score_thr: Optional[float] = None,
                 show: bool = False,
                 wait_time: float = 0.,
                 test_out_dir: Optional[str] = None,
                 backend_args: Optional[dict] = None) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'VisualizationHook: interval must be an int >= 1, got {interval!r}')
        if wait_time < 0:
            raise ValueError(f'VisualizationHook: wait_time must be >= 0, got {wait_time}')
        self.draw = draw
        self.interval = interval
        self.score_thr = score_thr
        self.show = show
        self.wait_time = float(wait_time)
        self.test_out_dir = test_out_dir
        self.backend_args = backend_args
        self._seen = 0
        self._drawn = 0
        self._out_dir: Optional[str] = None

    # ------------------------------------------------------------------ runner events
    def before_run(self, runner) -> None:
        if self.show and not has_display():
            print_log(
                f'VisualizationHook: show=True, but {NO_DISPLAY_MESSAGE}; nothing will be '
                'shown',
                logger='current',
                level=logging.WARNING)
            self.show = False

    def before_val_epoch(self, runner) -> None:
        self._seen = self._drawn = 0

    def after_val_iter(self,
                       runner,
                       batch_idx: int,
                       data_batch: Any = None,
                       outputs: Optional[Sequence[Any]] = None) -> None:
        if self.draw and outputs:
            self._draw_batch(runner, 'val', outputs, step=runner.iter)

    def before_test_epoch(self, runner) -> None:
        self._seen = self._drawn = 0
        self._out_dir = None
        if self.draw and self.test_out_dir is not None:
            self._out_dir = self.resolve_out_dir(runner.log_dir, self.test_out_dir)
            os.makedirs(self._out_dir, exist_ok=True)

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Any = None,
                        outputs: Optional[Sequence[Any]] = None) -> None:
        if self.draw and outputs:
            self._draw_batch(runner, 'test', outputs, step=0, out_dir=self._out_dir)

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        if self.draw and self._out_dir is not None:
            print_log(
                f'VisualizationHook: drew {self._drawn} test images into {self._out_dir}',
                logger='current')

    # ------------------------------------------------------------------ drawing
    @staticmethod
    def resolve_out_dir(log_dir: str, out_dir: str) -> str:
        """``out_dir`` inside ``log_dir`` when relative, as is when absolute (``~`` expanded)."""
        out_dir = osp.expanduser(out_dir)
        return out_dir if osp.isabs(out_dir) else osp.join(log_dir, out_dir)

    def _visualizer(self, runner) -> Visualizer:
        visualizer = runner.visualizer
        if type(visualizer).add_datasample is Visualizer.add_datasample:
            raise TypeError(
                f'VisualizationHook: the runner\'s visualizer ({type(visualizer).__name__}) does '
                "not draw data samples; set visualizer=dict(type='DetVisualizer', ...) or "
                "dict(type='SegVisualizer', ...) in the config")
        if visualizer.dataset_meta is None:  # a loop usually sets it; a bare runner may not
            for loader in ('test_dataloader', 'val_dataloader'):
                dataset = getattr(getattr(runner, loader, None), 'dataset', None)
                if getattr(dataset, 'metainfo', None) is not None:
                    visualizer.dataset_meta = dataset.metainfo
                    break
        return visualizer

    def _draw_batch(self,
                    runner,
                    mode: str,
                    outputs: Sequence[Any],
                    step: int,
                    out_dir: Optional[str] = None) -> None:
        """Draw the outputs whose running index is a multiple of ``interval``."""
        visualizer = None
        for sample in outputs:
            index, self._seen = self._seen, self._seen + 1
            if index % self.interval:
                continue
            visualizer = visualizer or self._visualizer(runner)
            img_path = sample.metainfo.get('img_path') if hasattr(sample, 'metainfo') else None
            if img_path is None:
                raise KeyError('VisualizationHook: the data samples have no img_path; keep it in '
                               "the pipeline's Pack*Inputs meta_keys")
            name = f'{mode}_{osp.splitext(osp.basename(img_path))[0]}'
            kwargs = {} if self.score_thr is None else dict(pred_score_thr=self.score_thr)
            visualizer.add_datasample(
                name,
                read_rgb(img_path, self.backend_args),
                data_sample=sample,
                show=self.show,
                wait_time=self.wait_time,
                out_file=None if out_dir is None else osp.join(out_dir, osp.basename(img_path)),
                step=step,
                **kwargs)
            self._drawn += 1
