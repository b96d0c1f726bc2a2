"""FeatureQueue input checks (its wrap-around is tested through ITCLoss in test_itc_loss.py)."""
import pytest
import torch

from mmext.models.losses import FeatureQueue


def test_feature_queue_errors():
    q = FeatureQueue(4, dict(image=3))
    with pytest.raises(KeyError, match='fields'):
        q.enqueue(dict(text=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r'expects shape \(2, 3\)'):
        q.enqueue(dict(image=torch.zeros(2, 5)))
    with pytest.raises(ValueError, match='size'):
        FeatureQueue(0, dict(image=3))
