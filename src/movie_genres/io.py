"""Atomic file writes, run folders, and the machine's core count.

Every artifact is written to a temporary name in the same folder and renamed into place, so a crash never leaves a
half-written file that a later command trusts. Disk-full and permission errors become one clear ``OutputError``.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def available_cores() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OutputError(RuntimeError):
    """The output folder cannot be written (read-only, full disk, ...)."""


@contextlib.contextmanager
def _clear_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"no space left on the device while writing {path}; free some space and retry") from None
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise OutputError(f"cannot write {path}: the folder is read-only or not yours ({exc.strerror})") from None
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            raise OutputError(f"cannot write {path}: a file stands where a folder is needed ({exc.strerror})") from None
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path``.

    Example:
        >>> atomic_write("out/model.keras", lambda tmp: model.save(tmp))  # doctest: +SKIP
    """
    path = Path(path)
    with _clear_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            write(tmp_path)
            os.chmod(tmp_path, 0o644)  # mkstemp makes 0600 files; artifacts are meant to be read by others (a server)
            os.replace(tmp_path, path)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def check_writable(path: str | os.PathLike) -> Path:
    """Raise :class:`OutputError` now if ``path`` could not be written later, so a long job fails before its work.

    Writes and removes a probe file in the nearest existing folder (missing parents are made when the file is written).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: {folder} is a file where a folder is needed")
    try:
        with _clear_errors(path):
            fd, probe = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".probe", dir=folder)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def new_run_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` as a fresh run folder; never overwrite an existing one.

    If ``path`` exists and is not empty, the next free sibling ``path2``, ``path3``, ... is used (as ultralytics does),
    so two runs never write into each other.
    """
    path = Path(path)
    candidate, n = path, 1
    with _clear_errors(path):
        while candidate.exists() and any(candidate.iterdir()):
            n += 1
            candidate = path.with_name(f"{path.name}{n}")
        candidate.mkdir(parents=True, exist_ok=True)
        probe = candidate / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    return candidate


def default_cache_dir(cache_dir: str = "") -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$MOVIE_GENRES_CACHE``, else ``~/.cache/movie-genres``."""
    return Path(cache_dir or os.environ.get("MOVIE_GENRES_CACHE") or "~/.cache/movie-genres").expanduser()


_CACHE_WRITABLE: dict[str, bool] = {}


def cache_writable(cache_dir: str | os.PathLike) -> bool:
    """Whether files can be written under the cache folder ``cache_dir`` (created if need be), checked once per
    process. The first time it cannot (a read-only file system, a folder not yours), one warning says that work goes
    on uncached; callers then read what the cache holds and write nothing there."""
    import logging

    root = Path(cache_dir).expanduser()
    key = str(root.resolve())
    if key not in _CACHE_WRITABLE:
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=root)
            os.close(fd)
            os.unlink(probe)
            _CACHE_WRITABLE[key] = True
        except OSError as exc:
            _CACHE_WRITABLE[key] = False
            logging.getLogger(__name__).warning(
                "the cache folder %s cannot be written (%s): working uncached (features, posters and runs are "
                "computed and not kept); set MOVIE_GENRES_CACHE to a writable folder to keep them", root,
                exc.strerror or exc)
    return _CACHE_WRITABLE[key]
