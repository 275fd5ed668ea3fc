"""Poster decoding: Pillow with JPEG ``draft()`` downscaling in worker processes, cached as float32 arrays.

Each poster is checked as it is decoded. Unreadable files, truncated JPEGs and files that are not images make the
poster unusable (counted, never a crash mid-epoch); greyscale, CMYK and non-JPEG images that Pillow reads are converted
to RGB and counted as notes.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from movie_genres.io import atomic_write

log = logging.getLogger(__name__)

# Refuse absurd images before decoding them (a 20000x20000 JPEG is a decompression bomb, not a poster).
MAX_PIXELS = 40_000_000
CACHE_VERSION = "posters-v1"


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


def open_poster(source, size: int | None = None, notes: Counter | None = None) -> Image.Image:
    """Open, verify and fully decode a poster (path, bytes or file object) to an RGB ``PIL.Image``.

    With ``size``, JPEGs are decoded at reduced scale (``draft``) and the result is resized to ``size x size``.
    Raises :class:`PosterError` with a countable reason.
    """
    import io

    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise PosterError("poster empty", "the file is empty")
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        if not Path(source).is_file():
            raise PosterError("poster missing", f"no file at {source}")
        if Path(source).stat().st_size == 0:
            raise PosterError("poster empty", f"{source} is empty")
    try:
        img = Image.open(source)
    except UnidentifiedImageError:
        raise PosterError("poster not an image", "not a JPEG or any image format Pillow reads") from None
    except OSError as exc:
        raise PosterError("poster truncated" if "truncat" in str(exc).lower() else "poster unreadable", str(exc)) from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise PosterError("poster too large", f"{w}x{h} pixels is over the {MAX_PIXELS:,} pixel limit")
    if img.format != "JPEG" and notes is not None:
        notes[f"poster is {img.format or 'unknown format'}, not JPEG"] += 1
    try:
        if size and img.format == "JPEG":
            img.draft("RGB", (size, size))
        img.load()
    except Image.DecompressionBombError as exc:
        raise PosterError("poster too large", str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        reason = "poster truncated" if "truncat" in msg.lower() else "poster unreadable"
        raise PosterError(reason, msg) from None
    img = to_rgb(img, notes)
    if size:
        img = img.resize((size, size), Image.BILINEAR)
    return img


def poster_array(img: Image.Image) -> np.ndarray:
    """RGB image -> float32 array in [0, 1], as the original CNN was fed."""
    return np.asarray(img, dtype=np.float32) / 255.0


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
    h = hashlib.sha1(path.read_bytes()).hexdigest()
    return f"{h}-{size}"


def decode_posters(
    paths: list[Path | None], size: int = 64, cache_dir: str | Path | None = None, workers: int = 2, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, Counter, Counter]:
    """Decode posters to ``uint8`` arrays of shape (n, size, size, 3).

    Returns ``(images, ok, problems, notes)``: ``ok[i]`` is False where poster ``i`` is unusable (its image is zeros),
    ``problems`` counts why, ``notes`` counts conversions. With ``cache_dir`` each decoded poster is cached by file
    content, so a second call decodes nothing.

    Example:
        >>> images, ok, problems, notes = decode_posters(ds.poster_paths, 64, "~/.cache/movie-genres")  # doctest: +SKIP
    """
    n = len(paths)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    problems: Counter = Counter()
    notes: Counter = Counter()
    keys = [_file_key(Path(p) if p else None, size) for p in paths]
    cache = _load_cache(cache_dir, size)
    todo = []
    for i, key in enumerate(keys):
        hit = cache.get(key)
        if hit is not None:
            images[i], ok[i] = hit, True
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
                problems[reason] += 1
                continue
            images[i], ok[i] = arr, True
            cache[keys[i]] = arr
        if cache_dir is not None:
            _save_cache(cache_dir, size, cache)
    return images, ok, problems, notes


def _cache_path(cache_dir: str | Path, size: int) -> Path:
    return Path(cache_dir).expanduser() / "posters" / f"{CACHE_VERSION}-{size}.npz"


def _load_cache(cache_dir: str | Path | None, size: int) -> dict[str, np.ndarray]:
    if cache_dir is None:
        return {}
    path = _cache_path(cache_dir, size)
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, arrays, version = z["keys"], z["images"], str(z["version"])
        if version != CACHE_VERSION or arrays.shape[1:] != (size, size, 3) or len(keys) != len(arrays):
            raise ValueError(f"stale cache (version {version}, shape {arrays.shape})")
    except Exception as exc:  # a corrupted or stale cache is rebuilt, never trusted
        log.warning("poster cache %s is unusable (%s); rebuilding it", path, exc)
        return {}
    return dict(zip(keys.tolist(), arrays))


def _save_cache(cache_dir: str | Path, size: int, cache: dict[str, np.ndarray]) -> None:
    if not cache:
        return
    keys = np.array(list(cache.keys()))
    arrays = np.stack(list(cache.values()))
    atomic_write(_cache_path(cache_dir, size), lambda tmp: np.savez(tmp.open("wb"), keys=keys, images=arrays, version=np.array(CACHE_VERSION)))
