"""mmext.VisualizationHook: which images it draws, where the drawings go on val and on test, its
three registered names, and its messages."""
import itertools
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement, InstanceData, PixelData
from mmengine.visualization import Visualizer

from mmext.engine.hooks import VisualizationHook
from mmext.registry import HOOKS
from mmext.visualization import DetVisualizer, SegVisualizer

META = dict(classes=('circle', 'square'), palette=[(220, 20, 60), (0, 130, 200)])
BOX = [8., 10., 40., 50.]
_names = itertools.count()


def det_samples(folder: Path, count: int):
    """``count`` detection outputs whose images exist on disk (grey, 64 x 64)."""
    samples = []
    for i in range(count):
        path = folder / f'img_{i}.png'
        cv2.imwrite(str(path), np.full((64, 64, 3), 90, np.uint8))
        sample = BaseDataElement(metainfo=dict(img_path=str(path)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([BOX]), labels=torch.tensor([1]))
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor([BOX]), labels=torch.tensor([0]), scores=torch.tensor([0.5]))
        samples.append(sample)
    return samples


def runner_with(visualizer, log_dir: Path, iteration: int = 12):
    visualizer.dataset_meta = META
    return SimpleNamespace(visualizer=visualizer, iter=iteration, log_dir=str(log_dir))


def local_visualizer(cls, save_dir: Path):
    return cls(
        name=f'test_vis_hook_{next(_names)}',
        vis_backends=[dict(type='LocalVisBackend')],
        save_dir=str(save_dir))


def test_val_draws_every_interval_th_image_into_the_backends(tmp_path):
    samples = det_samples(tmp_path, 5)
    runner = runner_with(local_visualizer(DetVisualizer, tmp_path / 'log'), tmp_path / 'log')
    hook = VisualizationHook(draw=True, interval=2)
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0, outputs=samples[:3])  # batches of 3 and 2 images
    hook.after_val_iter(runner, 1, outputs=samples[3:])
    written = sorted(p.name for p in (tmp_path / 'log' / 'vis_data' / 'vis_image').iterdir())
    assert written == ['val_img_0_12.png', 'val_img_2_12.png', 'val_img_4_12.png']
    drawn = cv2.imread(str(tmp_path / 'log' / 'vis_data' / 'vis_image' / written[0]))[..., ::-1]
    assert drawn.shape == (64, 2 * 64 + 4, 3)  # ground truth | prediction
    # the box edges are drawn (not the grey of the image), in the class colours
    assert abs(int(drawn[30, 8, 2]) - round(0.9 * 200 + 0.1 * 90)) <= 3  # square, gt
    assert abs(int(drawn[30, 68 + 8, 0]) - round(0.9 * 220 + 0.1 * 90)) <= 3  # circle, pred

    # a new validation starts counting again; draw=False draws nothing
    hook.before_val_epoch(runner)
    runner.iter = 24
    hook.after_val_iter(runner, 0, outputs=samples[:1])
    VisualizationHook(draw=False, interval=1).after_val_iter(runner, 0, outputs=samples)
    assert len(list((tmp_path / 'log' / 'vis_data' / 'vis_image').iterdir())) == 4


@pytest.mark.parametrize('relative', [True, False])
def test_test_writes_one_file_per_image_into_test_out_dir(tmp_path, relative):
    samples = det_samples(tmp_path, 3)
    log_dir = tmp_path / 'work' / '20240101_000000'
    runner = runner_with(local_visualizer(DetVisualizer, log_dir), log_dir)
    out = 'show' if relative else str(tmp_path / 'abs_show')
    hook = VisualizationHook(draw=True, interval=1, test_out_dir=out, score_thr=0.6)
    hook.before_test_epoch(runner)
    hook.after_test_iter(runner, 0, outputs=samples[:2])
    hook.after_test_iter(runner, 1, outputs=samples[2:])
    hook.after_test_epoch(runner)
    folder = log_dir / 'show' if relative else tmp_path / 'abs_show'
    assert sorted(p.name for p in folder.iterdir()) == ['img_0.png', 'img_1.png', 'img_2.png']
    assert not (log_dir / 'vis_data' / 'vis_image').exists()  # files, not the backends
    drawn = cv2.imread(str(folder / 'img_0.png'))[..., ::-1]
    assert drawn[30, 8].tolist() != [90, 90, 90]  # ground truth drawn
    assert (drawn[:, 68:] == 90).all()  # score 0.5 <= score_thr 0.6: no prediction drawn


def test_segmentation_samples(tmp_path):
    path = tmp_path / 'seg.png'
    cv2.imwrite(str(path), np.full((32, 32, 3), 100, np.uint8))
    seg = torch.zeros(1, 32, 32, dtype=torch.int64)
    seg[:, 8:16, 8:16] = 1
    sample = BaseDataElement(
        metainfo=dict(img_path=str(path)),
        gt_sem_seg=PixelData(data=seg),
        pred_sem_seg=PixelData(data=seg))
    vis = local_visualizer(SegVisualizer, tmp_path / 'log')
    runner = runner_with(vis, tmp_path / 'log')
    vis.dataset_meta = dict(classes=('background', 'circle'), palette=[(0, 0, 0), (220, 20, 60)])
    hook = VisualizationHook(draw=True, interval=1, test_out_dir=str(tmp_path / 'out'))
    hook.before_test_epoch(runner)
    hook.after_test_iter(runner, 0, outputs=[sample])
    drawn = cv2.imread(str(tmp_path / 'out' / 'seg.png'))[..., ::-1]
    assert drawn.shape[1] == 2 * 32 + 4 and drawn.shape[0] > 32  # legend below
    assert drawn[10, 10].tolist() == [160, 60, 80]  # 0.5 * grey 100 + 0.5 * circle's colour


def test_registered_names_and_messages(tmp_path, monkeypatch):
    with DefaultScope.overwrite_default_scope('mmext'):
        for name in ('VisualizationHook', 'DetVisualizationHook', 'SegVisualizationHook'):
            assert type(HOOKS.build(dict(type=name))) is VisualizationHook
    with pytest.raises(ValueError, match='interval'):
        VisualizationHook(interval=0)

    plain = Visualizer(name=f'test_vis_hook_{next(_names)}')
    runner = runner_with(plain, tmp_path)
    hook = VisualizationHook(draw=True, interval=1)
    with pytest.raises(TypeError, match="type='DetVisualizer'"):
        hook.after_val_iter(runner, 0, outputs=det_samples(tmp_path, 1))

    no_path = BaseDataElement(gt_instances=InstanceData(bboxes=torch.zeros(0, 4)))
    runner = runner_with(DetVisualizer(name=f'test_vis_hook_{next(_names)}'), tmp_path)
    with pytest.raises(KeyError, match='img_path'):
        hook.after_val_iter(runner, 0, outputs=[no_path])

    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    showing = VisualizationHook(draw=True, show=True)
    logged = []
    monkeypatch.setattr('mmext.engine.hooks.visualization_hook.print_log',
                        lambda msg, **kwargs: logged.append(msg))
    showing.before_run(runner)
    assert showing.show is False
    assert len(logged) == 1 and 'no display' in logged[0] and '--show-dir' in logged[0]
