"""Distributed initialisation that also works on machines without a GPU.

mmengine's ``init_dist`` calls ``torch.cuda.set_device`` for every launcher before it creates the
process group, so it fails on a CPU-only machine even with the gloo backend.  This module reads
rank and world size the way each launcher publishes them and starts a gloo group instead.
"""
import datetime
import os
import subprocess
from typing import Optional, Tuple

import torch.distributed as torch_dist
from mmengine.logging import print_log

__all__ = ['launcher_rank_and_world', 'init_cpu_dist', 'close_process_group']


def _slurm_master_addr() -> str:
    node_list = os.environ['SLURM_NODELIST']
    out = subprocess.run(['scontrol', 'show', 'hostname', node_list],
                         check=True,
                         capture_output=True,
                         text=True).stdout
    return out.split()[0]


def launcher_rank_and_world(launcher: str) -> Tuple[int, int]:
    """(rank, world size) from the environment that ``launcher`` sets; also sets MASTER_* ."""
    env = os.environ
    if launcher == 'pytorch':  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
        return int(env['RANK']), int(env['WORLD_SIZE'])
    if launcher == 'slurm':
        env.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in env:
            env['MASTER_ADDR'] = _slurm_master_addr()
        return int(env['SLURM_PROCID']), int(env['SLURM_NTASKS'])
    if launcher == 'mpi':
        env.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in env:
            raise KeyError('the mpi launcher needs MASTER_ADDR in the environment')
        return int(env['OMPI_COMM_WORLD_RANK']), int(env['OMPI_COMM_WORLD_SIZE'])
    raise ValueError(f"unknown launcher '{launcher}'; expected one of pytorch, slurm, mpi")


def init_cpu_dist(launcher: str,
                  backend: str = 'gloo',
                  timeout: Optional[float] = None,
                  **kwargs) -> None:
    """Start a gloo process group for ``launcher`` without touching CUDA.

    ``backend`` and ``timeout`` mirror ``env_cfg.dist_cfg``; a CUDA-only backend such as nccl is
    replaced by gloo with a notice, so one config serves GPU and CPU machines alike.
    """
    rank, world_size = launcher_rank_and_world(launcher)
    if backend != 'gloo':
        print_log(
            f"dist_cfg asks for backend '{backend}' but no GPU is available; using gloo",
            logger='current')
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    os.environ.setdefault('LOCAL_RANK', str(rank))
    torch_dist.init_process_group(backend='gloo', rank=rank, world_size=world_size, **kwargs)


def close_process_group() -> None:
    """Destroy the default process group, if any, at the end of a successful run.

    Without it a gloo rank can abort while the interpreter shuts down ("terminate called without
    an active exception", exit code -6, after all its work is done: seen once in
    ``tools/dist_test.sh`` with 2 ranks; pytorch/pytorch#190489).  Only after success: destroying
    a group while another rank is still inside a collective can hang (pytorch/torchtitan#1342).
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
