"""SlidingWindowDetector and inference_large_image.

The merging is tested with a deterministic test double for the detector (it finds the blobs of a
synthetic image: a real algorithm, not canned results): on an image made of known objects, some
of them cut by tile edges, the merged detections must equal what the same detector finds on the
whole image at once, one box per object, none duplicated at tile borders.  A real FCOS checks the
plumbing (one tile = the detector's own output; per-tile preprocessing = whole-image), the shared
state dict, and tools/test.py on a trained checkpoint.
"""
import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.structures import DetDataSample
from mmengine import DefaultScope
from mmengine.model import BaseModel
from mmengine.runner.checkpoint import load_state_dict
from mmengine.structures import InstanceData
from scipy import ndimage

from mmext.apis import inference_large_image
from mmext.models.detectors import SlidingWindowDetector
from mmext.registry import MODELS
from mmext.utils.tiles import tile_windows

ROOT = Path(__file__).resolve().parents[3]


class BlobDetector(BaseModel):
    """Test double: every 8-connected blob of channel 0 > 0 is one detection, boxed by its
    extent (``x2``/``y2`` exclusive); its score is channel 1's maximum / 255 and its label
    channel 2's maximum, over the blob.  A blob cut by the image (tile) edge gives a cut box."""

    def __init__(self):
        super().__init__(data_preprocessor=DetDataPreprocessor(mean=[0, 0, 0], std=[1, 1, 1]))
        self.calls = 0  # tiles seen

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def predict(self, batch_inputs, batch_data_samples, rescale=False):
        for img, sample in zip(batch_inputs, batch_data_samples):
            self.calls += 1
            h, w = sample.img_shape
            a = img[:, :h, :w].numpy()
            blobs, _ = ndimage.label(a[0] > 0, structure=np.ones((3, 3)))
            boxes, scores, labels = [], [], []
            for k, (sy, sx) in enumerate(ndimage.find_objects(blobs), start=1):
                inside = blobs[sy, sx] == k
                boxes.append([sx.start, sy.start, sx.stop, sy.stop])
                scores.append(a[1][sy, sx][inside].max() / 255)
                labels.append(int(a[2][sy, sx][inside].max()))
            sample.pred_instances = InstanceData(
                bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                scores=torch.tensor(scores, dtype=torch.float32),
                labels=torch.tensor(labels, dtype=torch.long))
        return batch_data_samples


WIDTH, HEIGHT, TILE, OVERLAP = 1000, 700, 300, 80


def synthetic_image(seed=0):
    """``(H, W, 3)`` uint8: squares of 6-70 px (at most the overlap), 2 px apart at least, a
    dozen centred on tile edges; channel 1 a distinct score, channel 2 a label in 0..2."""
    rng = np.random.default_rng(seed)
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    taken = np.zeros((HEIGHT, WIDTH), bool)
    win = tile_windows(WIDTH, HEIGHT, TILE, OVERLAP)
    edges_x = sorted({int(v) for v in win[:, 2] if v < WIDTH} | {int(v) for v in win[:, 0] if v})
    edges_y = sorted({int(v) for v in win[:, 3] if v < HEIGHT} | {int(v) for v in win[:, 1] if v})
    centres = [(x, int(rng.integers(40, HEIGHT - 40))) for x in edges_x]
    centres += [(int(rng.integers(40, WIDTH - 40)), y) for y in edges_y]
    centres += [(x, y) for x in edges_x[:2] for y in edges_y[:2]]  # tile corners
    centres += [(int(rng.integers(40, WIDTH - 40)), int(rng.integers(40, HEIGHT - 40)))
                for _ in range(200)]
    n = 0
    for cx, cy in centres:
        size = int(rng.integers(6, 71))
        x1, y1 = cx - size // 2, cy - size // 2
        x1, y1 = min(max(x1, 0), WIDTH - size), min(max(y1, 0), HEIGHT - size)
        if taken[max(y1 - 2, 0):y1 + size + 2, max(x1 - 2, 0):x1 + size + 2].any():
            continue
        taken[y1:y1 + size, x1:x1 + size] = True
        img[y1:y1 + size, x1:x1 + size] = (255, 20 + n, n % 3)
        n += 1
        if n == 200:
            break
    return img, n


def whole_image_detections(img):
    """The test double run once on the whole image: the reference."""
    det = BlobDetector()
    sample = DetDataSample(metainfo=dict(img_shape=img.shape[:2]))
    inputs = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32))[None]
    return det.predict(inputs, [sample])[0].pred_instances


def as_sorted(pred):
    boxes = pred.bboxes.numpy()
    order = np.lexsort((boxes[:, 1], boxes[:, 0]))
    return boxes[order], pred.scores.numpy()[order], pred.labels.numpy()[order]


def tiled_predict(img, **kwargs):
    model = SlidingWindowDetector(BlobDetector(), tile_size=TILE, overlap=OVERLAP, **kwargs)
    sample = DetDataSample(metainfo=dict(img_shape=img.shape[:2], scale_factor=(1., 1.)))
    inputs = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32))[None]
    return model.predict(inputs, [sample])[0].pred_instances, model


@pytest.fixture(scope='module')
def scene():
    img, n = synthetic_image()
    ref = whole_image_detections(img)
    assert len(ref) == n > 100  # every square found once: the double works on the whole image
    return img, ref


@pytest.mark.parametrize('merge', [None, dict(type='wbf'), dict(type='none')])
def test_merged_equals_whole_image_detections(scene, merge):
    img, ref = scene
    pred, model = tiled_predict(img, merge=merge)
    assert model.detector.calls == len(tile_windows(WIDTH, HEIGHT, TILE, OVERLAP)) == 15
    got, want = as_sorted(pred), as_sorted(ref)
    assert got[0].shape == want[0].shape  # no duplicate, nothing lost
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert np.all(np.diff(pred.scores.numpy()) <= 0)  # by decreasing score


def test_without_core_filter_cut_boxes_remain(scene):
    """What the core filter is for: objects cut by a tile edge give a cut box in one tile and a
    whole one in the next, and NMS alone leaves both for many of them."""
    img, ref = scene
    raw, _ = tiled_predict(img, merge=dict(type='none'), center_in_core=False)
    nms, _ = tiled_predict(img, center_in_core=False)
    ref_boxes = {tuple(b) for b in ref.bboxes.tolist()}
    cut = [b for b in nms.bboxes.tolist() if tuple(b) not in ref_boxes]
    assert len(raw) > len(nms) > len(ref)
    assert len(cut) > 5


def test_inference_large_image_with_progress(scene, tmp_path, capsys):
    img, ref = scene
    detector = BlobDetector()
    with pytest.raises(ValueError, match='tile_size is required'):
        inference_large_image(detector, img)
    path = str(tmp_path / 'big.png')
    import mmcv
    mmcv.imwrite(img, path)  # BGR order on disk as mmcv writes it, and reads it back
    out = inference_large_image(detector, path, tile_size=TILE, overlap=OVERLAP, batch_tiles=4)
    assert out.img_path == path and out.ori_shape == (HEIGHT, WIDTH)
    for g, w in zip(as_sorted(out.pred_instances), as_sorted(ref)):
        np.testing.assert_array_equal(g, w)
    printed = capsys.readouterr().out
    assert '15/15' in printed  # mmengine's progress bar, over the tiles
    # the wrapper's own settings are the defaults; arguments override them
    wrapped = SlidingWindowDetector(BlobDetector(), tile_size=TILE, overlap=OVERLAP)
    out = inference_large_image(wrapped, img, merge=dict(type='wbf'), progress=False)
    assert len(out.pred_instances) == len(ref)
    assert capsys.readouterr().out == ''


# A small real detector: mmdet's FCOS with mmext's FCOSHead, random weights.
FCOS = dict(
    type='mmdet.FCOS',
    data_preprocessor=dict(
        type='mmdet.DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='mmdet.ResNet',
        depth=18,
        base_channels=16,
        out_indices=(1, 2, 3),
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    neck=dict(
        type='mmdet.FPN',
        in_channels=[32, 64, 128],
        out_channels=32,
        start_level=0,
        add_extra_convs='on_output',
        num_outs=3),
    bbox_head=dict(
        type='mmext.FCOSHead',
        num_classes=2,
        in_channels=32,
        feat_channels=32,
        stacked_convs=1,
        strides=[8, 16, 32],
        regress_ranges=((-1, 32), (32, 64), (64, 1e8)),
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        loss_cls=dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25),
        loss_bbox=dict(type='mmdet.GIoULoss', loss_weight=1.0),
        loss_centerness=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True)),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.0,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))


def build(cfg, seed=0):
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    return model.eval()


def batch(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    sample = DetDataSample(
        metainfo=dict(img_id=0, img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
    return dict(inputs=[img], data_samples=[sample])


def test_one_tile_is_the_detectors_own_output():
    detector = build(FCOS)
    wrapper = build(dict(type='SlidingWindowDetector', detector=FCOS, tile_size=128, overlap=32))
    wrapper.load_state_dict(detector.state_dict())
    data = batch(96, 120)
    with torch.no_grad():
        own = detector.test_step(copy.deepcopy(data))[0].pred_instances
        tiled = wrapper.test_step(copy.deepcopy(data))[0].pred_instances
    assert len(own) == 100
    for key in ('bboxes', 'scores', 'labels'):
        torch.testing.assert_close(tiled[key], own[key], rtol=0, atol=0)


def test_large_image_real_detector_both_paths_agree():
    """test_step (the whole image normalised, then cut) and predict_image (each batch of tiles
    normalised by the data preprocessor) give the same detections."""
    wrapper = build(
        dict(
            type='SlidingWindowDetector',
            detector=FCOS,
            tile_size=128,
            overlap=32,
            batch_tiles=3,
            max_per_img=150))
    data = batch(200, 300, seed=1)
    with torch.no_grad():
        whole = wrapper.test_step(copy.deepcopy(data))[0].pred_instances
        tiles = wrapper.predict_image(data['inputs'][0],
                                      copy.deepcopy(data['data_samples'][0])).pred_instances
    assert len(whole) == 150  # capped at max_per_img after merging
    boxes = whole.bboxes
    assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= 300 and boxes[:, 3].max() <= 200
    assert torch.all(whole.scores[:-1] >= whole.scores[1:])
    for key in ('bboxes', 'scores', 'labels'):
        torch.testing.assert_close(tiles[key], whole[key])


def test_rescale_divides_by_scale_factor(scene):
    img, ref = scene
    model = SlidingWindowDetector(BlobDetector(), tile_size=TILE, overlap=OVERLAP)
    sample = DetDataSample(metainfo=dict(img_shape=img.shape[:2], scale_factor=(2., 0.5)))
    inputs = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32))[None]
    pred = model.predict(inputs, [sample])[0].pred_instances
    plain = model.predict(inputs, [copy.deepcopy(sample)], rescale=False)[0].pred_instances
    torch.testing.assert_close(pred.bboxes, plain.bboxes / torch.tensor([2., 0.5, 2., 0.5]))


def test_state_dict_is_the_detectors():
    """No 'detector.' prefix: checkpoints of the plain detector and of the wrapper are one."""
    detector = build(FCOS, seed=1)
    wrapper = build(
        dict(type='SlidingWindowDetector', detector=FCOS, tile_size=128, overlap=32), seed=2)
    assert list(wrapper.state_dict()) == list(detector.state_dict())
    load_state_dict(wrapper, detector.state_dict(), strict=True)  # mmengine's loader
    for key, value in detector.state_dict().items():
        assert torch.equal(wrapper.state_dict()[key], value), key
    other = build(FCOS, seed=3)
    other.load_state_dict(
        build(dict(type='SlidingWindowDetector', detector=FCOS),
              seed=4).state_dict())  # and back, with torch's loader
    fresh = build(dict(type='SlidingWindowDetector', detector=FCOS), seed=5)
    fresh.load_state_dict(other.state_dict())
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                          other.state_dict().values()))
    with pytest.raises(ValueError, match='overlap'):
        SlidingWindowDetector(BlobDetector(), tile_size=64, overlap=64)
    with pytest.raises(ValueError, match="'nms', 'wbf' or 'none'"):
        SlidingWindowDetector(BlobDetector(), merge=dict(type='soft_nms'))


def test_tools_test_with_a_plain_detector_checkpoint(fcos_demo_run, tmp_path):
    """tools/test.py on the FCOS demo's checkpoint, its model wrapped in a sliding window of
    96 px tiles over the 128 px validation images."""
    config = tmp_path / 'sliding.py'
    config.write_text(f"_base_ = '{fcos_demo_run.config}'\n"
                      "model = dict(_delete_=True, type='SlidingWindowDetector', "
                      "detector={{_base_.model}}, tile_size=96, overlap=32)\n")
    options = [
        o.replace('model.', 'model.detector.', 1) if o.startswith('model.') else o
        for o in fcos_demo_run.cfg_options
    ]
    out = tmp_path / 'preds.pkl'
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT),
                                                os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([
        sys.executable,
        str(ROOT / 'tools' / 'test.py'),
        str(config),
        str(fcos_demo_run.checkpoint), '--work-dir',
        str(tmp_path / 'work'), '--out',
        str(out), '--cfg-options', *options
    ],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    # every tensor of the plain detector's checkpoint was taken
    ckpt = torch.load(fcos_demo_run.checkpoint, map_location='cpu', weights_only=False)
    n = len(ckpt['state_dict'])
    assert f'({n} of its {n} tensors fit the model)' in log
    metrics = json.loads(sorted((tmp_path / 'work').glob('*/*.json'))[-1].read_text())
    assert 'coco/bbox_mAP' in metrics
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 8  # the 8 validation images
    for p in preds:
        boxes = p['pred_instances']['bboxes']
        assert len(boxes) > 0 and boxes.min() >= 0 and boxes.max() <= 128
