"""The one interaction file both sides of the comparison read."""
import os
import os.path as osp

__all__ = ['write_recbole_split']


def write_recbole_split(path_dir: str, name: str, users, sequences) -> str:
    """The ordered interactions as a RecBole atomic file; timestamp = rank in our order."""
    os.makedirs(osp.join(path_dir, name), exist_ok=True)
    path = osp.join(path_dir, name, f'{name}.inter')
    with open(path, 'w') as f:
        f.write('user_id:token\titem_id:token\ttimestamp:float\n')
        rank = 0
        for user, seq in zip(users, sequences):
            for item in seq:
                f.write(f'{user}\t{item}\t{rank}\n')
                rank += 1
    return path
