"""DigitsCaptionDataset: captions name the sample's digit; random in training, fixed in test."""
import pytest

from mmext.datasets.digits_captions import (DIGIT_CAPTION_TEMPLATES, DIGIT_WORDS,
                                            DigitsCaptionDataset, digit_caption)


def test_captions_match_labels_and_ids():
    ds = DigitsCaptionDataset(split='val', image_size=8, test_mode=True)
    assert len(ds) == 359
    for i in (0, 5, 100):
        info = ds.get_data_info(i)
        t = DIGIT_CAPTION_TEMPLATES[i % len(DIGIT_CAPTION_TEMPLATES)]
        assert info['text'] == digit_caption(info['gt_label'], t)
        assert info['image_id'] == i
    # test mode: the same caption every time
    assert ds.get_data_info(3)['text'] == ds.get_data_info(3)['text']


def test_training_captions_vary_but_name_the_digit():
    ds = DigitsCaptionDataset(split='train', image_size=8)
    info = ds.get_data_info(0)
    caps = {ds.get_data_info(0)['text'] for _ in range(40)}
    assert len(caps) > 3
    word, num = DIGIT_WORDS[info['gt_label']], str(info['gt_label'])
    assert all(word in c.split() or num in c.split() for c in caps)
    assert caps <= set(ds.captions(info['gt_label']))


def test_bad_template_raises():
    with pytest.raises(ValueError, match='template'):
        DigitsCaptionDataset(split='val', templates=['the {2} digit'])
