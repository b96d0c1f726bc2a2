"""Tokenizer, text transformer, momentum pairs, feature queue and the dual encoder itself."""
import pytest
import torch
import torch.nn as nn
from mmengine.structures import BaseDataElement

from mmext.models.multimodal import (DualEncoderITC, FeatureQueue, MomentumPairs,
                                     TextTransformer, WordTokenizer, make_momentum_copy)


def test_word_tokenizer():
    tok = WordTokenizer(corpus=['a handwritten seven', 'the digit 7!'], max_length=5)
    assert tok.words[:3] == ('[PAD]', '[CLS]', '[UNK]')
    ids, mask = tok(['The DIGIT 7', 'a handwritten seven and more words'])
    assert ids.shape == (2, 5) and ids[0, 0] == tok.CLS
    assert tok.decode(ids[0].tolist()) == 'the digit 7'
    assert mask[0].tolist() == [True, True, True, True, False]
    assert mask[1].all()  # truncated to max_length
    assert tok(['an eight'])[0][0, 1:3].tolist() == [tok.UNK, tok.UNK]
    with pytest.raises(ValueError, match='vocab or a corpus'):
        WordTokenizer()
    with pytest.raises(TypeError, match='list of texts'):
        tok('a seven')


def test_text_transformer_ignores_padding():
    torch.manual_seed(0)
    enc = TextTransformer(vocab_size=10, max_length=8, embed_dims=16, num_layers=2,
                          num_heads=2).eval()
    ids = torch.tensor([[1, 4, 5, 0, 0, 0, 0, 0]])
    short = enc(ids[:, :3], ids[:, :3] != 0)
    long = enc(ids, ids != 0)
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='TextTransformer expects'):
        enc(torch.zeros(1, 9, dtype=torch.long))


def test_momentum_pairs_ema_formula():
    online = nn.Linear(3, 2)
    ema = make_momentum_copy(online)
    assert not any(p.requires_grad for p in ema.parameters())
    pairs = MomentumPairs([(online, ema)], momentum=0.9)
    with torch.no_grad():
        online.weight.add_(1.0)
    before = ema.weight.clone()
    pairs.update()
    torch.testing.assert_close(ema.weight, 0.9 * before + 0.1 * online.weight)
    pairs.copy_params()
    torch.testing.assert_close(ema.weight, online.weight)
    with pytest.raises(ValueError, match='momentum'):
        MomentumPairs([(online, ema)], momentum=1.5)


def test_feature_queue_errors():
    q = FeatureQueue(4, dict(image=3))
    with pytest.raises(KeyError, match='fields'):
        q.enqueue(dict(text=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r'expects shape \(2, 3\)'):
        q.enqueue(dict(image=torch.zeros(2, 5)))
    with pytest.raises(ValueError, match='size'):
        FeatureQueue(0, dict(image=3))


def _model(loss=None, momentum=0.995):
    return DualEncoderITC(
        image_encoder=dict(type='VisionTransformer',
                           arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                     feedforward_channels=64),
                           img_size=16, patch_size=8, in_channels=1, out_type='cls_token'),
        text_encoder=dict(type='TextTransformer', embed_dims=16, num_layers=1, num_heads=2),
        tokenizer=dict(type='WordTokenizer', max_length=8),
        embed_dim=8, loss=loss, momentum=momentum, idx_key='image_id',
        class_names=[['zero', '0'], ['one', '1'], ['two', '2']],
        templates=['a {0}', 'the digit {1}'])


def _samples(n):
    return [BaseDataElement(text=f'the digit {i % 3}', image_id=i // 2,
                            gt_label=torch.tensor([i % 3])) for i in range(n)]


def test_dual_encoder_loss_predict_and_momentum():
    torch.manual_seed(0)
    model = _model(dict(type='ITCLoss', queue_size=5))
    model.init_weights()
    for online, ema in model._pairs.pairs:  # momentum copies start equal
        for p, p_m in zip(online.parameters(), ema.parameters()):
            assert torch.equal(p, p_m)
    x = torch.randn(4, 1, 16, 16)
    losses = model(x, _samples(4), mode='loss')
    losses['loss_itc'].backward()
    assert torch.isfinite(losses['loss_itc']) and model.image_proj.weight.grad is not None
    assert model.image_proj_m.weight.grad is None
    assert len(model.loss_itc.queue) == 4 and model.loss_itc.queue.get('idx').tolist() == [0, 0,
                                                                                           1, 1]
    out = model(x, _samples(4), mode='predict')
    assert out[0].pred_score.shape == (3, ) and out[0].text_feat.shape == (8, )
    torch.testing.assert_close(out[0].image_feat.norm(), torch.tensor(1.0))
    cls = model.class_embeddings()
    torch.testing.assert_close(cls.norm(dim=1), torch.ones(3))
    with pytest.raises(KeyError, match='caption string'):
        model(x, [BaseDataElement(image_id=0) for _ in range(4)], mode='loss')


def test_dual_encoder_with_clip_loss_has_no_momentum():
    model = _model(dict(type='CLIPLoss'))
    assert not model.use_momentum and not hasattr(model, 'image_encoder_m')
    loss = model(torch.randn(3, 1, 16, 16), _samples(3), mode='loss')['loss_itc']
    loss.backward()
    assert model.loss_itc.logit_scale.grad is not None
