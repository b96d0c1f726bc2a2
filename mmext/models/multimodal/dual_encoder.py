"""A dual-encoder image-text model trained with ITC (ALBEF/BLIP) or the CLIP loss.

The unimodal half of ALBEF (Li et al., NeurIPS 2021, Sec. 3.1-3.3): an image encoder (e.g.
``mmext.VisionTransformer`` pooled at its class token) and a text encoder (e.g.
:class:`~mmext.models.text_encoders.TextTransformer`), each followed by a linear projection to a
shared ``embed_dim`` space and L2 normalisation, optionally with momentum copies of all four
(``theta_m <- m theta_m + (1-m) theta``, m = 0.995) whose features are the ITC keys, queue
entries and distillation targets.  No fusion encoder / ITM / MLM: retrieval and zero-shot
classification are done with the cosine similarity of the two projections, as in CLIP (Radford et
al., ICML 2021, Sec. 3.1.2): a class is embedded as the normalised mean of its prompts'
embeddings (prompt ensembling) and an image is assigned the class of highest similarity.

Data samples carry the caption in ``text`` (a string) and, for idx-based ITC targets, the key
named by ``idx_key`` (``image_id``, or ``gt_label`` to make every same-class pair a positive).
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor

from mmext.registry import MODELS, TASK_UTILS

from ..losses import CLIPLoss, ITCLoss
from .momentum import MomentumPairs, make_momentum_copy

__all__ = ['DualEncoderITC']


def _scalar(value) -> int:
    return int(torch.as_tensor(value).reshape(-1)[0])


@MODELS.register_module()
class DualEncoderITC(BaseModel):
    """Args:
        image_encoder: Backbone config; its last output must be ``(B, C)`` (e.g. a ViT with
            ``out_type='cls_token'``).
        text_encoder: Text encoder config; ``vocab_size`` and ``max_length`` default to the
            tokenizer's.
        tokenizer: Tokenizer config (``TASK_UTILS``); ``vocab=None, corpus=None`` builds the
            vocabulary from the zero-shot prompts.
        embed_dim: Width of the shared space.
        loss: ``ITCLoss`` or ``CLIPLoss`` config (``embed_dim`` filled in for ITC).
        momentum: EMA momentum of the momentum encoders; ``None`` disables them (ITC then uses
            online keys; CLIP never uses them).
        idx_key: Data-sample key holding the ITC ``idx`` (``None``: only the own pair is
            positive).
        class_names: Per class, the strings that fill the templates' ``{0}``, ``{1}``...
        templates: Prompt templates for zero-shot classification (prompt ensembling).
        data_preprocessor: mmengine data preprocessor config.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 image_encoder: dict,
                 text_encoder: dict,
                 tokenizer: dict,
                 embed_dim: int = 128,
                 loss: Optional[dict] = None,
                 momentum: Optional[float] = 0.995,
                 idx_key: Optional[str] = None,
                 class_names: Optional[Sequence[Union[str, Sequence[str]]]] = None,
                 templates: Sequence[str] = ('{0}', ),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.class_names = [([c] if isinstance(c, str) else list(c)) for c in class_names or []]
        self.templates = list(templates)
        tokenizer = dict(tokenizer)
        if tokenizer.get('vocab') is None and tokenizer.get('corpus') is None:
            if not self.class_names:
                raise ValueError('DualEncoderITC: give the tokenizer a vocab or corpus, or '
                                 'class_names/templates to build one from')
            tokenizer['corpus'] = [p for c in range(len(self.class_names)) for p in self.prompts(c)]
        self.tokenizer = TASK_UTILS.build(tokenizer)
        text_encoder = dict(text_encoder)
        text_encoder.setdefault('vocab_size', len(self.tokenizer))
        text_encoder.setdefault('max_length', self.tokenizer.max_length)

        self.image_encoder = MODELS.build(image_encoder)
        self.text_encoder = MODELS.build(text_encoder)
        self.image_proj = nn.Linear(self._width(self.image_encoder, 'image_encoder'), embed_dim)
        self.text_proj = nn.Linear(self._width(self.text_encoder, 'text_encoder'), embed_dim)
        loss = dict(loss or dict(type='ITCLoss'))
        if loss.get('type') in ('ITCLoss', 'mmext.ITCLoss'):
            loss.setdefault('embed_dim', embed_dim)
        self.loss_itc = MODELS.build(loss)
        if not isinstance(self.loss_itc, (ITCLoss, CLIPLoss)):
            raise TypeError(f'DualEncoderITC loss must be ITCLoss or CLIPLoss, got '
                            f'{type(self.loss_itc).__name__}')
        self.idx_key = idx_key
        self.use_momentum = momentum is not None and isinstance(self.loss_itc, ITCLoss)
        if self.use_momentum:
            self.image_encoder_m = make_momentum_copy(self.image_encoder)
            self.image_proj_m = make_momentum_copy(self.image_proj)
            self.text_encoder_m = make_momentum_copy(self.text_encoder)
            self.text_proj_m = make_momentum_copy(self.text_proj)
            self._pairs = MomentumPairs([(self.image_encoder, self.image_encoder_m),
                                         (self.image_proj, self.image_proj_m),
                                         (self.text_encoder, self.text_encoder_m),
                                         (self.text_proj, self.text_proj_m)], momentum)

    def init_weights(self) -> None:
        super().init_weights()
        if self.use_momentum:  # the momentum copies start equal to the initialised encoders
            self._pairs.copy_params()

    @staticmethod
    def _width(module: nn.Module, name: str) -> int:
        for attr in ('embed_dims', 'out_channels', 'embed_dim'):
            if isinstance(getattr(module, attr, None), int):
                return getattr(module, attr)
        raise ValueError(f'DualEncoderITC cannot tell the output width of {name} '
                         f'({type(module).__name__}): it has no int embed_dims attribute')

    # --- features -----------------------------------------------------------------------------
    def prompts(self, cls: int) -> List[str]:
        return [t.format(*self.class_names[cls]) for t in self.templates]

    @staticmethod
    def _pool(out) -> Tensor:
        out = out[-1] if isinstance(out, (tuple, list)) else out
        if out.dim() != 2:
            raise ValueError(f'DualEncoderITC image encoder must end in (B, C) features, got '
                             f'{tuple(out.shape)}; use out_type="cls_token"')
        return out

    def image_features(self, images: Tensor, momentum: bool = False) -> Tensor:
        enc, proj = ((self.image_encoder_m, self.image_proj_m) if momentum else
                     (self.image_encoder, self.image_proj))
        return F.normalize(proj(self._pool(enc(images))), dim=-1)

    def text_features(self, texts: Sequence[str], momentum: bool = False) -> Tensor:
        ids, mask = self.tokenizer(list(texts), device=self.image_proj.weight.device)
        enc, proj = ((self.text_encoder_m, self.text_proj_m) if momentum else
                     (self.text_encoder, self.text_proj))
        return F.normalize(proj(enc(ids, mask)), dim=-1)

    @torch.no_grad()
    def class_embeddings(self) -> Tensor:
        """``(num_classes, D)``: normalised mean of each class's normalised prompt features."""
        if not self.class_names:
            raise ValueError('DualEncoderITC has no class_names for zero-shot classification')
        prompts = [p for c in range(len(self.class_names)) for p in self.prompts(c)]
        feats = self.text_features(prompts).view(len(self.class_names), len(self.templates), -1)
        return F.normalize(feats.mean(1), dim=-1)

    @staticmethod
    def _texts(data_samples) -> List[str]:
        texts = [ds.get('text') for ds in data_samples]
        if any(not isinstance(t, str) for t in texts):
            raise KeyError("DualEncoderITC: every data sample needs a 'text' caption string "
                           '(PackInputs(meta_keys=(..., "text")))')
        return texts

    # --- BaseModel ----------------------------------------------------------------------------
    def forward(self, inputs: Tensor, data_samples: Optional[list] = None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            img = self.image_features(inputs)
            if data_samples is None:
                return img
            return img, self.text_features(self._texts(data_samples))
        raise RuntimeError(f'DualEncoderITC: invalid mode {mode!r}')

    def loss(self, inputs: Tensor, data_samples: list) -> Dict[str, Tensor]:
        texts = self._texts(data_samples)
        image_feat = self.image_features(inputs)
        text_feat = self.text_features(texts)
        if isinstance(self.loss_itc, CLIPLoss):
            return dict(loss_itc=self.loss_itc(image_feat, text_feat))
        idx = None
        if self.idx_key is not None:
            if any(self.idx_key not in ds for ds in data_samples):
                raise KeyError(f"DualEncoderITC idx_key='{self.idx_key}' is missing from a data "
                               'sample')
            idx = torch.tensor([_scalar(ds.get(self.idx_key)) for ds in data_samples],
                               device=inputs.device)
        image_feat_m = text_feat_m = None
        if self.use_momentum:
            with torch.no_grad():
                self._pairs.update()
                image_feat_m = self.image_features(inputs, momentum=True)
                text_feat_m = self.text_features(texts, momentum=True)
        loss = self.loss_itc(image_feat, text_feat, image_feat_m, text_feat_m, idx=idx)
        return dict(loss_itc=loss, itc_temp=self.loss_itc.temp.detach().clone())

    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples: Optional[list] = None) -> list:
        """Per sample: ``image_feat``, ``text_feat`` (if a caption is given), zero-shot
        ``pred_score`` / ``pred_label`` (if class names are set)."""
        from mmengine.structures import BaseDataElement
        image_feat = self.image_features(inputs)
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(inputs.shape[0])]
        has_text = all(isinstance(ds.get('text'), str) for ds in data_samples)
        text_feat = self.text_features(self._texts(data_samples)) if has_text else None
        scores = image_feat @ self.class_embeddings().t() if self.class_names else None
        for i, ds in enumerate(data_samples):
            ds.set_field(image_feat[i], 'image_feat')
            if text_feat is not None:
                ds.set_field(text_feat[i], 'text_feat')
            if scores is not None:
                ds.set_field(scores[i], 'pred_score')
                ds.set_field(scores[i].argmax().reshape(1), 'pred_label')
        return data_samples
