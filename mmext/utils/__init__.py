"""Utilities: module registration, checkpoint safety, distributed set-up."""
from .checkpoint import (CorruptCheckpointError, UnsafeCheckpointError,
                         allow_mmengine_checkpoint_types, load_local_checkpoint,
                         mmengine_safe_globals, setup_safe_checkpoint_loading)
from .checkpoint_match import DEFAULT_LOAD_MIN_MATCH, CheckpointMismatchError, check_fit
from .dist import init_cpu_dist, launcher_rank_and_world
from .setup_env import register_all_modules

__all__ = [
    'CorruptCheckpointError', 'CheckpointMismatchError', 'DEFAULT_LOAD_MIN_MATCH', 'check_fit',
    'UnsafeCheckpointError', 'allow_mmengine_checkpoint_types', 'load_local_checkpoint',
    'mmengine_safe_globals', 'setup_safe_checkpoint_loading', 'init_cpu_dist',
    'launcher_rank_and_world', 'register_all_modules'
]
