"""Layer-wise learning-rate decay (Clark et al., ELECTRA, ICLR 2020; Bao et al., BEiT, ICLR 2022,
Sec. 3 "layer-wise learning rate decay") as an mmengine optimizer-wrapper constructor.

With ``D`` depths (for a ViT of ``L`` layers: ``D = L + 2``; depth 0 is the patch/position
embedding, ``i + 1`` is layer ``i``, ``D - 1`` the final norm and the head), a parameter at depth
``d`` trains with

    lr(d) = base_lr * rate ** (D - 1 - d)

so the head keeps ``base_lr`` and every layer closer to the input gets ``rate`` times less.
Depths come from a ``get_layer_depth(name, prefix) -> (depth, D)`` method: the model's own
(mmpretrain's classifiers have one), or else its ``backbone``'s (mmext's and mmpretrain's ViTs
have one), parameters outside the backbone then taking the last depth.

Weight decay follows the usual per-parameter rules, first match wins: ``custom_keys`` (substring
of the parameter name, longest key first; ``decay_mult`` and ``lr_mult``), then
``norm_decay_mult`` (parameters of normalisation layers), ``bias_decay_mult`` (``bias``),
``flat_decay_mult`` (any 1-D parameter).  Parameters with ``requires_grad=False`` are left out.
Parameters sharing ``(lr, weight_decay)`` share one param group, so an optimizer for a ViT-B has
a few dozen groups instead of one per tensor; every group records ``lr_scale`` and ``layer_id``.
"""
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from mmext.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

__all__ = ['LayerDecayOptimWrapperConstructor']

DepthFn = Callable[[str], Tuple[int, int]]
_NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
_KNOWN_KEYS = {
    'layer_decay_rate', 'custom_keys', 'norm_decay_mult', 'bias_decay_mult', 'flat_decay_mult'
}


def _is_norm(module: nn.Module) -> bool:
    # registered norms that are not torch subclasses (a fused LayerNorm) declare an mmcv _abbr_
    return isinstance(module, _NORMS) or getattr(module, '_abbr_', None) in ('ln', 'bn', 'gn', 'in')


def _depth_fn(model: nn.Module) -> DepthFn:
    """``name -> (depth, num_depths)`` from the model, or from its backbone."""
    if hasattr(model, 'get_layer_depth'):
        return lambda name: model.get_layer_depth(name)
    backbone = getattr(model, 'backbone', None)
    if backbone is not None and hasattr(backbone, 'get_layer_depth'):
        return lambda name: backbone.get_layer_depth(name, 'backbone.')
    raise TypeError(f'layer-wise lr decay needs depths: neither {type(model).__name__} nor its '
                    '`backbone` has a get_layer_depth(param_name, prefix) method')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper with per-depth learning rates; see the module docstring.

    Config::

        optim_wrapper = dict(
            optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05),
            constructor='mmext.LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.65, norm_decay_mult=0., bias_decay_mult=0.,
                               custom_keys={'.cls_token': dict(decay_mult=0.),
                                            '.pos_embed': dict(decay_mult=0.)}))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - _KNOWN_KEYS
        if unknown:
            raise KeyError(f'LayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys '
                           f'{sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}')
        rate = paramwise_cfg.get('layer_decay_rate', 1.0)
        if not 0 < float(rate) <= 1:
            raise ValueError(f'paramwise_cfg.layer_decay_rate must be in (0, 1], got {rate!r}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg=None)
        self.paramwise_cfg = paramwise_cfg
        if self.base_lr is None:
            raise ValueError('LayerDecayOptimWrapperConstructor needs optimizer.lr')

    def _weight_decay(self, name: str, param: nn.Parameter, in_norm: bool,
                      keys: List[str]) -> Tuple[Optional[float], float]:
        """``(weight decay or None when the optimizer has none, lr multiplier)``."""
        cfg = self.paramwise_cfg
        key = next((k for k in keys if k in name), None)
        if key is not None:
            custom = cfg['custom_keys'][key]
            wd = None if self.base_wd is None else self.base_wd * custom.get('decay_mult', 1.)
            return wd, custom.get('lr_mult', 1.)
        if self.base_wd is None:
            return None, 1.
        for applies, mult_key in ((in_norm, 'norm_decay_mult'), (name.rsplit('.', 1)[-1] == 'bias',
                                                                 'bias_decay_mult'),
                                  (param.ndim == 1, 'flat_decay_mult')):
            if applies and cfg.get(mult_key) is not None:
                return self.base_wd * cfg[mult_key], 1.
        return self.base_wd, 1.

    def param_groups(self, model: nn.Module) -> List[Dict[str, Any]]:
        """The optimizer's param groups for ``model`` (one per distinct lr / weight decay)."""
        depth_of = _depth_fn(model)
        rate = float(self.paramwise_cfg.get('layer_decay_rate', 1.0))
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        keys = sorted(sorted(custom_keys), key=len, reverse=True)  # longest match wins
        groups: 'OrderedDict[tuple, Dict[str, Any]]' = OrderedDict()
        for module_name, module in model.named_modules():
            in_norm = _is_norm(module)
            for param_name, param in module.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                name = f'{module_name}.{param_name}' if module_name else param_name
                depth, num_depths = depth_of(name)
                if not 0 <= depth < num_depths:
                    raise ValueError(f'get_layer_depth({name!r}) gave depth {depth} outside '
                                     f'[0, {num_depths})')
                scale = rate**(num_depths - 1 - depth)
                wd, lr_mult = self._weight_decay(name, param, in_norm, keys)
                lr = self.base_lr * scale * lr_mult
                group = groups.setdefault((depth, lr, wd),
                                          dict(
                                              params=[],
                                              lr=lr,
                                              lr_scale=scale * lr_mult,
                                              layer_id=depth,
                                              param_names=[]))
                if wd is not None:
                    group['weight_decay'] = wd
                group['params'].append(param)
                group['param_names'].append(name)
        summary = ', '.join(f"{g['layer_id']}:{g['lr']:.3g}" for g in groups.values())
        print_log(
            f'layer-wise lr decay (rate {rate}): {len(groups)} param groups, '
            f'depth:lr {summary}',
            logger='current')
        return list(groups.values())

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):  # a DDP / model wrapper
            model = model.module
        optimizer_cfg = dict(self.optimizer_cfg)
        optimizer_cfg['params'] = self.param_groups(model)
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))
