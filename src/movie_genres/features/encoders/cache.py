"""The on-disk feature cache: features computed once per (encoder name + version, item content).

``cached_features(encoder, items, cache_dir)`` computes features only for items whose content is not cached yet. The
cache is one ``.npz`` per encoder, ``<cache_dir>/features/<name>-<version>.npz``, holding the content keys, the float32
features and a JSON header (name, version, dim, rows, sha256 of keys+features). A truncated, foreign, wrong-dim or
checksum-failing file is logged and rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from movie_genres.features.encoders.base import Encoder, exclusive, poster_image
from movie_genres.features.encoders.base import safe_name as _safe
from movie_genres.io import atomic_write, cache_writable

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
FLUSH_SECONDS = 60.0  # during long cached_features runs, write what is done at most this often


def content_key(item: Any, modality: str | None = None) -> str:
    """sha256 hex of an item's content.

    * text (``str`` with ``modality`` None or "overview"): its UTF-8 bytes;
    * poster file (``Path``, or ``str`` with ``modality="poster"``) or poster bytes: the file's bytes (plus a tag
      when its EXIF orientation turns it: such posters are decoded upright, and were not before that tag);
    * PIL image / uint8 array: ``b"<W>x<H>:"`` + the RGB bytes of the decoded poster (``posters.open_poster``).

    A poster given as a path and the same poster given as a decoded image get different keys (file bytes vs pixels).
    """
    h = hashlib.sha256()
    if isinstance(item, str) and modality != "poster":
        h.update(item.encode("utf-8"))
    elif isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        data = Path(item).read_bytes() if isinstance(item, (str, os.PathLike)) else bytes(item)
        h.update(data)
        if _turned_by_exif(data):
            h.update(b"\0exif-upright")
    else:
        from PIL import Image

        if not isinstance(item, (Image.Image, np.ndarray)):
            raise TypeError(f"cannot compute a content key for {type(item).__name__}")
        im = poster_image(item)
        h.update(f"{im.width}x{im.height}:".encode())
        h.update(im.tobytes())
    return h.hexdigest()


def _turned_by_exif(data: bytes) -> bool:
    """Whether a poster file's EXIF orientation makes open_poster turn it (cheap: most files carry no EXIF)."""
    if not any(marker in data for marker in (b"Exif", b"eXIf", b"EXIF")):
        return False
    import io

    from PIL import ExifTags, Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.getexif().get(ExifTags.Base.Orientation, 1) != 1
    except Exception:  # noqa: BLE001 - not decodable: such a poster never reaches an encoder
        return False


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


def _merge_and_save(encoder: Encoder, cache_dir, new: dict[str, np.ndarray]) -> None:
    """Re-read the file, add ``new``, write atomically; locked, so rows that another process (a parallel
    `train --model all` worker) adds at the same time are kept too."""
    if not new:
        return
    with exclusive(cache_path(encoder, cache_dir).with_suffix(".lock")):
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
    write: bool = True,
) -> np.ndarray:
    """Features of ``items`` (float32 ``(len(items), encoder.dim)``, in order), computing only uncached ones.

    Rows are keyed by (encoder name, encoder version, content key); ``keys`` may be given to skip hashing (one per
    item, e.g. precomputed :func:`content_key` values). Identical items are encoded once. Long runs write their
    progress to the cache every ``FLUSH_SECONDS`` so an interrupted run resumes where it stopped. ``write=False``
    reads the cache but writes nothing under ``cache_dir`` (serving: client traffic never grows the training cache).
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
    write = write and cache_writable(cache_dir)  # a read-only cache: one warning, then features are not kept
    index = {k: i for i, k in enumerate(cached_keys.tolist())}
    todo: dict[str, Any] = {}  # key -> first item with that key, in order
    for key, item in zip(keys, items):
        if key not in index and key not in todo:
            todo[key] = item

    new: dict[str, np.ndarray] = {}
    if todo:
        from tqdm.auto import tqdm

        todo_keys = list(todo)
        todo_keys = [todo_keys[i] for i in encoder.batch_order([todo[k] for k in todo_keys])]
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
                if write and time.monotonic() - last_flush > FLUSH_SECONDS and start + len(chunk) < len(todo_keys):
                    _merge_and_save(encoder, cache_dir, unsaved)
                    unsaved, last_flush = {}, time.monotonic()
        if write:
            _merge_and_save(encoder, cache_dir, unsaved)

    for i, key in enumerate(keys):
        out[i] = new[key] if key in new else cached_feats[index[key]]
    return out
