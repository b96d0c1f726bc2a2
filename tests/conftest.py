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


# Small real training runs, trained once per session and only when a test asks for one
# (tests/helpers/demo_runs.py).
@pytest.fixture(scope='session')
def fcos_demo_run(tmp_path_factory):
    import demo_runs
    return demo_runs.fcos_run(tmp_path_factory.mktemp('fcos_demo_run'))


@pytest.fixture(scope='session')
def sasrec_demo_run(tmp_path_factory):
    import demo_runs
    return demo_runs.sasrec_run(tmp_path_factory.mktemp('sasrec_demo_run'))


@pytest.fixture(scope='session')
def vit_demo_run(tmp_path_factory):
    import demo_runs
    return demo_runs.vit_run(tmp_path_factory.mktemp('vit_demo_run'))


@pytest.fixture(scope='session')
def itc_demo_run(tmp_path_factory):
    import demo_runs
    return demo_runs.itc_run(tmp_path_factory.mktemp('itc_demo_run'))


@pytest.fixture(scope='session')
def vit_trajectory_run(tmp_path_factory):
    import demo_runs
    return demo_runs.vit_trajectory_run(tmp_path_factory.mktemp('vit_trajectory_run'))
