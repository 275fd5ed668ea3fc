"""Poster decoding: :func:`open_poster` for one poster (a path, bytes or a PIL image), :func:`decode_posters` for a
dataset's poster files (worker processes, cached as uint8 arrays).

Each poster is checked as it is decoded. Unreadable files, truncated JPEGs and files that are not images make the
poster unusable (counted, never a crash mid-epoch); greyscale, CMYK and non-JPEG images that Pillow reads are converted
to RGB and counted as notes.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from movie_genres.io import atomic_write, cache_writable

log = logging.getLogger(__name__)

# Refuse absurd images before decoding them (a 20000x20000 JPEG is a decompression bomb, not a poster).
MAX_PIXELS = 40_000_000
CACHE_VERSION = "posters-v3"  # v2: full decode (no JPEG draft()), EXIF orientation applied; v3: conversion notes kept
CHECK_SIZE = 64  # the original CNN's poster size (64x64); posters for the pretrained encoders are checked at it too


class PosterError(ValueError):
    """A poster cannot be used; ``reason`` is a short countable label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def to_rgb(img: Image.Image, notes: Counter | None = None) -> Image.Image:
    """Convert greyscale (8/16-bit/float), CMYK, palette and alpha images to RGB, counting what was converted.

    Transparent areas go on white, as a browser shows them. Training, the CLI and the service all use this, so a
    poster looks the same to the model wherever it comes from.
    """
    if img.mode == "RGB":
        return img
    if notes is not None:
        label = {"L": "greyscale", "1": "greyscale", "LA": "greyscale", "I": "greyscale", "I;16": "greyscale", "F": "greyscale"}.get(img.mode, img.mode)
        notes[f"poster {label} converted to RGB"] += 1
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit / float greyscale: rescale to 8 bits
        img = img.convert("F")
        lo, hi = img.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = img.point(lambda v: v * scale + (-lo * scale)).convert("L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, ...


def open_poster(
    source, size: int | None = None, notes: Counter | None = None, *, max_pixels: int = MAX_PIXELS,
    formats: tuple[str, ...] | None = None,
) -> Image.Image:
    """The one poster decoder: a path, bytes, file object or PIL image -> a fully decoded RGB ``PIL.Image``.

    EXIF orientation is applied (the poster as a browser shows it), other modes become RGB (:func:`to_rgb`), and with
    ``size`` the result is resized to ``size x size`` (bilinear). Training, evaluate, predict and the service all decode
    here, so a poster gives the same model input whichever way it arrives (applying it again changes nothing).
    ``formats`` limits the file formats read (Pillow names, e.g. ``("JPEG", "PNG")``). Raises :class:`PosterError`
    with a countable reason; an image over ``max_pixels`` is "poster too large".

    Example:
        >>> open_poster("Images/tt0084058.jpg", 64).size                  # doctest: +SKIP
        (64, 64)
    """
    if isinstance(source, Image.Image):
        return _finish(source, size, notes, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise PosterError("poster missing", f"no file at {source}")
        if path.stat().st_size == 0:
            raise PosterError("poster empty", f"{source} is empty")
        try:
            with open(path, "rb") as fh:
                return _finish(_open(fh, formats), size, notes, max_pixels)
        except OSError as exc:  # the file itself could not be read
            raise PosterError("poster unreadable", str(exc)) from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise PosterError("poster empty", "the file is empty")
        source = io.BytesIO(source)
    return _finish(_open(source, formats), size, notes, max_pixels)


def _decode_failure(exc: BaseException) -> PosterError:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError)):
        return PosterError("poster too large", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, UnidentifiedImageError):
        return PosterError("poster not an image", "not a JPEG or any image format Pillow reads")
    msg = str(exc)
    return PosterError("poster truncated" if "truncat" in msg.lower() else "poster unreadable", msg or type(exc).__name__)


def _open(fh, formats: tuple[str, ...] | None) -> Image.Image:
    try:
        return Image.open(fh, formats=formats)  # reads the header only; refuses sizes over 2x Pillow's own limit
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on garbage
        raise _decode_failure(exc) from None


def _finish(img: Image.Image, size: int | None, notes: Counter | None, max_pixels: int) -> Image.Image:
    """Check, decode, turn upright, convert to RGB and resize an opened image (see :func:`open_poster`)."""
    w, h = img.size
    if w < 1 or h < 1:
        raise PosterError("poster unreadable", f"the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise PosterError("poster too large", f"{w}x{h} pixels is over the {max_pixels:,} pixel limit")
    if img.format not in (None, "JPEG") and notes is not None:  # None: an image made in memory, not read from a file
        notes[f"poster is {img.format}, not JPEG"] += 1
    try:
        img.load()  # a truncated file raises here
        if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            img = ImageOps.exif_transpose(img)  # a new image, without the orientation tag (so this runs once)
        img = to_rgb(img, notes)
        if size:
            img = img.resize((size, size), Image.BILINEAR)
    except PosterError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _decode_failure(exc) from None
    return img


def _decode_one(args: tuple[str | None, int]) -> tuple[np.ndarray | None, str | None, dict]:
    path, size = args
    notes: Counter = Counter()
    if path is None:
        return None, "poster missing", {}
    try:
        img = open_poster(path, size, notes)
    except PosterError as exc:
        return None, exc.reason, dict(notes)
    return np.asarray(img, dtype=np.uint8), None, dict(notes)


def _file_key(path: Path | None, size: int) -> str:
    if path is None:
        return "missing"
    try:
        h = hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:  # missing or unreadable: never cached, open_poster says why
        return f"unreadable:{path}"
    return f"{h}-{size}"


def decode_posters(
    paths: list[Path | None], size: int = CHECK_SIZE, cache_dir: str | Path | None = None, workers: int = 2,
    progress: bool = True, write_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[str | None], Counter]:
    """Decode poster files with :func:`open_poster` to ``uint8`` arrays of shape (n, size, size, 3).

    Returns ``(images, ok, reasons, notes)``: ``ok[i]`` is False where poster ``i`` is unusable (its image is zeros)
    and ``reasons[i]`` then says why (None where it decoded), ``notes`` counts conversions. With ``cache_dir`` each
    decoded poster is cached by file content with its conversion notes, so a second call decodes nothing and counts
    the same notes; ``write_cache=False`` reads that cache but never writes it.

    Example:
        >>> images, ok, reasons, notes = decode_posters(ds.poster_paths, 64, "~/.cache/movie-genres")  # doctest: +SKIP
    """
    n = len(paths)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    reasons: list[str | None] = [None] * n
    notes: Counter = Counter()
    keys = [_file_key(Path(p) if p else None, size) for p in paths]
    cache = _load_cache(cache_dir, size)
    todo = []
    for i, key in enumerate(keys):
        hit = cache.get(key)
        if hit is not None:
            images[i], ok[i] = hit[0], True
            notes.update(hit[1])
        else:
            todo.append(i)
    if todo:
        from tqdm.auto import tqdm

        jobs = [(str(paths[i]) if paths[i] else None, size) for i in todo]
        if workers > 1 and len(jobs) > 64:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = list(tqdm(pool.map(_decode_one, jobs, chunksize=64), total=len(jobs), desc="posters", disable=not progress, leave=False))
        else:
            results = [_decode_one(j) for j in tqdm(jobs, desc="posters", disable=not progress, leave=False)]
        for i, (arr, reason, note) in zip(todo, results):
            notes.update(note)
            if arr is None:
                reasons[i] = reason
                continue
            images[i], ok[i] = arr, True
            if not keys[i].startswith("unreadable:"):
                cache[keys[i]] = (arr, note)
        if cache_dir is not None and write_cache and cache_writable(cache_dir):  # read-only: warned once, not kept
            _save_cache(cache_dir, size, cache)
    return images, ok, reasons, notes


def _cache_path(cache_dir: str | Path, size: int) -> Path:
    return Path(cache_dir).expanduser() / "posters" / f"{CACHE_VERSION}-{size}.npz"


def _load_cache(cache_dir: str | Path | None, size: int) -> dict[str, tuple[np.ndarray, dict]]:
    """``{file key: (pixels, conversion notes)}`` from the poster cache (empty when there is none or it is stale)."""
    if cache_dir is None:
        return {}
    path = _cache_path(cache_dir, size)
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, arrays, notes, version = z["keys"], z["images"], z["notes"], str(z["version"])
        if version != CACHE_VERSION or arrays.shape[1:] != (size, size, 3) or not len(keys) == len(arrays) == len(notes):
            raise ValueError(f"stale cache (version {version}, shape {arrays.shape})")
        notes = [json.loads(str(n)) for n in notes]
    except Exception as exc:  # a corrupted or stale cache is rebuilt, never trusted
        log.warning("poster cache %s is unusable (%s); rebuilding it", path, exc)
        return {}
    return {k: (a, nt) for k, a, nt in zip(keys.tolist(), arrays, notes)}


def _save_cache(cache_dir: str | Path, size: int, cache: dict[str, tuple[np.ndarray, dict]]) -> None:
    if not cache:
        return
    keys = np.array(list(cache.keys()))
    arrays = np.stack([a for a, _ in cache.values()])
    notes = np.array([json.dumps(nt, sort_keys=True) for _, nt in cache.values()])

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=keys, images=arrays, notes=notes, version=np.array(CACHE_VERSION))

    atomic_write(_cache_path(cache_dir, size), write)
