"""A fixed probe subset of a dataset, embedded by a model, and the snapshot files that hold it.

:class:`EmbeddingProbe` picks ``size`` samples of a dataset once (``numpy.random.default_rng
(seed)``, no global stream is touched) and embeds exactly those samples whenever it is called,
with the model in eval mode and under ``torch.no_grad``; every module's ``training`` flag is put
back afterwards as it was.  What "the embedding" is comes from an *embedder* (``embedding=`` of
the probe and of the hook):

* ``'classifier'``: ``model.extract_feat(inputs, stage='pre_logits')``, the feature the
  classification head's last linear layer reads (mmpretrain's ``ImageClassifier`` with
  ``mmext.VisionTransformer``: its pooled feature, or its class token with
  ``out_type='cls_token'``); name ``embedding``;
* ``'vit_cls_token'``: the class token after the ViT's final LayerNorm (forward hook on
  ``backbone.ln1``), whatever the backbone's ``out_type``; name ``embedding``;
* ``'sasrec'``: :meth:`mmext.SASRec.encode` at the newest position, the user representation
  that scores every item; name ``user``;
* ``'gru4rec'``: :class:`mmext.GRU4Rec`'s last-layer output after a session's items but the
  last, the representation that scores the last item; name ``session``;
* ``'itc'``: :class:`mmext.DualEncoderITC`'s normalised image and caption projections (one shared
  space); names ``image`` and ``text``;
* ``'auto'``: one of the above, from the model's class;
* ``dict(type='module', module='a.b', pool='auto', index=-1, forward_mode='tensor')``: the
  output of submodule ``a.b`` during ``model(**data, mode=forward_mode)``, taken by a forward
  hook (the module's last call wins);
* ``dict(type='method', method='f', kwargs={}, pool='auto', index=-1)``: ``model.f(inputs,
  **kwargs)``.

``pool`` turns an output into ``(B, D)``: ``'auto'`` keeps ``(B, D)`` and averages tokens
``(B, N, D)`` or positions ``(B, C, H, W)``; ``'cls'`` takes token 0, ``'last'`` the last token,
``'mean'``/``'max'`` reduce the tokens, ``'flatten'`` flattens; a tuple output is indexed with
``index`` first.

Per sample the probe also keeps the label (``data_sample.<label_key>``, -1 without), a
thumbnail of the input image (image datasets) and a text (the caption, or the user/session and
target item ids for recommenders).

Snapshots: ``<dir>/iter_<iteration:07d>.npz`` (numpy, no pickle) with ``names`` (str ``(K,)``),
``embeddings_<name>`` (float32 ``(N, D)``), ``labels`` (int64 ``(N,)``), ``indices`` (int64
``(N,)``, the probe's dataset indices), ``iter`` (int64) and ``epoch`` (float64: epochs
trained, fractional between epoch ends) scalars and optionally
``thumbnails`` (uint8 ``(N, h, w, C)``) and ``texts`` (str ``(N,)``); ``<dir>/index.json`` lists
them with the probe's description.  :func:`load_trajectory` reads them back.
"""
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'EMBEDDERS', 'TRAJECTORY_DIR', 'INDEX_FILE', 'ProbeEmbedding', 'Snapshot', 'EmbeddingProbe',
    'select_probe', 'build_embedder', 'snapshot_name', 'save_snapshot', 'load_snapshot',
    'write_index', 'read_index', 'load_trajectory', 'NoSnapshotsError'
]

#: sub-directory of the work dir the hook writes to
TRAJECTORY_DIR = 'trajectory'
INDEX_FILE = 'index.json'
FORMAT_VERSION = 1


class NoSnapshotsError(FileNotFoundError):
    """No embedding snapshot where one was looked for."""


# ----------------------------------------------------------------------------- results
@dataclass
class ProbeEmbedding:
    """The probe embedded once.

    Attributes:
        embeddings: ``{name: (N, D) float32}``, one entry per embedding kind (``image``,
            ``text``...), in the embedder's order.
        labels: ``(N,)`` int64 class per sample, -1 = none.
        indices: ``(N,)`` int64 dataset index per sample (population index for GRU4Rec:
            the session).
        thumbnails: ``(N, h, w, C)`` uint8 input images, or None.
        texts: ``(N,)`` str per sample (caption, ids), or None.
    """
    embeddings: Dict[str, np.ndarray]
    labels: np.ndarray
    indices: np.ndarray
    thumbnails: Optional[np.ndarray] = None
    texts: Optional[np.ndarray] = None


@dataclass
class Snapshot(ProbeEmbedding):
    """A :class:`ProbeEmbedding` read from disk, with when it was taken."""
    iteration: int = 0
    epoch: float = 0.0
    path: Optional[Path] = None


# ----------------------------------------------------------------------------- pooling
_POOLS = ('auto', 'cls', 'last', 'mean', 'max', 'flatten')


def _pool(out: Any, pool: str = 'auto', index: int = -1) -> Tensor:
    """A module's output as ``(B, D)`` (see the module docstring for the rules)."""
    if isinstance(out, (tuple, list)):
        out = out[index]
    if isinstance(out, dict):
        raise TypeError('embedding output is a dict; point the embedder at a module or method '
                        'that returns a tensor')
    if not isinstance(out, Tensor):
        raise TypeError(f'embedding output is a {type(out).__name__}, not a tensor')
    if pool == 'flatten' or out.dim() == 2 and pool == 'auto':
        return out.flatten(1)
    if out.dim() == 2:
        raise ValueError(f"pool='{pool}' needs token or spatial features, got (B, D) "
                         f'{tuple(out.shape)}; use pool=\'auto\'')
    if out.dim() == 4:  # (B, C, H, W) -> tokens (B, HW, C)
        out = out.flatten(2).transpose(1, 2)
    if out.dim() != 3:
        raise ValueError(f'cannot pool an output of shape {tuple(out.shape)}')
    if pool == 'cls':
        return out[:, 0]
    if pool == 'last':
        return out[:, -1]
    if pool == 'max':
        return out.amax(1)
    return out.mean(1)  # 'auto' / 'mean'


def _scalar(value: Any) -> int:
    return int(torch.as_tensor(value).reshape(-1)[0])


# ----------------------------------------------------------------------------- embedders
class Embedder:
    """Embeds probe samples; subclasses give :meth:`forward` (or override :meth:`embed`).

    The default :meth:`embed` reads the samples ``dataset[i]``, batches them with
    ``collate_fn``, keeps each sample's label, thumbnail and text from the raw batch, runs the
    model's data preprocessor (``training=False``) and :meth:`forward`.
    """

    #: names of the embeddings :meth:`forward` returns, in order
    names: Tuple[str, ...] = ('embedding', )

    def population(self, dataset: Any) -> int:
        """How many samples the probe is drawn from."""
        return len(dataset)

    def forward(self, model: nn.Module, data: Dict[str, Any]) -> Dict[str, Tensor]:
        raise NotImplementedError

    def texts(self, batch: Dict[str, Any]) -> Optional[List[str]]:
        samples = batch.get('data_samples')
        if not samples:
            return None
        texts = [s.get('text') if hasattr(s, 'get') else None for s in samples]
        return texts if all(isinstance(t, str) for t in texts) else None

    def embed(self, model: nn.Module, dataset: Any, indices: np.ndarray, collate_fn: Callable,
              batch_size: int, label_key: str, thumbnail_size: int,
              bgr_to_rgb: Optional[bool]) -> ProbeEmbedding:
        if bgr_to_rgb is None:  # OpenMMLab loads BGR; the preprocessor says if it flips
            bgr_to_rgb = bool(getattr(model.data_preprocessor, '_channel_conversion', False))
        chunks: Dict[str, List[np.ndarray]] = {}
        labels: List[int] = []
        thumbs: List[Optional[np.ndarray]] = []
        texts: List[Optional[str]] = []
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            batch = collate_fn([dataset[int(i)] for i in chunk])
            labels += _labels(batch, label_key, len(chunk))
            thumbs += _thumbnails(batch, len(chunk), thumbnail_size, bgr_to_rgb)
            texts += self.texts(batch) or [None] * len(chunk)
            data = model.data_preprocessor(batch, False)
            out = self.forward(model, data)
            for name in self.names:
                chunks.setdefault(name, []).append(out[name].detach().float().cpu().numpy().reshape(
                    len(chunk), -1))
        return ProbeEmbedding(
            embeddings={
                k: np.concatenate(v)
                for k, v in chunks.items()
            },
            labels=np.asarray(labels, dtype=np.int64),
            indices=np.asarray(indices, dtype=np.int64),
            thumbnails=np.stack(thumbs) if all(t is not None for t in thumbs) else None,
            texts=np.asarray(texts, dtype=str) if all(t is not None for t in texts) else None)


def _labels(batch: Dict[str, Any], key: str, n: int) -> List[int]:
    samples = batch.get('data_samples')
    if not samples:
        return [-1] * n
    out = []
    for s in samples:
        value = s.get(key) if hasattr(s, 'get') else None
        out.append(-1 if value is None else _scalar(value))
    return out


def _thumbnails(batch: Dict[str, Any], n: int, size: int,
                bgr_to_rgb: bool) -> List[Optional[np.ndarray]]:
    """The raw input images (before the data preprocessor) as ``(size, size, C)`` uint8, the
    long side fitted to ``size`` and the short one padded with zeros; None when the inputs are
    not images."""
    inputs = batch.get('inputs')
    if isinstance(inputs, Tensor) and inputs.dim() == 4:
        inputs = list(inputs)
    if not isinstance(inputs, (list, tuple)) or len(inputs) != n or size <= 0:
        return [None] * n
    out: List[Optional[np.ndarray]] = []
    for img in inputs:
        if not isinstance(img, Tensor) or img.dim() != 3 or img.shape[0] not in (1, 3):
            return [None] * n
        x = img.detach().float().cpu()
        h, w = x.shape[1:]
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(
                x[None], size=(nh, nw), mode='bilinear', align_corners=False, antialias=scale
                < 1)[0]
        canvas = torch.zeros(x.shape[0], size, size)
        top, left = (size - nh) // 2, (size - nw) // 2
        canvas[:, top:top + nh, left:left + nw] = x
        if canvas.shape[0] == 3 and bgr_to_rgb:
            canvas = canvas.flip(0)
        out.append(canvas.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    return out


class MethodEmbedder(Embedder):
    """``model.<method>(inputs, **kwargs)``, pooled to ``(B, D)``."""

    def __init__(self,
                 method: str,
                 kwargs: Optional[dict] = None,
                 pool: str = 'auto',
                 index: int = -1,
                 name: str = 'embedding') -> None:
        if pool not in _POOLS:
            raise ValueError(f'embedding pool must be one of {_POOLS}, got {pool!r}')
        self.method, self.kwargs, self.pool, self.index = method, dict(kwargs or {}), pool, index
        self.names = (name, )

    def forward(self, model: nn.Module, data: Dict[str, Any]) -> Dict[str, Tensor]:
        fn = getattr(model, self.method, None)
        if not callable(fn):
            raise AttributeError(f'embedding method {self.method!r}: {type(model).__name__} has '
                                 'no such method')
        return {self.names[0]: _pool(fn(data['inputs'], **self.kwargs), self.pool, self.index)}


class ModuleEmbedder(Embedder):
    """The output of submodule ``module`` during ``model(**data, mode=forward_mode)``, taken by a
    forward hook (the last call of the module wins), pooled to ``(B, D)``."""

    def __init__(self,
                 module: str,
                 pool: str = 'auto',
                 index: int = -1,
                 forward_mode: str = 'tensor',
                 name: str = 'embedding') -> None:
        if pool not in _POOLS:
            raise ValueError(f'embedding pool must be one of {_POOLS}, got {pool!r}')
        self.module, self.pool, self.index, self.forward_mode = module, pool, index, forward_mode
        self.names = (name, )

    def forward(self, model: nn.Module, data: Dict[str, Any]) -> Dict[str, Tensor]:
        try:
            target = model.get_submodule(self.module)
        except AttributeError as e:
            raise AttributeError(f'embedding module {self.module!r} is not a submodule of '
                                 f'{type(model).__name__}: {e}') from None
        captured: List[Any] = []
        handle = target.register_forward_hook(lambda mod, args, out: captured.append(out))
        try:
            model(**data, mode=self.forward_mode)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"embedding module {self.module!r} did not run during "
                               f"model(..., mode='{self.forward_mode}')")
        return {self.names[0]: _pool(captured[-1], self.pool, self.index)}


class SASRecEmbedder(Embedder):
    """:meth:`mmext.SASRec.encode` at the newest position of the history, as ``predict`` scores
    it (``scores = user @ item_embedding^T``)."""

    names = ('user', )

    def forward(self, model: nn.Module, data: Dict[str, Any]) -> Dict[str, Tensor]:
        seq = data['inputs']['seq']
        return {'user': model.encode(seq, seq.size(1) - 1)[:, -1]}

    def texts(self, batch: Dict[str, Any]) -> Optional[List[str]]:
        inputs = batch['inputs']
        users, targets = inputs.get('user'), inputs.get('target')
        if users is None or targets is None:
            return None
        return [f'user {int(u)} -> item {int(t)}' for u, t in zip(users, targets)]


class GRU4RecEmbedder(Embedder):
    """:class:`mmext.GRU4Rec`'s last-layer output after a session's items but the last, i.e.
    the hidden state that scores the session's last item.  The probe draws *sessions* of the
    :class:`~mmext.datasets.recsys.SessionDataset` (``dataset.items``/``dataset.offsets``).

    The sessions of a batch are run side by side from zero states, left-aligned: after step
    ``t`` the rows whose input has ``t + 1`` items are read off; finished rows keep stepping on
    padding, which no one reads.  The model's carried states (``_states``) are put back after.
    """

    names = ('session', )

    def population(self, dataset: Any) -> int:
        if not hasattr(dataset, 'offsets') or not hasattr(dataset, 'items'):
            raise TypeError("embedding='gru4rec' needs a SessionDataset (items, offsets), got "
                            f'{type(dataset).__name__}')
        return len(dataset.offsets) - 1

    def embed(self, model: nn.Module, dataset: Any, indices: np.ndarray, collate_fn: Callable,
              batch_size: int, label_key: str, thumbnail_size: int,
              bgr_to_rgb: Optional[bool]) -> ProbeEmbedding:
        items = torch.as_tensor(dataset.items)
        offsets = np.asarray(dataset.offsets)
        device = next(model.parameters()).device
        saved = getattr(model, '_states', None)
        saved = dict(saved) if isinstance(saved, dict) else saved
        outputs, texts = [], []
        try:
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                sessions = [items[offsets[s]:offsets[s + 1]] for s in chunk]
                inputs = [s[:-1] for s in sessions]  # the last item is the target
                lengths = torch.tensor([len(s) for s in inputs])
                steps = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
                for row, s in enumerate(inputs):
                    steps[row, :len(s)] = s
                model.reset_state()
                out = None
                for t in range(steps.shape[1]):
                    x = model.step(steps[:, t].to(device))
                    if out is None:
                        out = x.new_zeros(x.shape)
                    done = (lengths == t + 1).to(device)
                    out[done] = x[done]
                outputs.append(out.float().cpu().numpy())
                texts += [
                    f'session {int(s)} -> item {int(sess[-1])}' for s, sess in zip(chunk, sessions)
                ]
        finally:
            if saved is not None:
                model._states = saved
        return ProbeEmbedding(
            embeddings={'session': np.concatenate(outputs)},
            labels=np.full(len(indices), -1, dtype=np.int64),
            indices=np.asarray(indices, dtype=np.int64),
            texts=np.asarray(texts, dtype=str))


class ITCEmbedder(Embedder):
    """:class:`mmext.DualEncoderITC`: ``image_features(inputs)`` and ``text_features(captions)``,
    both unit-norm in the shared space."""

    names = ('image', 'text')

    def forward(self, model: nn.Module, data: Dict[str, Any]) -> Dict[str, Tensor]:
        texts = [s.get('text') for s in data['data_samples']]
        return dict(image=model.image_features(data['inputs']), text=model.text_features(texts))


#: ready-made embedders, by name
EMBEDDERS: Dict[str, Callable[[], Embedder]] = {
    'classifier': lambda: MethodEmbedder('extract_feat', dict(stage='pre_logits')),
    'vit_cls_token': lambda: ModuleEmbedder('backbone.ln1', pool='cls'),
    'sasrec': SASRecEmbedder,
    'gru4rec': GRU4RecEmbedder,
    'itc': ITCEmbedder,
}
_AUTO = {'SASRec': 'sasrec', 'GRU4Rec': 'gru4rec', 'DualEncoderITC': 'itc'}


def build_embedder(spec: Union[str, dict, Embedder], model: Optional[nn.Module] = None) -> Embedder:
    """An :class:`Embedder` from a name of :data:`EMBEDDERS`, ``'auto'`` (needs ``model``), a
    ``dict(type='module' | 'method', ...)`` or an :class:`Embedder` instance."""
    if isinstance(spec, Embedder):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop('type', None)
        if kind == 'module':
            return ModuleEmbedder(**spec)
        if kind == 'method':
            return MethodEmbedder(**spec)
        if kind in EMBEDDERS and not spec:
            return EMBEDDERS[kind]()
        raise ValueError(f"embedding dict type must be 'module' or 'method', got {kind!r}")
    if spec == 'auto':
        if model is None:
            raise ValueError("embedding='auto' needs the model")
        name = type(model).__name__
        if name in _AUTO:
            return EMBEDDERS[_AUTO[name]]()
        if callable(getattr(model, 'extract_feat', None)):
            return EMBEDDERS['classifier']()
        raise ValueError(f"embedding='auto' does not know {name}; give one of "
                         f"{sorted(EMBEDDERS)} or dict(type='module', module='<path>') / "
                         "dict(type='method', method='<name>')")
    if spec in EMBEDDERS:
        return EMBEDDERS[spec]()
    raise ValueError(f'unknown embedding {spec!r}: expected one of {["auto", *EMBEDDERS]} or '
                     "a dict(type='module' | 'method', ...)")


# ----------------------------------------------------------------------------- the probe
def select_probe(population: int, size: int, seed: int = 0) -> np.ndarray:
    """``min(size, population)`` distinct indices in ``[0, population)``, ascending, drawn by
    ``numpy.random.default_rng(seed)``: the same on every call, machine and rank."""
    if population < 1:
        raise ValueError('the probe dataset is empty')
    if size < 1:
        raise ValueError(f'probe size must be >= 1, got {size}')
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(population, size=min(size, population), replace=False))


def _model_modes(model: nn.Module) -> List[Tuple[nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()]


class EmbeddingProbe:
    """A fixed subset of ``dataset`` and how to embed it.

    Args:
        dataset: The dataset the probe is drawn from (built).
        collate_fn: Batches a list of samples (the dataloader's ``collate_fn``).
        embedding: Embedder spec (:func:`build_embedder`).
        size: Number of probe samples (all if the dataset is smaller).
        seed: Seed of the draw.
        batch_size: Samples per forward pass.
        label_key: Data-sample field holding the class (``gt_label``).
        thumbnail_size: Side of the stored thumbnails (0: none).
        bgr_to_rgb: Flip 3-channel thumbnails; None: when the data preprocessor converts BGR
            to RGB (OpenMMLab's convention for loaded images).
    """

    def __init__(self,
                 dataset: Any,
                 collate_fn: Callable,
                 embedding: Union[str, dict, Embedder] = 'auto',
                 size: int = 256,
                 seed: int = 0,
                 batch_size: int = 64,
                 label_key: str = 'gt_label',
                 thumbnail_size: int = 32,
                 bgr_to_rgb: Optional[bool] = None) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn
        self.embedding, self.size, self.seed = embedding, int(size), int(seed)
        self.batch_size, self.label_key = int(batch_size), label_key
        self.thumbnail_size, self.bgr_to_rgb = int(thumbnail_size), bgr_to_rgb
        self._embedder: Optional[Embedder] = None
        self.indices: Optional[np.ndarray] = None

    def embedder(self, model: nn.Module) -> Embedder:
        if self._embedder is None:
            self._embedder = build_embedder(self.embedding, model)
            self.indices = select_probe(
                self._embedder.population(self.dataset), self.size, self.seed)
        return self._embedder

    def describe(self, model: nn.Module) -> Dict[str, Any]:
        """What the index records about the probe."""
        embedder = self.embedder(model)
        meta = getattr(self.dataset, 'metainfo', None) or {}
        classes = meta.get('classes') if isinstance(meta, dict) else None
        return dict(
            dataset=type(self.dataset).__name__,
            size=int(len(self.indices)),
            seed=self.seed,
            indices=[int(i) for i in self.indices],
            embedding=self.embedding if isinstance(self.embedding,
                                                   (str, dict)) else type(self.embedding).__name__,
            embedder=type(embedder).__name__,
            names=list(embedder.names),
            classes=[str(c) for c in classes] if classes is not None else None)

    @torch.no_grad()
    def embed(self, model: nn.Module) -> ProbeEmbedding:
        """Embed the probe with ``model`` (unwrapped) in eval mode; every module's training flag
        is restored afterwards, exactly (frozen parts stay frozen)."""
        embedder = self.embedder(model)
        modes = _model_modes(model)
        model.eval()
        try:
            return embedder.embed(model, self.dataset, self.indices, self.collate_fn,
                                  self.batch_size, self.label_key, self.thumbnail_size,
                                  self.bgr_to_rgb)
        finally:
            for module, training in modes:
                module.training = training


# ----------------------------------------------------------------------------- files
def snapshot_name(iteration: int) -> str:
    return f'iter_{int(iteration):07d}.npz'


def save_snapshot(path: Union[str, Path], emb: ProbeEmbedding, iteration: int,
                  epoch: float) -> Path:
    """Write ``emb`` as one ``.npz`` (atomically: a reader never sees half a file)."""
    path = Path(path)
    arrays: Dict[str, np.ndarray] = dict(
        names=np.asarray(list(emb.embeddings), dtype=str),
        labels=np.asarray(emb.labels, dtype=np.int64),
        indices=np.asarray(emb.indices, dtype=np.int64),
        iter=np.asarray(int(iteration), dtype=np.int64),
        epoch=np.asarray(float(epoch), dtype=np.float64))
    for name, value in emb.embeddings.items():
        arrays[f'embeddings_{name}'] = np.asarray(value, dtype=np.float32)
    if emb.thumbnails is not None:
        arrays['thumbnails'] = np.asarray(emb.thumbnails, dtype=np.uint8)
    if emb.texts is not None:
        arrays['texts'] = np.asarray(emb.texts, dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.tmp_', suffix='.npz')
    try:
        with os.fdopen(fd, 'wb') as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_snapshot(path: Union[str, Path]) -> Snapshot:
    with np.load(path, allow_pickle=False) as f:
        names = [str(n) for n in f['names']]
        return Snapshot(
            embeddings={n: f[f'embeddings_{n}']
                        for n in names},
            labels=f['labels'],
            indices=f['indices'],
            thumbnails=f['thumbnails'] if 'thumbnails' in f.files else None,
            texts=f['texts'] if 'texts' in f.files else None,
            iteration=int(f['iter']),
            epoch=float(f['epoch']),
            path=Path(path))


def write_index(directory: Union[str, Path], probe: Dict[str, Any],
                snapshots: Sequence[Dict[str, Any]]) -> Path:
    """``index.json``: the probe's description and the snapshots, by iteration."""
    directory = Path(directory)
    index = dict(
        version=FORMAT_VERSION, probe=probe, snapshots=sorted(snapshots, key=lambda s: s['iter']))
    # one line for the probe, one per snapshot: readable, and diffs stay small
    lines = [
        f'{{"version": {FORMAT_VERSION},', f' "probe": {json.dumps(probe)},', ' "snapshots": ['
    ]
    lines += [f'  {json.dumps(s)},' for s in index['snapshots']]
    if index['snapshots']:
        lines[-1] = lines[-1][:-1]
    lines.append(' ]}')
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp_', suffix='.json')
    with os.fdopen(fd, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    os.replace(tmp, directory / INDEX_FILE)
    return directory / INDEX_FILE


def read_index(directory: Union[str, Path]) -> Optional[Dict[str, Any]]:
    path = Path(directory) / INDEX_FILE
    if not path.is_file():
        return None
    with open(path) as f:
        return json.load(f)


def _trajectory_dir(path: Union[str, Path]) -> Path:
    """``path`` itself if it holds snapshots or an index, else ``path/trajectory``."""
    path = Path(path)
    if (path / INDEX_FILE).is_file() or any(path.glob('iter_*.npz')):
        return path
    return path / TRAJECTORY_DIR


def load_trajectory(path: Union[str, Path]) -> Tuple[Dict[str, Any], List[Snapshot]]:
    """The snapshots of a work dir (``<path>/trajectory``) or of a trajectory directory, sorted
    by iteration, with the index's probe description (``{}`` without an index).

    Raises:
        NoSnapshotsError: nothing there, with where it looked and how to get snapshots.
        ValueError: the snapshots do not embed the same probe samples.
    """
    directory = _trajectory_dir(path)
    index = read_index(directory)
    if index is not None:
        files = [directory / s['file'] for s in index['snapshots']]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise NoSnapshotsError(f'{directory / INDEX_FILE} lists snapshots that do not exist: '
                                   f'{missing[:3]}{"..." if len(missing) > 3 else ""}')
    else:
        files = sorted(directory.glob('iter_*.npz'))
    if not files:
        raise NoSnapshotsError(
            f'no embedding snapshots found: looked for {directory / INDEX_FILE} and '
            f'{directory}/iter_*.npz. Train with the hook, e.g. custom_hooks = '
            "[dict(type='mmext.EmbeddingTrajectoryHook', interval=1)] in the config (snapshots "
            "go to <work_dir>/trajectory/), or embed checkpoints with "
            'tools/analysis/embedding_trajectory.py --config CONFIG --checkpoints A.pth B.pth ...')
    snapshots = sorted((load_snapshot(f) for f in files), key=lambda s: s.iteration)
    first = snapshots[0]
    for snap in snapshots[1:]:
        if not np.array_equal(snap.indices, first.indices) or list(snap.embeddings) != list(
                first.embeddings):
            raise ValueError(f'{snap.path} embeds other probe samples (or other embeddings) '
                             f'than {first.path}: a trajectory needs the same probe throughout')
    return (index or {}).get('probe', {}), snapshots
