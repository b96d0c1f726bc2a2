"""The digits split: deterministic, stratified, disjoint; DigitsDataset feeds mmpretrain's
packer."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from mmext.datasets.digits import (DIGITS_CLASSES, DigitsDataset, digits_split_indices,
                                   load_digits_arrays)
from mmext.registry import DATASETS


def test_split_is_disjoint_complete_and_stratified():
    train = digits_split_indices('train')
    val = digits_split_indices('val')
    total = len(load_digits().target)
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.union1d(train, val), np.arange(total))
    labels = load_digits().target
    for cls in range(10):
        n_cls = int((labels == cls).sum())
        assert int((labels[val] == cls).sum()) == round(0.2 * n_cls)


def test_deterministic_and_seed_dependent():
    a_img, a_lbl = load_digits_arrays('val', image_size=16, seed=3)
    b_img, b_lbl = load_digits_arrays('val', image_size=16, seed=3)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lbl, b_lbl)
    c_img, _ = load_digits_arrays('val', image_size=16, seed=4)
    assert a_img.shape == c_img.shape and not np.array_equal(a_img, c_img)


def test_arrays_dtype_range_and_resize():
    imgs, labels = load_digits_arrays('train', image_size=32)
    assert imgs.dtype == np.uint8 and imgs.shape[1:] == (32, 32)
    assert labels.dtype == np.int64 and set(np.unique(labels)) == set(range(10))
    assert imgs.max() == 255 and imgs.min() == 0
    # At the native 8x8 size the pixels are the originals scaled by 255/16.
    native, _ = load_digits_arrays('train', image_size=8)
    raw = load_digits().images[digits_split_indices('train')]
    assert np.array_equal(native, np.round(raw * 255 / 16).astype(np.uint8))
    # Bilinear upsampling is smooth: the mean grey level survives the resize.
    assert abs(imgs.astype(float).mean() - native.astype(float).mean()) < 3.0
    # More distinct levels than nearest-neighbour copies of 17 grey levels would give.
    assert len(np.unique(imgs)) > 17


@pytest.mark.parametrize('kwargs, match', [
    (dict(split='test'), 'split'),
    (dict(split='train', image_size=0), 'image_size'),
    (dict(split='train', val_fraction=1.0), 'val_fraction'),
])
def test_bad_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_digits_arrays(**kwargs)


def test_dataset_with_pack_inputs():
    ds = DATASETS.build(
        dict(
            type='DigitsDataset',
            split='val',
            image_size=24,
            channels=3,
            pipeline=[dict(type='mmpretrain.PackInputs')]))
    assert ds.metainfo['classes'] == DIGITS_CLASSES
    imgs, labels = load_digits_arrays('val', image_size=24)
    assert len(ds) == len(labels)
    sample = ds[5]
    assert sample['inputs'].shape == (3, 24, 24) and sample['inputs'].dtype == torch.uint8
    assert torch.equal(sample['inputs'][1], torch.from_numpy(imgs[5]))
    assert int(sample['data_samples'].gt_label) == labels[5]
    assert np.array_equal(ds.get_gt_labels(), labels)
    grey = DigitsDataset(split='val', image_size=24, pipeline=[dict(type='mmpretrain.PackInputs')])
    assert grey[0]['inputs'].shape == (1, 24, 24)


def test_dataset_rejects_on_disk_arguments():
    with pytest.raises(ValueError, match='ann_file'):
        DigitsDataset(ann_file='x.json')
    with pytest.raises(ValueError, match='channels'):
        DigitsDataset(channels=2)
