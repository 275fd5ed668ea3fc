"""Finished runs, kept by what made them: a second identical `train` copies the result instead of training again.

A run's key is a hash of everything its result depends on:

* the config, less the keys that cannot change a result (progress bars, cache folder, decode processes);
* the films as loaded (ids, overviews, labels, genre schema) and every poster file's bytes;
* the code: this package's source files that make runs (not the service, predictor, reporting, API or CLI) and the
  versions of the libraries and weight packages that compute (Keras, torch, NumPy, SciPy, the encoders' weights, ...).

Training is deterministic for a given key (one seed drives the split, initialisation and shuffling; tested), so the
copy is the run that training would have written. ``train(..., reuse=False)`` or ``movie-genres train --retrain``
trains anyway. Finished runs live in ``<cache>/runs/<key>/`` without their resume checkpoints; delete the folder to
drop them. Each entry's ``cache.json`` records the sha256 of every file it holds; an entry whose files no longer match
(truncated, edited, missing) is dropped with a warning and the run is trained again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

from movie_genres import runs
from movie_genres.features.encoders.mpnet import PARTS as MPNET_PARTS

log = logging.getLogger(__name__)

# Keys that change how a run is produced, never what it produces.
NEUTRAL_KEYS = ("verbose", "cache_dir", "workers")
# Libraries and weight packages whose version can change a trained model, its features or its split: every
# requirement this package declares (read from its installed metadata), plus what they compute with that it does not
# declare (SciPy, under scikit-learn) and the mpnet weights, installed beside it with --no-deps.
UNDECLARED = ("scipy", *MPNET_PARTS)


def _libraries() -> tuple[str, ...]:
    try:
        declared = metadata.requires("movie-genres") or []
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
        declared = []
    names = [re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in declared if "extra ==" not in r]
    return tuple(dict.fromkeys(names + list(UNDECLARED)))


LIBRARIES = _libraries()

# Modules that only read finished runs (serve, predict, evaluate, the report, the command line) or only schedule
# `train` calls (a run's thread count is in its config): changing them cannot change what a run computes.
NOT_COMPUTING = ("service", "reporting", "catalogue", "predictor.py", "explanation.py", "cli.py", "api.py", "__main__.py",
                 "training/parallel.py")
# Files a finished run does not need (they exist to resume an interrupted one).
RESUME_ONLY = (runs.CHECKPOINT, runs.LAST)
RECORD = "cache.json"  # in each entry: key, when stored, from where, sha256 of every file


def computing_sources() -> list[Path]:
    """This package's Python files that compute a run (paths relative to the package folder)."""
    root = Path(__file__).resolve().parents[1]
    rels = (path.relative_to(root) for path in sorted(root.rglob("*.py")))
    return [rel for rel in rels if rel.parts[0] not in NOT_COMPUTING and rel.as_posix() not in NOT_COMPUTING]


def code_fingerprint() -> str:
    """sha256 of the Python sources that compute a run and the computing libraries' versions."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for rel in computing_sources():
        h.update(str(rel).encode())
        h.update((root / rel).read_bytes())
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
    """The cached finished run with this key, if there is one whose files are intact.

    A damaged entry (a file changed, missing or added since it was stored) is dropped with a warning, so the run is
    trained again and stored afresh."""
    path = cache_root(cfg) / key
    if not (path / RECORD).exists():
        return None
    problem = _damage(path)
    if problem is None:
        return path
    log.warning("run cache entry %s is damaged (%s): dropped; training again", path, problem)
    shutil.rmtree(path, ignore_errors=True)
    return None


def _files(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (not the record), by relative path."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != RECORD:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[rel] = h.hexdigest()
    return out


def _damage(entry: Path) -> str | None:
    """Why a cache entry cannot be trusted, or None when every file is as stored."""
    try:
        stored = json.loads((entry / RECORD).read_text(encoding="utf-8")).get("files")
        if not isinstance(stored, dict) or runs.MODEL not in stored:
            return f"{RECORD} has no file hashes"
        found = _files(entry)
    except (OSError, ValueError) as exc:
        return str(exc)
    changed = sorted(f for f in stored.keys() & found.keys() if stored[f] != found[f])
    missing = sorted(stored.keys() - found.keys())
    extra = sorted(found.keys() - stored.keys())
    for what, names in (("changed", changed), ("missing", missing), ("unexpected", extra)):
        if names:
            return f"{what}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
    return None


def _copy_run(src: Path, dst: Path) -> None:
    """Copy a run folder's files (not its resume checkpoint) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in RESUME_ONLY or item.name == RECORD:
            continue
        if item.is_dir():
            _copy_run(item, dst / item.name)
        else:
            shutil.copy2(item, dst / item.name)


def store(run_dir: Path, cfg, key: str) -> None:
    """Keep a finished run under its key; a failure here only costs a later retraining, so it is logged, not raised."""
    from movie_genres.io import cache_writable

    root = cache_root(cfg)
    if (root / key / RECORD).exists() or not cache_writable(root.parent):  # read-only: warned once, not kept
        return
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders; an entry is read by other users' trains (a shared cache)
        _copy_run(run_dir, tmp)
        record = {"key": key, "stored": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from": str(run_dir), "files": _files(tmp)}
        (tmp / RECORD).write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, root / key)
        tmp = None
    except OSError as exc:
        log.warning("could not keep %s in the run cache (%s); a later identical run will train again", run_dir, exc)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def restore(cached: Path, run_dir: Path) -> dict:
    """Copy a cached run into ``run_dir``; returns the cache record."""
    record = json.loads((cached / RECORD).read_text(encoding="utf-8"))
    _copy_run(cached, run_dir)
    return record


def reuse(cfg, key: str, run_dir: Path, run_config: dict, started: float) -> bool:
    """Make ``run_dir`` the cached identical finished run, if there is an intact one; its config is this call's and
    its metrics say where it came from. False when there is none."""
    from movie_genres.io import write_json

    cached = lookup(cfg, key)
    if cached is None:
        return False
    record = restore(cached, run_dir)
    write_json(run_dir / runs.CONFIG, run_config)
    metrics = runs.read_metrics(run_dir)
    write_json(run_dir / runs.METRICS, {**metrics, "reused": {"run_cache_key": key, "trained": record.get("stored")}})
    log.info("%s: reused the identical finished run from the run cache (%s, trained %s) in %.1fs; --retrain trains again",
             cfg.model, key, record.get("stored"), time.perf_counter() - started)
    return True
