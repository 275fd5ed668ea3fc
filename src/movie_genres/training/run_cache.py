"""Finished runs, kept by what made them: a second identical `train` copies the result instead of training again.

A run's key is a hash of everything its result depends on:

* the config, less the keys that cannot change a result (progress bars, cache folder, decode processes);
* the films as loaded (ids, overviews, labels, genre schema) and every poster file's bytes;
* the code: this package's source files that make runs (not the service, predictor or CLI) and the versions of
  the libraries that compute (Keras, torch, NumPy, ...).

Training is deterministic for a given key (one seed drives the split, initialisation and shuffling; tested), so the
copy is the run that training would have written. ``train(..., reuse=False)`` or ``movie-genres train --retrain``
trains anyway. Finished runs live in ``<cache>/runs/<key>/`` without their resume checkpoints; delete the folder to
drop them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

# Keys that change how a run is produced, never what it produces.
NEUTRAL_KEYS = ("verbose", "cache_dir", "workers")
# Libraries whose version can change a trained model or its features.
LIBRARIES = ("keras", "torch", "numpy", "scikit-learn", "pillow", "sentence-transformers", "transformers", "tokenizers", "onnxruntime", "efficientnet-lite-pytorch")
# Modules that only read finished runs (serve, predict, the command line) or only schedule `train` calls (a run's
# thread count is in its config): changing them cannot change a run.
SERVING = ("service", "predictor.py", "cli.py", "api.py", "__main__.py", "training/parallel.py")
# Files a finished run does not need (they exist to resume an interrupted one).
RESUME_ONLY = ("checkpoint", "last.keras")


def code_fingerprint() -> str:
    """sha256 of the Python sources that make a run folder and the computing libraries' versions."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in SERVING or rel.as_posix() in SERVING:
            continue
        h.update(str(rel).encode())
        h.update(path.read_bytes())
    for lib in LIBRARIES:
        try:
            version = metadata.version(lib)
        except metadata.PackageNotFoundError:
            version = "-"
        h.update(f"{lib}={version};".encode())
    return h.hexdigest()


def data_fingerprint(ds) -> str:
    """sha256 of the films as loaded: ids, overviews, labels, genre schema and each poster file's bytes."""
    import numpy as np

    h = hashlib.sha256()
    h.update(json.dumps([ds.genres, ds.ids, ds.overviews]).encode())
    h.update(np.ascontiguousarray(ds.labels, dtype=np.float32).tobytes())
    for path in ds.poster_paths:
        h.update(b"<no poster>" if path is None else _file_digest(Path(path)))
    return h.hexdigest()


_DIGESTS: dict[tuple, bytes] = {}  # (path, size, mtime) -> sha256: `train --model all` keys 14 runs on the same posters


def _file_digest(path: Path) -> bytes:
    try:
        st = path.stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        if memo not in _DIGESTS:
            _DIGESTS[memo] = hashlib.sha256(path.read_bytes()).digest()
        return _DIGESTS[memo]
    except OSError:
        return b"<unreadable>"


def run_key(cfg, ds) -> str:
    """The key of the run ``cfg`` would train on ``ds``."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in NEUTRAL_KEYS}
    h = hashlib.sha256()
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(data_fingerprint(ds).encode())
    h.update(code_fingerprint().encode())
    return h.hexdigest()[:32]


def cache_root(cfg) -> Path:
    from movie_genres.features.inputs import default_cache_dir

    return default_cache_dir(cfg.cache_dir) / "runs"


def lookup(cfg, key: str) -> Path | None:
    """The cached finished run with this key, if there is a complete one."""
    path = cache_root(cfg) / key
    return path if (path / "cache.json").exists() and (path / "model.keras").exists() else None


def _copy_run(src: Path, dst: Path) -> None:
    """Copy a run folder's files (not its resume checkpoint) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in RESUME_ONLY or item.name == "cache.json":
            continue
        if item.is_dir():
            _copy_run(item, dst / item.name)
        else:
            shutil.copy2(item, dst / item.name)


def store(run_dir: Path, cfg, key: str) -> None:
    """Keep a finished run under its key; a failure here only costs a later retraining, so it is logged, not raised."""
    root = cache_root(cfg)
    if (root / key / "cache.json").exists():
        return
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        _copy_run(run_dir, tmp)
        (tmp / "cache.json").write_text(json.dumps({"key": key, "stored": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from": str(run_dir)}), encoding="utf-8")
        os.replace(tmp, root / key)
        tmp = None
    except OSError as exc:
        log.warning("could not keep %s in the run cache (%s); a later identical run will train again", run_dir, exc)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def restore(cached: Path, run_dir: Path) -> dict:
    """Copy a cached run into ``run_dir``; returns the cache record."""
    record = json.loads((cached / "cache.json").read_text(encoding="utf-8"))
    _copy_run(cached, run_dir)
    return record
