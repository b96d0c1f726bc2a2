"""mmext's registry nodes: children of mmengine's root registries with scope ``mmext``.

mmext never registers into mmdet's, mmseg's or mmpretrain's registries (our FCOSHead would clash
with theirs).  Each node below hangs off the mmengine root, next to the toolboxes' nodes, so

* inside mmext configs (``default_scope = 'mmext'``) ``type='FCOSHead'`` is ours and
  ``type='mmdet.ResNet'`` reaches a sibling toolbox;
* inside an mmdet/mmseg/mmpretrain config, ``type='mmext.FCOSHead'`` reaches ours once
  ``custom_imports = dict(imports=['mmext'], allow_failed_imports=False)`` is set (mmengine also
  imports ``mmext.registry`` by itself when it meets the ``mmext.`` prefix).

An unknown type raises :class:`UnknownTypeError`, a ``KeyError`` that names the registry, the scope
and the closest registered names.  Each node lists its *areas*, the modules that register into it
with the install extra they need; a lookup imports them (core first) until the name is found, so
building from a config never depends on what the caller imported first, and a recommender config
never imports the vision toolboxes.
"""
import contextlib
import copy
import difflib
import importlib
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

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
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import DefaultScope, Registry

__all__ = [
    'UnknownTypeError', 'MissingExtraError', 'MMExtRegistry', 'RUNNERS', 'RUNNER_CONSTRUCTORS',
    'LOOPS', 'HOOKS', 'LOG_PROCESSORS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'FUNCTIONS',
    'MODELS', 'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'METRICS', 'EVALUATOR', 'TASK_UTILS',
    'VISUALIZERS', 'VISBACKENDS', 'build_with_fallback', 'explain_unknown_type',
    'explained_unknown_types'
]


class UnknownTypeError(KeyError):
    """A config names a type that no reachable registry node holds."""

    def __str__(self) -> str:  # KeyError would repr() the message and escape its quotes
        return str(self.args[0])


class MissingExtraError(UnknownTypeError, ImportError):
    """A config names an mmext component whose toolbox (an install extra) is not installed."""


# An area is a module that registers into a node, with the install extra its imports need
# (``None``: the lean core, torch + mmengine).  What each extra brings is in setup.py.
Area = Tuple[str, Optional[str]]
TOOLBOXES = ('mmcv', 'mmdet', 'mmseg', 'mmpretrain')


class MMExtRegistry(Registry):
    """A :class:`Registry` that imports its areas lazily and says what was meant when a lookup
    fails.

    mmengine's ``locations`` are imported all at once on the first lookup.  Here a lookup imports
    the node's areas one at a time, core first, and stops as soon as the name is known -- here or,
    for an unscoped name, in an ancestor (``OptimWrapper``) -- so building ``SASRec`` never
    imports mmdet.  An area whose toolbox is not installed is remembered, not raised: a name that
    it defines fails with :class:`MissingExtraError`, naming the extra to install.

    mmengine's ``Registry.get`` returns ``None`` and ``build_from_cfg`` then raises a ``KeyError``
    that only says the name is missing.  Here the error lists the nearest names reachable from
    this node: our own, our ancestors', and those of sibling scopes with their prefix
    (``mmdet.FCOSHead``), so a typo or a forgotten scope prefix is a one-glance fix.
    """

    def __init__(self, name: str, parent: Registry, areas: Sequence[Area] = ()) -> None:
        super().__init__(name, parent=parent, scope='mmext', locations=[m for m, _ in areas])
        self.areas = list(areas)
        self._pending = list(areas)
        self._missing: Dict[str, Tuple[Optional[str], ImportError]] = {}
        self._in_get = False

    def _import_areas(self, until: Optional[str] = None, ancestors: bool = True) -> None:
        """Import pending areas in order; with ``until``, stop once that name is known here or,
        with ``ancestors``, in an ancestor -- the latter only past the core areas, so a core name
        that shadows mmengine's (``mmext.Runner``) still wins, as with mmengine's ``locations``.
        No vision area may shadow an ancestor's name (tests/test_lean_core.py)."""
        while self._pending:
            past_core = self._pending[0][1] is not None
            if until is not None and self._known(until, ancestors and past_core):
                return
            module, extra = self._pending.pop(0)
            try:
                importlib.import_module(module)
            except ImportError as e:
                if extra is None or (e.name or '').split('.')[0] not in TOOLBOXES:
                    raise  # a core area must import, and other import errors are real bugs
                self._missing[module] = (extra, e)

    def _known(self, name: str, ancestors: bool) -> bool:
        node: Optional[Registry] = self
        while node is not None:
            if name in node.module_dict:
                return True
            node = node.parent if ancestors else None
        return False

    def import_from_location(self) -> None:
        """Import every area; a missing extra is remembered, not raised.  ``Registry.get`` calls
        this first thing: there our own :meth:`get` has already imported what the key needs."""
        if not self._in_get:
            self._import_areas()

    def _lookup(self, key: str) -> Optional[Type]:
        """mmengine's lookup, after importing only the areas up to the one that has ``key``."""
        scope, real_key = self.split_scope_key(key)
        if scope in (None, self.scope):
            self._import_areas(until=real_key, ancestors=scope is None)
        self._in_get = True
        try:
            return super().get(key)
        finally:
            self._in_get = False

    def get(self, key: str) -> Optional[Type]:
        obj = self._lookup(key)
        if obj is None:
            real_key = self.split_scope_key(key)[1]
            raise self._missing_extra(real_key) or UnknownTypeError(self._unknown_message(key))
        return obj

    def __contains__(self, key: str) -> bool:
        # mmengine implements `in` through `get`; keep it a pure membership test.
        try:
            return self._lookup(key) is not None
        except Exception:
            return False

    def _missing_extra(self, name: str) -> Optional[MissingExtraError]:
        """The error for ``name`` when an area that could not be imported defines it."""
        pattern = re.compile(
            rf'^class {re.escape(name)}\b|register_module\(name=.{re.escape(name)}.', re.MULTILINE)
        for module, (extra, error) in self._missing.items():
            for path in _source_files(module):
                if pattern.search(path.read_text(encoding='utf-8')):
                    return MissingExtraError(
                        f"'{name}' ({path.relative_to(Path(__file__).parent.parent)}) needs "
                        f"{error.name}, which is not installed: pip install 'mmext[{extra}]' "
                        "(or 'mmext[all]').")
        return None

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
        self._import_areas()  # every name we could suggest
        scope, real_key = self.split_scope_key(key)
        names = sorted(set(self._reachable_names()))
        close: List[str] = difflib.get_close_matches(key, names, n=5, cutoff=0.6)
        if real_key != key:  # also match the bare name against our own entries
            close += [
                n for n in difflib.get_close_matches(real_key, names, n=5, cutoff=0.6)
                if n not in close
            ]
        config_scope = _config_scope()
        if config_scope not in (None, self.scope):
            # reached through the 'mmext.' prefix from another toolbox's config: there our names
            # need the prefix, and the sibling toolbox's own names do not
            close = [
                f'{self.scope}.{c}' if c in self.module_dict else
                c.split('.', 1)[1] if c.startswith(f'{config_scope}.') else c for c in close
            ]
        hint = (f' Did you mean: {", ".join(repr(c) for c in close[:5])}?'
                if close else f' {len(names)} names are reachable from this node; none is close.')
        if scope or config_scope in (None, self.scope):
            where = (f"scope '{scope}' requested" if scope else f"default scope '{self.scope}'")
        else:
            where = (f"requested as '{self.scope}.{key}' from a config whose default scope is "
                     f"'{config_scope}'")
        missing = ''
        if self._missing:
            missing = (' Not searched, for want of their toolbox: ' +
                       ', '.join(f'{m} ([{x}])' for m, (x, _) in self._missing.items()) + '.')
        return (f"'{key}' is not in the {self.scope}::{self.name} registry ({where}).{hint} "
                "If it lives in another package, import it through "
                "custom_imports=dict(imports=[...], allow_failed_imports=False) and prefix "
                f"the scope, e.g. 'mmdet.ResNet'.{missing}")


def _config_scope() -> Optional[str]:
    """The default scope of the config being built (mmengine switches it per ``_scope_``)."""
    current = DefaultScope.get_current_instance()
    return current.scope_name if current is not None else None


# mmengine's build_from_cfg: "{type} is not in the {scope}::{registry} registry. Please check ..."
_MMENGINE_UNKNOWN = re.compile(
    r"^(?P<type>\S+) is not in the (?P<scope>\w+)::(?P<node>.+?) registry\.")


def explain_unknown_type(error: KeyError) -> Optional[UnknownTypeError]:
    """mmengine's bare "X is not in the mmdet::dataset registry" as an :class:`UnknownTypeError`
    that says whether mmext has ``X`` (or a close name), to be written ``'mmext.X'`` in a
    toolbox's config; ``None`` for any other ``KeyError``."""
    match = _MMENGINE_UNKNOWN.match(str(error.args[0]) if error.args else '')
    if match is None or isinstance(error, UnknownTypeError):
        return None
    name, scope, node_name = match['type'], match['scope'], match['node']
    node = next(
        (n for n in globals().values() if isinstance(n, MMExtRegistry) and n.name == node_name),
        None)
    if node is None:
        return None
    node._import_areas()
    ours = sorted(node.module_dict)
    if name in ours:
        hint = (f"mmext has '{name}': write type='mmext.{name}' (with custom_imports="
                "dict(imports=['mmext'], allow_failed_imports=False) in the config).")
    else:
        close = difflib.get_close_matches(name, ours, n=5, cutoff=0.6)
        if not close:
            return None
        hint = 'Did you mean one of mmext\'s: ' + ', '.join(f"'mmext.{c}'" for c in close) + '?'
    return UnknownTypeError(f"'{name}' is not in the {scope}::{node_name} registry (the "
                            f"config's default scope is '{scope}'). {hint}")


@contextlib.contextmanager
def explained_unknown_types() -> Iterator[None]:
    """Re-raise mmengine's bare unknown-type ``KeyError`` as :func:`explain_unknown_type` says."""
    try:
        yield
    except KeyError as error:
        better = explain_unknown_type(error)
        if better is None:
            raise
        raise better from error


def _source_files(module: str) -> List[Path]:
    """The ``.py`` files of ``module`` (a module or a package), found without importing it."""
    path = Path(__file__).parent.joinpath(*module.split('.')[1:])
    if path.is_dir():
        return sorted(path.rglob('*.py'))
    return [path.with_suffix('.py')] if path.with_suffix('.py').exists() else []


def build_with_fallback(registry: Registry,
                        cfg: Dict[str, Any],
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


def _node(name: str, parent: Registry, *areas: Area) -> MMExtRegistry:
    return MMExtRegistry(name, parent=parent, areas=areas)


# The areas, core first.  tests/test_registry.py checks that they cover every module that
# registers into a node and that each imports with its extra alone.
ENGINE = [('mmext.engine', None)]
DATA = [('mmext.datasets.recsys', None), ('mmext.datasets.digits', None),
        ('mmext.datasets.digits_captions', None), ('mmext.datasets.tiled', None),
        ('mmext.datasets.coco', 'det'), ('mmext.datasets.shapes', 'det'),
        ('mmext.datasets.voc_xml', 'det'), ('mmext.datasets.neon_trees', 'det'),
        ('mmext.datasets.transforms', 'det'), ('mmext.datasets.shapes_seg', 'seg')]
MODEL = [('mmext.models.recommenders', None), ('mmext.models.multimodal', None),
         ('mmext.models.losses', None), ('mmext.models.text_encoders', None),
         ('mmext.models.layers', None), ('mmext.ops', None), ('mmext.models.backbones', 'pretrain'),
         ('mmext.models.layers.detr_transformer', 'det'),
         ('mmext.models.layers.deformable_detr_transformer', 'det'),
         ('mmext.models.layers.dino_transformer', 'det'), ('mmext.models.dense_heads', 'det'),
         ('mmext.models.detectors', 'det'), ('mmext.models.seg_heads', 'seg')]
TASK = [('mmext.models.text_encoders', None), ('mmext.models.task_modules', 'det')]

# Training and evaluation machinery.
RUNNERS = _node('runner', MMENGINE_RUNNERS, *ENGINE)
RUNNER_CONSTRUCTORS = _node('runner constructor', MMENGINE_RUNNER_CONSTRUCTORS, *ENGINE)
LOOPS = _node('loop', MMENGINE_LOOPS, *ENGINE)
HOOKS = _node('hook', MMENGINE_HOOKS, *ENGINE)
LOG_PROCESSORS = _node('log_processor', MMENGINE_LOG_PROCESSORS, *ENGINE)

# Data.
DATASETS = _node('dataset', MMENGINE_DATASETS, *DATA)
DATA_SAMPLERS = _node('data sampler', MMENGINE_DATA_SAMPLERS, *DATA)
TRANSFORMS = _node('transform', MMENGINE_TRANSFORMS, *DATA)
FUNCTIONS = _node('function', MMENGINE_FUNCTIONS, *DATA)

# Models.
MODELS = _node('model', MMENGINE_MODELS, *MODEL)
MODEL_WRAPPERS = _node('model_wrapper', MMENGINE_MODEL_WRAPPERS, *ENGINE)
WEIGHT_INITIALIZERS = _node('weight initializer', MMENGINE_WEIGHT_INITIALIZERS)
TASK_UTILS = _node('task util', MMENGINE_TASK_UTILS, *TASK)

# Optimisation.
OPTIMIZERS = _node('optimizer', MMENGINE_OPTIMIZERS, *ENGINE)
OPTIM_WRAPPERS = _node('optim_wrapper', MMENGINE_OPTIM_WRAPPERS, *ENGINE)
OPTIM_WRAPPER_CONSTRUCTORS = _node('optimizer constructor', MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                   *ENGINE)
PARAM_SCHEDULERS = _node('parameter scheduler', MMENGINE_PARAM_SCHEDULERS, *ENGINE)

# Evaluation and visualisation.
METRICS = _node('metric', MMENGINE_METRICS, ('mmext.evaluation', None))
EVALUATOR = _node('evaluator', MMENGINE_EVALUATOR, ('mmext.evaluation', None))
VISUALIZERS = _node('visualizer', MMENGINE_VISUALIZERS, ('mmext.visualization', None))
VISBACKENDS = _node('vis_backend', MMENGINE_VISBACKENDS, ('mmext.visualization', None))
