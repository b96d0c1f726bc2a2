"""Recommendation data: readers, preprocessing and datasets for sequential recommenders."""
from .preprocess import (IdMap, drop_consecutive_repeats, filter_short_sessions,
                         filter_unseen_items, k_core_filter, split_by_time, stable_time_order)
from .readers import ml100k_path, read_atomic_inter, read_session_file
from .sequence_dataset import LeaveOneOutSequenceDataset, sequence_collate
from .session_dataset import SessionDataset, SessionSplit, load_sessions
from .session_parallel import (SessionParallelBatchSampler, session_parallel_collate,
                               session_parallel_schedule)

__all__ = [
    'IdMap', 'drop_consecutive_repeats', 'filter_short_sessions', 'filter_unseen_items',
    'k_core_filter', 'split_by_time', 'stable_time_order', 'ml100k_path', 'read_atomic_inter',
    'read_session_file', 'SessionDataset', 'SessionSplit', 'load_sessions',
    'SessionParallelBatchSampler', 'session_parallel_collate', 'session_parallel_schedule',
    'LeaveOneOutSequenceDataset', 'sequence_collate'
]
