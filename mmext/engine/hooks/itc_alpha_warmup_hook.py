"""Linear warm-up of the momentum-distillation weight ``alpha`` of ALBEF/BLIP's ITC loss.

ALBEF (Li et al., NeurIPS 2021, Sec. 3.3) trusts the momentum model's pseudo-targets only once it
has learnt something: during the first epoch ``alpha`` rises linearly from 0 to its final value
(``alpha * min(1, i / len(loader))``), then stays there.  This hook sets the attribute before
every training iteration, iteration-based so it also works with ``IterBasedTrainLoop``.
"""
import operator
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmext.registry import HOOKS

__all__ = ['ITCAlphaWarmupHook']


@HOOKS.register_module()
class ITCAlphaWarmupHook(Hook):
    """Set ``<model>.<module_name>.alpha = alpha * min(1, iter / warmup_iters)`` each iteration.

    Args:
        module_name: Dotted path of the module holding ``alpha`` (``'loss_itc'`` for
            :class:`mmext.DualEncoderITC`, ``'head'`` for ``mmpretrain.BlipRetrieval``).
        alpha: Final value; ``None`` takes the module's value when training starts.
        warmup_iters: Length of the ramp; ``None`` means one epoch (ALBEF's choice), i.e.
            ``len(runner.train_dataloader)``.
    """

    priority = 'NORMAL'

    def __init__(self,
                 module_name: str = 'loss_itc',
                 alpha: Optional[float] = None,
                 warmup_iters: Optional[int] = None) -> None:
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f'ITCAlphaWarmupHook alpha must be in [0, 1], got {alpha!r}')
        if warmup_iters is not None and (not isinstance(warmup_iters, int) or warmup_iters < 0):
            raise ValueError('ITCAlphaWarmupHook warmup_iters must be an int >= 0 or None, got '
                             f'{warmup_iters!r}')
        self.module_name = module_name
        self.alpha = alpha
        self.warmup_iters = warmup_iters

    def _module(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            module = operator.attrgetter(self.module_name)(model)
        except AttributeError as e:
            raise AttributeError(f"ITCAlphaWarmupHook: the model ({type(model).__name__}) has no "
                                 f"module '{self.module_name}' ({e})") from None
        if not hasattr(module, 'alpha'):
            raise AttributeError(f"ITCAlphaWarmupHook: '{self.module_name}' "
                                 f'({type(module).__name__}) has no attribute alpha')
        return module

    def before_train(self, runner) -> None:
        module = self._module(runner)
        if self.alpha is None:
            self.alpha = float(module.alpha)
        if self.warmup_iters is None:
            self.warmup_iters = len(runner.train_dataloader)

    def value_at(self, it: int) -> float:
        if not self.warmup_iters:
            return float(self.alpha)
        return float(self.alpha) * min(1.0, it / self.warmup_iters)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._module(runner).alpha = self.value_at(runner.iter)
