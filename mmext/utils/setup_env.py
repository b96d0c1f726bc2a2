"""Registering mmext's modules and entering its default scope."""
import datetime
import warnings

from mmengine import DefaultScope

__all__ = ['register_all_modules']


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every mmext module that registers into :mod:`mmext.registry`.

    Lookups import them lazily through the registries' areas too; calling this up front makes
    them visible to code that lists a registry's content.  Areas whose toolbox is not installed
    are skipped (a lookup of one of their names says which extra to install).

    Args:
        init_default_scope: also make ``mmext`` the current default scope, so unprefixed types in
            a config resolve in mmext first (then in mmengine).  Switching away from another
            current scope warns.
    """
    from mmext import registry
    for node in registry.__all__:
        if isinstance(getattr(registry, node), registry.MMExtRegistry):
            getattr(registry, node).import_from_location()

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is not None and current.scope_name == 'mmext':
        return
    if current is not None:
        warnings.warn(
            f"register_all_modules switches the default scope from "
            f"'{current.scope_name}' to 'mmext'; pass init_default_scope=False to keep it")
    # Instance names are unique; the scope name is what lookups use.
    name = 'mmext'
    if DefaultScope.check_instance_created(name):
        name = f"mmext-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"
    DefaultScope.get_instance(name, scope_name='mmext')
