"""The extension loader explains missing, stale and partial builds."""
import types

import pytest

from mmext.utils import ext_loader


@pytest.fixture
def fresh_loader():
    ext_loader._import.cache_clear()
    yield ext_loader
    ext_loader._import.cache_clear()


def test_missing_extension_says_how_to_build(fresh_loader):
    with pytest.raises(ext_loader.ExtensionError, match=r'cannot be imported.*pip install'):
        fresh_loader.load_ext('_no_such_ext')
    assert not fresh_loader.ext_available('_no_such_ext')


def test_stale_extension_is_refused(fresh_loader, monkeypatch):
    fake = types.SimpleNamespace(__file__='/x/_ext.so', source_hash='0000000000000000')
    monkeypatch.setattr(ext_loader.importlib, 'import_module', lambda name: fake)
    with pytest.raises(ext_loader.ExtensionError, match='stale'):
        fresh_loader.load_ext('_ext')
    fresh_loader._import.cache_clear()
    monkeypatch.setenv('MMEXT_SKIP_STALE_CHECK', '1')
    assert fresh_loader.load_ext('_ext') is fake


def test_missing_function_is_reported(fresh_loader, monkeypatch):
    from mmext.ops.source_hash import source_hash
    fake = types.SimpleNamespace(__file__='/x/_ext.so', source_hash=source_hash())
    monkeypatch.setattr(ext_loader.importlib, 'import_module', lambda name: fake)
    with pytest.raises(ext_loader.ExtensionError, match=r"no \['layer_norm_fwd'\]"):
        fresh_loader.load_ext('_ext', ['layer_norm_fwd'])
