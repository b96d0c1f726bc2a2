"""Shared by the DDP tests of the contrastive losses: one toy dual encoder, one set of scenarios,
run either in a single process on the global batch or on W gloo ranks under DDP.

Not collected by pytest (no ``test_`` prefix); ``tests/models/losses/test_ddp_contrastive.py``
spawns :func:`worker` and compares with :func:`run_scenarios` run in the parent.
"""
import math
import os
from typing import Dict, List

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.dist import get_dist_info
from torch.nn.parallel import DistributedDataParallel as DDP

from mmext.models.losses import CLIPLoss, ITCLoss
from mmext.models.multimodal import MomentumPairs, make_momentum_copy
from mmext.models.utils import gather_features

GLOBAL_BATCH = 7
SPLIT = (4, 3)  # rows per rank: deliberately unequal (the last batch of an epoch)
IDX = torch.tensor([0, 1, 0, 2, 3, 1, 4])  # image ids: captions 0/2 and 1/5 share an image
STEPS = 3

SCENARIOS: Dict[str, dict] = {
    'clip_global_nograd': dict(kind='clip', local_loss=False, gather_with_grad=False),
    'clip_global_grad': dict(kind='clip', local_loss=False, gather_with_grad=True),
    'clip_local_grad': dict(kind='clip', local_loss=True, gather_with_grad=True),
    # open_clip's default mode reproduced without our gradient correction (for the record)
    'clip_openclip_naive': dict(kind='naive_clip'),
    'itc_hard_noqueue': dict(kind='itc', queue_size=0, use_distill=False, idx=False),
    'itc_online_keys': dict(kind='itc', queue_size=0, use_distill=False, idx=False, momentum=False),
    'itc_soft_queue_idx': dict(kind='itc', queue_size=12, use_distill=True, idx=True),
    'itc_hard_queue_small': dict(kind='itc', queue_size=5, use_distill=False, idx=True),
}


class NaiveCLIP(nn.Module):
    """open_clip's ``ClipLoss(local_loss=False, gather_with_grad=False)`` semantics."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        img, txt = nn.functional.normalize(img, dim=-1), nn.functional.normalize(txt, dim=-1)
        all_img, _ = gather_features(img, with_grad=False)
        all_txt, _ = gather_features(txt, with_grad=False)
        logits = self.logit_scale.exp() * all_img @ all_txt.t()
        labels = torch.arange(logits.shape[0])
        return 0.5 * (
            nn.functional.cross_entropy(logits, labels) +
            nn.functional.cross_entropy(logits.t(), labels))


class ToyDualEncoder(nn.Module):

    def __init__(self, spec: dict) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.img = nn.Linear(6, 8)
        self.txt = nn.Linear(5, 8)
        self.momentum = spec.get('kind') == 'itc' and spec.get('momentum', True)
        if spec['kind'] == 'clip':
            self.loss_fn = CLIPLoss(
                local_loss=spec['local_loss'], gather_with_grad=spec['gather_with_grad'])
        elif spec['kind'] == 'naive_clip':
            self.loss_fn = NaiveCLIP()
        else:
            self.loss_fn = ITCLoss(
                8, queue_size=spec['queue_size'], use_distill=spec['use_distill'], alpha=0.4)
        self.use_idx = spec.get('idx', False)
        if self.momentum:
            self.img_m, self.txt_m = make_momentum_copy(self.img), make_momentum_copy(self.txt)
            with torch.no_grad():  # start away from the online weights to make distillation bite
                for p in list(self.img_m.parameters()) + list(self.txt_m.parameters()):
                    p.add_(0.3 * torch.randn_like(p))
            self.pairs = MomentumPairs([(self.img, self.img_m), (self.txt, self.txt_m)], 0.5)

    def forward(self, x_img, x_txt, idx):
        fi, ft = self.img(x_img), self.txt(x_txt)
        if isinstance(self.loss_fn, ITCLoss):
            if self.momentum:
                with torch.no_grad():
                    fi_m, ft_m = self.img_m(x_img), self.txt_m(x_txt)
                return self.loss_fn(fi, ft, fi_m, ft_m, idx=idx if self.use_idx else None)
            return self.loss_fn(fi, ft, idx=idx if self.use_idx else None)
        return self.loss_fn(fi, ft)


def make_batch(step: int):
    g = torch.Generator().manual_seed(100 + step)
    return (torch.randn(GLOBAL_BATCH, 6, generator=g), torch.randn(GLOBAL_BATCH, 5,
                                                                   generator=g), IDX.clone())


def run_scenarios(rank: int = 0, world_size: int = 1) -> Dict[str, List[dict]]:
    """Per scenario and step: loss of this process, gradients (after DDP averaging), queue."""
    start = sum(SPLIT[:rank]) if world_size > 1 else 0
    stop = start + SPLIT[rank] if world_size > 1 else GLOBAL_BATCH
    results: Dict[str, List[dict]] = {}
    for name, spec in SCENARIOS.items():
        model = ToyDualEncoder(spec)
        core = model
        if world_size > 1:
            model = DDP(model, broadcast_buffers=False)  # queues must agree by themselves
        opt = torch.optim.SGD([p for p in core.parameters() if p.requires_grad], lr=0.5)
        records = []
        for step in range(STEPS):
            x_img, x_txt, idx = make_batch(step)
            opt.zero_grad()
            loss = model(x_img[start:stop], x_txt[start:stop], idx[start:stop])
            loss.backward()
            rec = dict(
                loss=loss.detach().clone(),
                grads={
                    k: p.grad.detach().clone()
                    for k, p in core.named_parameters() if p.grad is not None
                })
            opt.step()
            if core.momentum:
                core.pairs.update()
            q = getattr(core.loss_fn, 'queue', None)
            if q is not None:
                rec['queue'] = {k: v.detach().clone() for k, v in q.state_dict().items()}
            records.append(rec)
        results[name] = records
    return results


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    try:
        assert get_dist_info() == (rank, world_size)
        torch.save(run_scenarios(rank, world_size), os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()
