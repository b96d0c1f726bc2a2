"""WordTokenizer: vocabulary from a corpus, [CLS] first, padding mask, truncation, unknowns."""
import pytest

from mmext.models.text_encoders import WordTokenizer


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
