"""mmext's registry nodes: children of mmengine's root registries with scope ``mmext``.

mmext never registers into mmdet's, mmseg's or mmpretrain's registries (our FCOSHead would clash
with theirs).  Each node below hangs off the mmengine root, next to the toolboxes' nodes, so

* inside mmext configs (``default_scope = 'mmext'``) ``type='FCOSHead'`` is ours and
  ``type='mmdet.ResNet'`` reaches a sibling toolbox;
* inside an mmdet/mmseg/mmpretrain config, ``type='mmext.FCOSHead'`` reaches ours once
  ``custom_imports = dict(imports=['mmext'], allow_failed_imports=False)`` is set (mmengine also
  imports ``mmext.registry`` by itself when it meets the ``mmext.`` prefix).

An unknown type raises :class:`UnknownTypeError`, a ``KeyError`` that names the registry, the scope
and the closest registered names.  ``locations`` make every lookup import the modules that register
into a node, so building from a config never depends on what the caller imported first.
"""
import copy
import difflib
from typing import Any, Dict, Iterator, List, Optional, Type

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import \
    RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import \
    WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

__all__ = [
    'UnknownTypeError', 'MMExtRegistry', 'RUNNERS', 'RUNNER_CONSTRUCTORS', 'LOOPS', 'HOOKS',
    'LOG_PROCESSORS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'FUNCTIONS', 'MODELS',
    'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'METRICS', 'EVALUATOR', 'TASK_UTILS',
    'VISUALIZERS', 'VISBACKENDS', 'build_with_fallback'
]


class UnknownTypeError(KeyError):
    """A config names a type that no reachable registry node holds."""

    def __str__(self) -> str:  # KeyError would repr() the message and escape its quotes
        return str(self.args[0])


class MMExtRegistry(Registry):
    """A :class:`Registry` whose failed lookups say what was meant.

    mmengine's ``Registry.get`` returns ``None`` and ``build_from_cfg`` then raises a ``KeyError``
    that only says the name is missing.  Here the error lists the nearest names reachable from
    this node: our own, our ancestors', and those of sibling scopes with their prefix
    (``mmdet.FCOSHead``), so a typo or a forgotten scope prefix is a one-glance fix.
    """

    def get(self, key: str) -> Optional[Type]:
        obj = super().get(key)
        if obj is None:
            raise UnknownTypeError(self._unknown_message(key))
        return obj

    def __contains__(self, key: str) -> bool:
        # mmengine implements `in` through `get`; keep it a pure membership test.
        try:
            return super().get(key) is not None
        except Exception:
            return False

    def _reachable_names(self) -> Iterator[str]:
        node: Optional[Registry] = self
        while node is not None:  # this node and its ancestors, unprefixed
            yield from node.module_dict
            node = node.parent
        root = self._get_root_registry()
        for scope, child in root.children.items():
            if child is not self:
                yield from (f'{scope}.{name}' for name in child.module_dict)

    def _unknown_message(self, key: str) -> str:
        scope, real_key = self.split_scope_key(key)
        names = sorted(set(self._reachable_names()))
        close: List[str] = difflib.get_close_matches(key, names, n=5, cutoff=0.6)
        if real_key != key:  # also match the bare name against our own entries
            close += [n for n in difflib.get_close_matches(real_key, names, n=5, cutoff=0.6)
                      if n not in close]
        hint = (f' Did you mean: {", ".join(repr(c) for c in close[:5])}?' if close else
                f' {len(names)} names are reachable from this node; none is close.')
        where = f"scope '{scope}' requested" if scope else f"default scope '{self.scope}'"
        return (f"'{key}' is not in the {self.scope}::{self.name} registry ({where}).{hint} "
                "If it lives in another package, import it through "
                "custom_imports=dict(imports=[...], allow_failed_imports=False) and prefix "
                "the scope, e.g. 'mmdet.ResNet'.")


def build_with_fallback(registry: Registry, cfg: Dict[str, Any],
                        fallback_scope: str = 'mmdet') -> Any:
    """Build ``cfg`` from an mmext ``registry``, reading an unscoped type we lack as the toolbox's.

    Toolbox configs name sub-components without a scope (``loss_cls=dict(type='FocalLoss')``).
    Under mmext's default scope such a name would be searched in mmext and mmengine only, so a head
    that accepts toolbox configs builds its parts through this: a type with no scope prefix that
    mmext itself does not register is read as ``f'{fallback_scope}.{type}'``.

    A toolbox part (fallen back to, or named ``'mmdet.X'``) is built inside that toolbox's scope,
    as mmengine does for ``_scope_``: the parts it builds itself by unscoped name (an mmdet
    assigner's ``ClassificationCost``, a backbone's layers) then resolve in its own toolbox.
    """
    cfg = copy.deepcopy(cfg)
    registry.import_from_location()  # our names must all be known before we decide to fall back
    obj_type = cfg.get('type')
    if isinstance(obj_type, str):
        scope, name = Registry.split_scope_key(obj_type)
        if scope is None and obj_type not in registry.module_dict:
            scope = fallback_scope
            cfg['type'] = f'{scope}.{name}'
        if scope is not None and scope != registry.scope:
            cfg.setdefault('_scope_', scope)
    return registry.build(cfg)


def _node(name: str, parent: Registry, *locations: str) -> MMExtRegistry:
    return MMExtRegistry(name, parent=parent, scope='mmext', locations=list(locations))


# Training and evaluation machinery.
RUNNERS = _node('runner', MMENGINE_RUNNERS, 'mmext.engine')
RUNNER_CONSTRUCTORS = _node('runner constructor', MMENGINE_RUNNER_CONSTRUCTORS, 'mmext.engine')
LOOPS = _node('loop', MMENGINE_LOOPS, 'mmext.engine')
HOOKS = _node('hook', MMENGINE_HOOKS, 'mmext.engine')
LOG_PROCESSORS = _node('log_processor', MMENGINE_LOG_PROCESSORS, 'mmext.engine')

# Data.
DATASETS = _node('dataset', MMENGINE_DATASETS, 'mmext.datasets')
DATA_SAMPLERS = _node('data sampler', MMENGINE_DATA_SAMPLERS, 'mmext.datasets')
TRANSFORMS = _node('transform', MMENGINE_TRANSFORMS, 'mmext.datasets')
FUNCTIONS = _node('function', MMENGINE_FUNCTIONS, 'mmext.datasets')

# Models.
MODELS = _node('model', MMENGINE_MODELS, 'mmext.models')
MODEL_WRAPPERS = _node('model_wrapper', MMENGINE_MODEL_WRAPPERS, 'mmext.models')
WEIGHT_INITIALIZERS = _node('weight initializer', MMENGINE_WEIGHT_INITIALIZERS, 'mmext.models')
TASK_UTILS = _node('task util', MMENGINE_TASK_UTILS, 'mmext.models')

# Optimisation.
OPTIMIZERS = _node('optimizer', MMENGINE_OPTIMIZERS, 'mmext.engine')
OPTIM_WRAPPERS = _node('optim_wrapper', MMENGINE_OPTIM_WRAPPERS, 'mmext.engine')
OPTIM_WRAPPER_CONSTRUCTORS = _node('optimizer constructor', MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                   'mmext.engine')
PARAM_SCHEDULERS = _node('parameter scheduler', MMENGINE_PARAM_SCHEDULERS, 'mmext.engine')

# Evaluation and visualisation.
METRICS = _node('metric', MMENGINE_METRICS, 'mmext.evaluation')
EVALUATOR = _node('evaluator', MMENGINE_EVALUATOR, 'mmext.evaluation')
VISUALIZERS = _node('visualizer', MMENGINE_VISUALIZERS, 'mmext.visualization')
VISBACKENDS = _node('vis_backend', MMENGINE_VISBACKENDS, 'mmext.visualization')
