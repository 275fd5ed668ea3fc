"""What every encoder shares: the :class:`Encoder` interface, poster input handling, threads, ONNX export and the
onnxruntime session, a cross-process file lock, and the version tags (package version + weight-file fingerprint)."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np  # noqa: E402

from movie_genres.io import available_cores

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Threads for torch / onnxruntime: ``$MOVIE_GENRES_THREADS`` or the cores this process may use."""
    env = os.environ.get("MOVIE_GENRES_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cores()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
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


def ort_session(model: bytes, threads: int):
    """An onnxruntime CPU session with ``threads`` intra-op threads that sleep when idle."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as OMP_WAIT_POLICY (movie_genres/__init__.py)
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def safe_name(s: str) -> str:
    """``s`` with anything but letters, digits and ``._-`` replaced, for file names."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)


def onnx_cache_path(encoder: "Encoder", fp32: bool = False) -> Path:
    """Where ``encoder``'s ONNX bytes are kept: ``<cache>/onnx/``, keyed by encoder name+version (which name the
    precision) and the torch, onnx and onnxruntime versions that export / quantize it. ``fp32``: where the fp32 graph
    an int8 encoder is made from is kept (the fp32 encoder's own file)."""
    from movie_genres.io import default_cache_dir

    name, version = encoder.name, encoder.version
    if fp32:
        name, version = getattr(encoder, "fp32_name", name), getattr(encoder, "fp32_version", version)
    tag = f"{name}-{version}-torch{pkg_version('torch')}-onnx{pkg_version('onnx')}"
    if encoder.precision != "fp32" and not fp32:
        tag += f"-ort{pkg_version('onnxruntime')}"  # the quantizer is part of onnxruntime
    return default_cache_dir() / "onnx" / f"{safe_name(tag)}.onnx"


def _kept_bytes(path: Path, make, threads: int):
    """(bytes, session) from ``path`` if they load, else from ``make()`` (then kept at ``path``, atomically; a
    read-only cache was warned about once and only costs the next process the export)."""
    from movie_genres.io import atomic_write, cache_writable

    if path.is_file():
        try:
            data = path.read_bytes()
            return data, ort_session(data, threads)
        except Exception as exc:  # damaged or foreign: make again
            log.warning("ONNX cache %s is unusable (%s); making it again", path, exc)
    data = make()
    try:
        if cache_writable(path.parents[1]):
            atomic_write(path, lambda tmp: tmp.write_bytes(data))
    except Exception as exc:  # a read-only cache only costs the next process the export
        log.warning("cannot keep the ONNX model at %s: %s", path, exc)
    return data, ort_session(data, threads)


def cached_session(encoder: "Encoder", export):
    """An onnxruntime session for ``encoder`` from its ONNX bytes, exported once (``export()``) and kept at
    :func:`onnx_cache_path`: exporting costs seconds per process, so every later process (a Ray actor, a training
    worker) loads the bytes instead. Bytes that do not load are exported again and replaced.

    An int8 encoder's graph is ``encoder.quantize(fp32 bytes)``, made once from the fp32 graph (itself exported once
    and kept under the fp32 encoder's name) and kept under its own name and version."""
    if encoder.precision == "fp32":
        return _kept_bytes(onnx_cache_path(encoder), export, encoder.threads)[1]

    def make() -> bytes:
        fp32, _ = _kept_bytes(onnx_cache_path(encoder, fp32=True), export, 1)
        t0 = time.perf_counter()
        data = encoder.quantize(fp32)
        log.info("made the int8 graph of %s in %.1fs", encoder.fp32_name, time.perf_counter() - t0)
        return data

    return _kept_bytes(onnx_cache_path(encoder), make, encoder.threads)[1]


def export_onnx(module, example: tuple, input_names: list[str], dynamic_axes: dict) -> bytes:
    """``module`` (a torch module in eval mode) as ONNX bytes, in memory (the bundled weights stay the source).

    onnxruntime runs these encoders 1.8-2.8x faster than eager torch (docs/BENCHMARKS.md); exporting takes 1-2 s
    when an encoder loads."""
    import io
    import warnings

    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic; the dynamic axes are tested
        torch.onnx.export(module, example, buf, dynamo=False, input_names=input_names, output_names=["features"],
                          dynamic_axes={**dynamic_axes, "features": {0: "batch"}}, opset_version=17)
    return buf.getvalue()


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` across processes (a no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    from movie_genres.io import _clear_errors

    with _clear_errors(lock_path):  # a read-only cache: one clear OutputError, not a raw OSError
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "a")
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pkg_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "0"


def file_tag(path: Path) -> str:
    """Short, cheap fingerprint of a weight file (name + size; no full read)."""
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    return hashlib.sha256(f"{path.name}:{size}".encode()).hexdigest()[:8]


def poster_image(item: Any) -> "Image.Image":  # noqa: F821
    """A poster item (path, bytes, PIL image or HxWx3 uint8 array) decoded by ``posters.open_poster``, as training,
    predict and the service decode it. Raises ``PosterError`` for a poster that cannot be used."""
    from PIL import Image

    from movie_genres.features.posters import open_poster

    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] not in (3, 4):
            raise TypeError(f"poster arrays must be HxWx3 (or 4) uint8, got shape {item.shape}")
        item = Image.fromarray(np.ascontiguousarray(item).astype(np.uint8))
    elif not isinstance(item, (Image.Image, str, os.PathLike, bytes, bytearray, memoryview)):
        raise TypeError(f"poster items must be file paths, bytes, PIL images or HxWx3 uint8 arrays, not {type(item).__name__}")
    return open_poster(item)


class Encoder:
    """A frozen feature extractor. Subclasses set the attributes and implement ``_load`` and ``_encode``.

    ``encode(items)`` returns float32 ``(len(items), dim)``; for ``modality == "overview"`` items are strings, for
    ``"poster"`` file paths, bytes, PIL images (any mode) or HxWx3 uint8 arrays. Results do not depend on how items
    are split into calls/batches (up to float rounding ~1e-7).

    Batches run in lanes: with ``threads`` > 1 and several batches, up to ``threads`` batches run at once, each an
    ``_encode`` call from its own thread on the one session (onnxruntime releases the GIL and runs concurrent calls).
    The int8 kernels use a second core poorly inside one call (ResNet-50-1by2 at batch 4: 1.1x from two threads) but
    well across two calls (1.7x; docs/BENCHMARKS.md "Lanes"). Each batch is the same batch either way, so the features
    are bitwise those of one lane. ``_encode`` must therefore be safe to call from several threads at once.
    """

    name: str = ""
    version: str = ""
    dim: int = 0
    modality: str = ""  # "overview" | "poster"
    batch_size: int = 64  # default chunk for encode()
    precision: str = "fp32"  # "fp32" | "int8" (set_precision)
    int8_batch_size: int = 0  # batch for the int8 graph where it differs (0: batch_size)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._lanes, self._lane_count = None, 0  # the threads that run batches side by side (made on first use)
        self.threads = default_threads()

    def set_precision(self, precision: str) -> None:
        """Call at the end of ``__init__``, after ``name`` and ``version`` are set. ``"int8"``: the encoder runs an
        int8 graph made from its fp32 one (:meth:`quantize`), under the name ``<name>-int8`` and a version that ends
        in ``-int8-<how>``, so its features are never mixed with the fp32 ones in a cache or a run."""
        from movie_genres.features.encoders.quantize import PRECISIONS

        if precision not in PRECISIONS:
            raise ValueError(f"encoder precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.fp32_name, self.fp32_version = self.name, self.version
        self.precision = precision
        if precision == "int8":
            self.name = f"{self.name}-int8"
            self.version = f"{self.version}-int8-{self.int8_tag()}"
            self.batch_size = self.int8_batch_size or self.batch_size

    def int8_tag(self) -> str:
        """How the int8 graph is made (part of the int8 version)."""
        raise NotImplementedError(f"{type(self).__name__} has no int8 graph")

    def quantize(self, fp32: bytes) -> bytes:
        """The int8 graph made from the fp32 ONNX bytes ``fp32``."""
        raise NotImplementedError(f"{type(self).__name__} has no int8 graph")

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

    def batch_order(self, items: Sequence[Any]) -> list[int]:
        """The order in which ``items`` are best encoded: overviews by length, so each batch pads to similar lengths
        (1.4x faster for mpnet; the features differ by ~1e-8 from any other batching); other items as given."""
        if self.modality == "overview":
            return sorted(range(len(items)), key=lambda i: len(items[i]) if isinstance(items[i], str) else 0)
        return list(range(len(items)))

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        items = list(items)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        order = self.batch_order(items)
        ordered = [items[i] for i in order]
        batches = [ordered[start : start + self.batch_size] for start in range(0, len(ordered), self.batch_size)]
        got = np.concatenate(self._run_batches(batches), axis=0)
        if got.shape != (len(items), self.dim):
            raise RuntimeError(f"{self.name}: expected features of shape {(len(items), self.dim)}, got {got.shape}")
        feats = np.empty((len(items), self.dim), dtype=np.float32)
        feats[order] = got
        return feats

    def _run_batches(self, batches: list[list]) -> list[np.ndarray]:
        """``_encode`` of each batch, in order: in up to ``threads`` lanes at once (see the class docstring)."""
        lanes = min(self.threads, len(batches))
        if lanes < 2:
            return [self._encode(b) for b in batches]
        with self._lock:
            if self._lane_count < self.threads:
                from concurrent.futures import ThreadPoolExecutor

                self._lanes = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=f"movie-genres-{self.name}")
                self._lane_count = self.threads
            pool = self._lanes
        return list(pool.map(self._encode, batches))

    # -- for subclasses
    def _load(self) -> None:
        raise NotImplementedError

    def _encode(self, items: list) -> np.ndarray:
        raise NotImplementedError


class PosterEncoder(Encoder):
    """A poster encoder: each item is decoded by :func:`poster_image`, turned into one network input by
    ``preprocess(rgb_image)`` and the stacked batch is run by ``_forward(batch)``."""

    modality = "poster"
    batch_size = 32

    def _encode(self, items: list) -> np.ndarray:
        batch = np.stack([self.preprocess(poster_image(item)) for item in items])
        return self._forward(batch)

    def preprocess(self, image: "Image.Image") -> np.ndarray:  # noqa: F821
        raise NotImplementedError

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError
