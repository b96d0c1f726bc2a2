"""Model tests build through registries under temporary default scopes."""
import pytest
from mmengine import DefaultScope


@pytest.fixture(autouse=True)
def no_default_scope_leak():
    """mmengine's DefaultScope is process-global: every test must leave it as it found it."""
    before = DefaultScope.get_current_instance()
    yield
    after = DefaultScope.get_current_instance()
    assert (before and before.scope_name) == (after and after.scope_name)
