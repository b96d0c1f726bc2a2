"""TextTransformer: padding is masked out of attention; over-long inputs are refused."""
import pytest
import torch

from mmext.models.text_encoders import TextTransformer


def test_text_transformer_ignores_padding():
    torch.manual_seed(0)
    enc = TextTransformer(
        vocab_size=10, max_length=8, embed_dims=16, num_layers=2, num_heads=2).eval()
    ids = torch.tensor([[1, 4, 5, 0, 0, 0, 0, 0]])
    short = enc(ids[:, :3], ids[:, :3] != 0)
    long = enc(ids, ids != 0)
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='TextTransformer expects'):
        enc(torch.zeros(1, 9, dtype=torch.long))
