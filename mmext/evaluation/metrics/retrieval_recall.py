"""Image<->text retrieval Recall@K of a dual encoder (the ALBEF/BLIP/CLIP retrieval protocol).

Each evaluated sample contributes one image feature and one caption feature (unit vectors, as
:class:`mmext.DualEncoderITC` predicts them).  Over the whole split the cosine similarities rank

* image -> text: for every image, all captions; a hit at K if a *relevant* caption is among the
  top K (``i2t_R@K``);
* text -> image: for every caption, all images (``t2i_R@K``);

and R@K is the percentage of queries with a hit.  A caption is relevant to an image when both
samples share the value of ``relevance_key``: ``'image_id'`` (the standard protocol: a caption is
relevant to its own image, several captions of one image all count) or ``'gt_label'``
(class-level retrieval, for captions that only describe the class, as in the digits demo).
"""
from typing import Dict, List, Sequence

import torch
from mmengine.evaluator import BaseMetric

from mmext.registry import METRICS
from mmext.utils.progress import Progress

__all__ = ['RetrievalRecall', 'recall_at_k']

_CHUNK_ELEMENTS = 1 << 22  # similarities sorted at once (32 MiB of sort indices)


def recall_at_k(sims: torch.Tensor,
                relevant: torch.Tensor,
                topk: Sequence[int],
                desc: str = 'ranking') -> Dict[int, float]:
    """% of rows of ``sims`` (queries x candidates) with a ``relevant`` candidate in the top k.

    Rows are ranked a chunk at a time (each row on its own, as over the whole matrix), which
    bounds the memory of the sort and reports the progress under ``desc``: a 5k x 5k test set
    takes seconds per direction.
    """
    num_queries = sims.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // max(1, sims.shape[1]))
    hits = {k: 0 for k in topk}
    with Progress(num_queries, desc, unit='queries') as progress:
        for start in range(0, num_queries, chunk):
            order = sims[start:start + chunk].argsort(dim=1, descending=True)
            ranked_rel = relevant[start:start + chunk].gather(1, order)
            for k in topk:
                hits[k] += int(ranked_rel[:, :k].any(1).sum())
            progress.update(len(order))
    return {k: 100.0 * hits[k] / num_queries for k in topk}


@METRICS.register_module()
class RetrievalRecall(BaseMetric):
    """Recall@K in both directions.

    Args:
        topk: The ``K`` values.
        relevance_key: ``'image_id'`` or ``'gt_label'`` (see the module docstring).
        prefix: Metric-name prefix.
    """

    default_prefix = 'retrieval'

    def __init__(self,
                 topk: Sequence[int] = (1, 5),
                 relevance_key: str = 'image_id',
                 collect_device: str = 'cpu',
                 prefix: str = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if relevance_key not in ('image_id', 'gt_label'):
            raise ValueError(f"RetrievalRecall relevance_key must be 'image_id' or 'gt_label', "
                             f'got {relevance_key!r}')
        self.topk = tuple(int(k) for k in topk)
        self.relevance_key = relevance_key

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            for key in ('image_feat', 'text_feat', self.relevance_key):
                if key not in ds:
                    raise KeyError(f"RetrievalRecall needs '{key}' in every predicted sample")
            self.results.append((torch.as_tensor(ds['image_feat']).cpu().float(),
                                 torch.as_tensor(ds['text_feat']).cpu().float(),
                                 int(torch.as_tensor(ds[self.relevance_key]).reshape(-1)[0])))

    def compute_metrics(self, results: List) -> Dict[str, float]:
        images = torch.stack([r[0] for r in results])
        texts = torch.stack([r[1] for r in results])
        groups = torch.tensor([r[2] for r in results])
        sims = images @ texts.t()
        relevant = groups[:, None] == groups[None, :]
        metrics = {}
        for k, v in recall_at_k(sims, relevant, self.topk, 'RetrievalRecall image->text').items():
            metrics[f'i2t_R@{k}'] = v
        for k, v in recall_at_k(sims.t(), relevant.t(), self.topk,
                                'RetrievalRecall text->image').items():
            metrics[f't2i_R@{k}'] = v
        return metrics
