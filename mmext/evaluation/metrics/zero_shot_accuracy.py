"""Zero-shot classification accuracy of an image-text model (CLIP, Radford et al. 2021, Sec. 3.1).

The model scores every image against the text embeddings of the class prompts (see
:class:`mmext.DualEncoderITC`) and writes ``pred_score`` (``(C,)``) into each sample; this metric
compares the top-k classes with ``gt_label``.
"""
from typing import Dict, List, Sequence

import torch
from mmengine.evaluator import BaseMetric

from mmext.registry import METRICS

__all__ = ['ZeroShotAccuracy']


@METRICS.register_module()
class ZeroShotAccuracy(BaseMetric):
    """Top-k accuracy (in %) of ``pred_score`` against ``gt_label``.

    Args:
        topk: The ``k`` values reported as ``top{k}``.
        prefix: Metric-name prefix.
    """

    default_prefix = 'zeroshot'

    def __init__(self,
                 topk: Sequence[int] = (1, ),
                 collect_device: str = 'cpu',
                 prefix: str = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            if 'pred_score' not in ds or 'gt_label' not in ds:
                raise KeyError('ZeroShotAccuracy needs pred_score and gt_label in every sample; '
                               'does the model have class_names?')
            self.results.append((torch.as_tensor(ds['pred_score']).cpu().float(),
                                 int(torch.as_tensor(ds['gt_label']).reshape(-1)[0])))

    def compute_metrics(self, results: List) -> Dict[str, float]:
        scores = torch.stack([s for s, _ in results])
        labels = torch.tensor([lab for _, lab in results])
        metrics = {}
        for k in self.topk:
            if k > scores.shape[1]:
                raise ValueError(f'ZeroShotAccuracy topk={k} exceeds {scores.shape[1]} classes')
            hit = (scores.topk(k, dim=1).indices == labels[:, None]).any(1)
            metrics[f'top{k}'] = 100.0 * hit.float().mean().item()
        return metrics
