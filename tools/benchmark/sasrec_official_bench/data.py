"""The data both sides read, and the evaluation tasks both sides score.

The official code reads ``data/<name>.txt``: one ``user item`` line per interaction, users and
items numbered from 1, each user's lines in time order (``utils.data_partition``).  Its split:
a user with at least 4 interactions has the last one as test item, the second-to-last as
validation item and the rest for training; a user with fewer keeps everything for training and
is not evaluated.  Ours (:class:`mmext.datasets.recsys.LeaveOneOutSequenceDataset`) reads an
atomic ``.inter`` file and splits the same way from 3 interactions on; users with exactly 3
are therefore trained on differently (1 training item here, 3 there) and evaluated only by us.
The common evaluation (:func:`eval_tasks`) scores the users both sides evaluate: at least 4
interactions.
"""
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np

__all__ = [
    'read_user_item_file', 'write_user_item_file', 'write_atomic_inter', 'eval_tasks',
    'split_counts'
]


def read_user_item_file(path: str) -> Tuple[List[int], List[np.ndarray]]:
    """``user item`` lines -> (users in order of first appearance, each user's items in file
    order).  Ids stay the file's (positive ints)."""
    pairs = np.loadtxt(path, dtype=np.int64, ndmin=2)
    if pairs.size == 0 or pairs.shape[1] != 2:
        raise ValueError(f'{path}: expected "user item" lines, got shape {pairs.shape}')
    if pairs.min() < 1:
        raise ValueError(f'{path}: user and item ids must start at 1 (0 is padding)')
    users, first = np.unique(pairs[:, 0], return_index=True)
    order = np.argsort(first, kind='stable')
    by_user = np.argsort(pairs[:, 0], kind='stable')  # stable: keeps each user's file order
    bounds = np.searchsorted(pairs[by_user, 0], users)
    items = pairs[by_user, 1]
    ends = np.r_[bounds[1:], len(items)]
    sequences = [items[bounds[i]:ends[i]] for i in order]
    return [int(u) for u in users[order]], sequences


def write_user_item_file(path: str, users: List[int], sequences: List[np.ndarray]) -> str:
    """The official format, user by user (what ``utils.data_partition`` reads)."""
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
        for user, seq in zip(users, sequences):
            f.writelines(f'{user} {int(item)}\n' for item in seq)
    return path


def write_atomic_inter(path: str, users: List[int], sequences: List[np.ndarray]) -> str:
    """The same interactions as a RecBole atomic file for our dataset; the timestamp is each
    interaction's rank, so our stable time order is the file's order."""
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
        f.write('user_id:token\titem_id:token\ttimestamp:float\n')
        rank = 0
        for user, seq in zip(users, sequences):
            for item in seq:
                f.write(f'{user}\t{int(item)}\t{rank}\n')
                rank += 1
    return path


def split_counts(sequences: List[np.ndarray], max_len: int) -> Dict[str, int]:
    """What each side's split makes of the sequences (printed by the benchmark and compared with
    what each side reports); training targets per epoch: the (input, next item) pairs of each
    user's training part, its last ``max_len`` only."""
    lengths = np.array([len(s) for s in sequences])
    official_train = np.where(lengths >= 4, lengths - 2, lengths)
    ours_train = np.where(lengths >= 3, lengths - 2, lengths)
    return dict(
        users=len(sequences),
        items=int(max(int(s.max()) for s in sequences)),
        interactions=int(lengths.sum()),
        evaluated_official=int((lengths >= 4).sum()),
        evaluated_ours=int((lengths >= 3).sum()),
        train_targets_official=int(np.clip(official_train - 1, 0, max_len).sum()),
        train_targets_ours=int(np.clip(ours_train - 1, 0, max_len).sum()),
        users_with_3=int((lengths == 3).sum()))


def eval_tasks(sequences: List[np.ndarray],
               max_len: int,
               num_items: int,
               seed: int,
               num_negatives: int = 100) -> Dict[str, np.ndarray]:
    """Validation and test tasks of every user with at least 4 interactions.

    For split ``s`` in (``val``, ``test``): ``s_hist`` ``[U, max_len]`` the history (training
    items; for test also the validation item), its last ``max_len`` items left-padded with 0;
    ``s_target`` ``[U]`` the held-out item; ``s_neg`` ``[U, num_negatives]`` distinct items
    drawn uniformly (``seed``) among those outside the user's training items and not equal to
    the target (the official ``evaluate`` draws among items outside the training items, with
    replacement).  ``user`` ``[U]`` the user ids.  Ids are the file's.
    """
    rng = np.random.default_rng(seed)
    users = [i for i, s in enumerate(sequences) if len(s) >= 4]
    out: Dict[str, np.ndarray] = {'user_index': np.array(users, dtype=np.int64)}
    for split, cut in (('val', 2), ('test', 1)):
        hist = np.zeros((len(users), max_len), dtype=np.int64)
        target = np.zeros(len(users), dtype=np.int64)
        neg = np.zeros((len(users), num_negatives), dtype=np.int64)
        for row, u in enumerate(users):
            seq = sequences[u]
            h = seq[:len(seq) - cut][-max_len:]
            hist[row, max_len - len(h):] = h
            target[row] = seq[len(seq) - cut]
            banned = np.zeros(num_items + 1, dtype=bool)
            banned[0] = True
            banned[seq[:-2]] = True
            banned[target[row]] = True
            # rejection sampling: users have far fewer items than the catalogue
            picked: List[int] = []
            while len(picked) < num_negatives:
                draw = rng.integers(1, num_items + 1, size=2 * num_negatives)
                for item in draw[~banned[draw]]:
                    if not banned[item]:
                        banned[item] = True
                        picked.append(int(item))
                        if len(picked) == num_negatives:
                            break
            neg[row] = picked
        out.update({f'{split}_hist': hist, f'{split}_target': target, f'{split}_neg': neg})
    return out
