"""Selecting a backbone architecture from its class's ``arch_zoo``.

mmpretrain's convention, which every mmext backbone follows: a class attribute ``arch_zoo`` maps
each arch name (and its aliases, e.g. ``'t'`` and ``'tiny'``) to a dict of the settings that
define the architecture; ``arch`` is one of those names (case-insensitive) or such a dict, and the
instance keeps the chosen settings as ``arch_settings``.
"""
from typing import Any, Dict, Mapping, Sequence, Union

__all__ = ['select_arch']


def select_arch(owner: str,
                arch: Union[str, Mapping[str, Any]],
                arch_zoo: Mapping[str, Mapping[str, Any]],
                keys: Sequence[str],
                exact: bool = False) -> Dict[str, Any]:
    """A copy of the settings ``arch`` names (or of the custom ``arch`` dict itself).

    Args:
        owner: Class name for error messages.
        arch: A key of ``arch_zoo`` (any case) or a dict holding ``keys``.
        arch_zoo: The class's ``arch_zoo``.
        keys: The settings a custom dict must hold.
        exact: Whether a custom dict may hold only ``keys`` (mmpretrain's Swin) or also others
            (mmpretrain's ViT); the result holds ``keys`` only either way.
    """
    if isinstance(arch, str):
        name = arch.lower()
        if name not in arch_zoo:
            raise ValueError(f'unknown {owner} arch {arch!r}; choose one of '
                             f'{sorted(arch_zoo)} or pass a dict with the keys {list(keys)}')
        return dict(arch_zoo[name])
    if (not isinstance(arch, Mapping) or set(keys) - set(arch)
            or (exact and set(arch) != set(keys))):
        raise ValueError(f'{owner} custom arch must be a dict with '
                         f'{"exactly " if exact else ""}the keys {list(keys)}, got {arch!r}')
    return {k: arch[k] for k in keys}
