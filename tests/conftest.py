"""Shared pytest set-up: GPU tests skip without a GPU; helper modules are importable."""
import os
import sys

import pytest
import torch

HELPERS = os.path.join(os.path.dirname(__file__), 'helpers')
sys.path.insert(0, HELPERS)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)
