"""Parity of ``mmext``'s ``CdnQueryGenerator`` with mmdet's (mmdet 3.3.0).

Both generators share the label embedding and are called under the same torch seed: they draw
the same random numbers in the same order, so the noised queries must be equal, as must the
attention mask and ``dn_meta``.  Batches mix images with several, one and no ground truth.
"""
import pytest
import torch
from mmdet.models.layers import CdnQueryGenerator as MMDetCdnQueryGenerator
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmext.models.layers import CdnQueryGenerator

K, C, Q = 7, 16, 10
IMG_SHAPES = [(96, 128), (128, 112), (80, 80)]


def make_samples(num_gts, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for (h, w), n in zip(IMG_SHAPES, num_gts):
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.6
        wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.35 + 2
        s = DetDataSample(metainfo=dict(img_shape=(h, w)))
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1), labels=torch.randint(0, K, (n, ), generator=g))
        samples.append(s)
    return samples


def make_pair(**kwargs):
    cfg = dict(num_classes=K, embed_dims=C, num_matching_queries=Q, **kwargs)
    ref, ours = MMDetCdnQueryGenerator(**cfg), CdnQueryGenerator(**cfg)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ['label_embedding.weight']
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize('num_gts', [[3, 1, 5], [0, 2, 0], [4, 4, 4], [0, 0, 0]])
@pytest.mark.parametrize('kwargs', [
    dict(group_cfg=dict(dynamic=True, num_dn_queries=12)),
    dict(group_cfg=dict(dynamic=False, num_groups=3), label_noise_scale=1.0, box_noise_scale=0.4),
])
def test_matches_mmdet_under_the_same_seed(num_gts, kwargs):
    ref, ours = make_pair(**kwargs)
    samples = make_samples(num_gts)
    torch.manual_seed(123)
    ref_out = ref(samples)
    torch.manual_seed(123)
    out = ours(samples)
    assert out[3] == ref_out[3]
    for name, a, b in zip(('label_query', 'bbox_query', 'attn_mask'), out[:3], ref_out[:3]):
        assert a.shape == b.shape, name
        assert a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # the same number of random draws: the generators leave the seed in the same state
    torch.manual_seed(123)
    ref(samples)
    after_ref = torch.rand(3)
    torch.manual_seed(123)
    ours(samples)
    torch.testing.assert_close(torch.rand(3), after_ref, rtol=0, atol=0)


def test_layout_of_groups_and_noise():
    """Positive copies stay within half a box of the ground truth, negatives outside it, and
    the mask isolates each group and hides all groups from the matching queries."""
    gen = CdnQueryGenerator(
        K, C, Q, label_noise_scale=0.0, group_cfg=dict(dynamic=False, num_groups=2))
    samples = make_samples([2, 1, 0])
    label_query, bbox_query, mask, meta = gen(samples)
    M, G = 2, 2
    assert meta == dict(num_denoising_queries=2 * G * M, num_denoising_groups=G)
    assert label_query.shape == (3, 2 * G * M, C) and bbox_query.shape == (3, 2 * G * M, 4)
    # no label noise: every real query embeds its own label
    labels = samples[0].gt_instances.labels
    for k in range(2 * G):
        torch.testing.assert_close(label_query[0, k * M:k * M + 2], gen.label_embedding(labels))
    # image 1 has one target: slot 1 of every copy is padding; image 2 has none
    assert (label_query[1, 1::M] == 0).all() and (label_query[2] == 0).all()
    assert (bbox_query[2] == 0).all()
    # positive corners moved by < w/2, negative ones by >= w/2 (before clipping)
    gt = samples[0].gt_instances.bboxes / torch.tensor([128, 96, 128, 96])
    boxes = bbox_query[0].sigmoid()
    xyxy = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)
    wh = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)
    for k in range(2 * G):
        shift = (xyxy[k * M:k * M + 2] - gt).abs() / wh
        if k % 2 == 0:
            assert (shift < 0.5 + 1e-3).all()
    # mask: rows of group 0 see group 0 and the matching queries only
    D = 2 * G * M
    assert mask.shape == (D + Q, D + Q)
    assert not mask[:2 * M, :2 * M].any() and mask[:2 * M, 2 * M:D].all()
    assert not mask[:D, D:].any()
    assert mask[D:, :D].all() and not mask[D:, D:].any()


def test_dynamic_groups_and_arguments():
    gen = CdnQueryGenerator(K, C, Q, group_cfg=dict(num_dn_queries=10))
    assert [gen.get_num_groups(m) for m in (0, 1, 3, 10, 20)] == [1, 10, 3, 1, 1]
    with pytest.warns(UserWarning, match='num_dn_queries'):
        CdnQueryGenerator(K, C, Q)
    with pytest.raises(KeyError, match='num_groups'):
        CdnQueryGenerator(K, C, Q, group_cfg=dict(dynamic=False))
    with pytest.raises(TypeError, match='num_dn_queries'):
        CdnQueryGenerator(K, C, Q, group_cfg=dict(num_dn_queries=1.5))
