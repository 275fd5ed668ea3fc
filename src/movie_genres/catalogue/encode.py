"""``movie-genres encode``: a catalogue's encoder features into the feature cache that ``train`` reads.

The same reader and the same Ray pipeline as ``predict``: films are read in parts, their posters read and decoded
(``open_poster``, as one-film predict and the encoders read a poster file: the same pixels) and encoded ``batch_size``
at a time, here or on Ray actors; the driver adds the new rows to the cache (``add_to_cache``) at most once a minute and
at the end, so a large training set can be encoded on a cluster and the heads trained on one machine. Rows are keyed
as training keys them (``content_key``, the one key function): an overview by its (stripped) text, a poster by its
file's bytes (and whether its EXIF orientation turns it). What is cached already is not
encoded again, so an interrupted ``encode`` run again continues.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from movie_genres.catalogue.read import open_catalogue, read_poster
from movie_genres.features.encoders.cache import FLUSH_SECONDS
from movie_genres.features.posters import PosterError, open_poster

log = logging.getLogger(__name__)

ROWS_SCHEMA = pa.schema([("encoder", pa.string()), ("key", pa.string()), ("features", pa.binary()), ("event", pa.string()), ("n", pa.int64())])


def default_encoders() -> list[str]:
    from movie_genres.config import Config
    from movie_genres.features.inputs import PretrainedFeatures

    cfg = Config()
    text, images = PretrainedFeatures.names_at(cfg.text_encoder, cfg.image_encoders, cfg.encoder_precision)
    return [e for e in [text, *images] if e]


class RowEncoder:
    """Rows of a catalogue (``read.INPUT_SCHEMA``) -> feature rows not in ``known`` yet, and counts (``ROWS_SCHEMA``)."""

    def __init__(self, names: list[str], known: dict[str, set], batch_size: int = 64, threads: int = 4):
        from movie_genres.features.encoders import get_encoder

        self.encoders = [get_encoder(n) for n in names]
        self.known = {e.name: known.get(e.name, set()) for e in self.encoders}
        self.batch_size = int(batch_size)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="movie-genres-decode")

    def _poster(self, source: str | None, wanted: list):
        """(key, image) for a poster some encoder still lacks, (key, None) if all have it; PosterError otherwise."""
        if source is None:
            raise PosterError("no poster", "")
        from movie_genres.features.encoders import content_key

        data = read_poster(source)
        key = content_key(data, "poster")  # the key training looks the file up by
        if all(key in self.known[e.name] for e in wanted):
            return key, None
        return key, open_poster(data)

    def __call__(self, rows: pa.Table) -> pa.Table:
        out = {k: [] for k in ROWS_SCHEMA.names}
        counts: Counter = Counter()

        def add(enc, keys, items):
            todo = {}
            for key, item in zip(keys, items):
                if key in self.known[enc.name] or key in todo:
                    counts[f"{enc.name}: cached already"] += 1
                else:
                    todo[key] = item
            if todo:
                feats = enc.encode(list(todo.values()))
                for key, row in zip(todo, np.asarray(feats, dtype=np.float32)):
                    self.known[enc.name].add(key)
                    out["encoder"].append(enc.name), out["key"].append(key), out["features"].append(row.tobytes())
                    out["event"].append(None), out["n"].append(0)
                counts[f"{enc.name}: encoded"] += len(todo)

        text = [e for e in self.encoders if e.modality == "overview"]
        image = [e for e in self.encoders if e.modality == "poster"]
        overviews, notes, posters = (rows.column(c).to_pylist() for c in ("overview", "note", "poster"))
        for start in range(0, rows.num_rows, self.batch_size):
            stop = min(rows.num_rows, start + self.batch_size)
            if text:
                got = [(i, overviews[i]) for i in range(start, stop) if overviews[i]]
                counts.update((notes[i] or "no overview") for i in range(start, stop) if not overviews[i])
                if got:
                    from movie_genres.features.encoders import content_key

                    for enc in text:
                        add(enc, [content_key(t) for _, t in got], [t for _, t in got])
            if image:
                keys, images = [], []
                for future in [self._pool.submit(self._poster, posters[i], image) for i in range(start, stop)]:
                    try:
                        key, img = future.result()
                    except PosterError as exc:
                        counts[exc.reason] += 1
                        continue
                    if img is None:
                        for enc in image:
                            counts[f"{enc.name}: cached already"] += 1
                        continue
                    keys.append(key)
                    images.append(img)
                for enc in image:
                    add(enc, keys, images)
        counts["films"] += rows.num_rows
        for event, n in counts.items():
            out["encoder"].append(None), out["key"].append(None), out["features"].append(None)
            out["event"].append(event), out["n"].append(n)
        return pa.table(out, schema=ROWS_SCHEMA)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class _Pending:
    """New feature rows on the driver, added to the cache at most once a minute and at the end."""

    def __init__(self, names: list[str], cache_dir):
        from movie_genres.features.encoders import get_encoder

        self.encoders = {n: get_encoder(n) for n in names}
        self.cache_dir = cache_dir
        self.rows: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
        self.counts: Counter = Counter()
        self.last = time.monotonic()

    def take(self, table: pa.Table) -> int:
        """Take one result table; returns the films it covered (for the progress bar)."""
        films = 0
        enc, key, feats, event, n = (table.column(c).to_pylist() for c in ROWS_SCHEMA.names)
        for e, k, f, ev, c in zip(enc, key, feats, event, n):
            if ev == "films":
                films += c
            elif ev is not None:
                self.counts[ev] += c
            else:
                self.rows[e][k] = np.frombuffer(f, dtype=np.float32)
        if time.monotonic() - self.last > FLUSH_SECONDS:
            self.flush()
        return films

    def flush(self) -> None:
        from movie_genres.features.encoders import add_to_cache

        for name, rows in self.rows.items():
            if rows:
                add_to_cache(self.encoders[name], self.cache_dir, rows)
                self.rows[name] = {}
        self.last = time.monotonic()


def encode_catalogue(data=None, manifest=None, encoders=None, engine: str = "local", batch_size: int = 64,
                     actors: int | None = None, address: str | None = None, progress: bool = True) -> dict:
    """Encode a catalogue into the feature cache; returns counts per encoder and the inputs that could not be read."""
    from tqdm.auto import tqdm

    from movie_genres.catalogue.job import ENGINES, PART_ROWS
    from movie_genres.features.encoders import cache_path, get_encoder, load_cache
    from movie_genres.features.inputs import default_cache_dir

    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if int(batch_size) < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    names = list(encoders) if encoders else default_encoders()
    for n in names:
        get_encoder(n)  # an unknown name fails here, with the known ones
    catalogue = open_catalogue(data, manifest)
    cache = default_cache_dir()
    from movie_genres.io import OutputError, cache_writable

    if not cache_writable(cache):  # encoding is for the cache: a clear error before any work
        raise OutputError(f"the feature cache {cache} cannot be written; set MOVIE_GENRES_CACHE to a writable folder")
    known = {n: set(load_cache(get_encoder(n), cache)[0].tolist()) for n in names}
    pending = _Pending(names, cache)
    started = time.perf_counter()
    extra = {}
    bar = tqdm(total=catalogue.count(), unit="film", desc="encoding", disable=not progress, smoothing=0.05, dynamic_ncols=True)
    try:
        if engine == "local":
            enc = RowEncoder(names, known, batch_size)
            try:
                for part in catalogue.parts(PART_ROWS):
                    for block in part.rows.to_batches(max_chunksize=int(batch_size)):
                        bar.update(pending.take(enc(pa.Table.from_batches([block], schema=part.rows.schema))))
                    bar.update(part.input_rows - part.rows.num_rows)
            finally:
                enc.close()
        else:
            extra = _encode_ray(catalogue, names, known, int(batch_size), actors, address, pending, bar)
    finally:
        pending.flush()  # what was encoded is kept, also when stopped
        bar.close()
    seconds = time.perf_counter() - started
    per = {n: {"encoded": pending.counts.pop(f"{n}: encoded", 0), "cached already": pending.counts.pop(f"{n}: cached already", 0),
               "cache": str(cache_path(get_encoder(n), cache))} for n in names}
    summary = {"encoders": per, "not_encoded": dict(pending.counts.most_common()), "not_in_catalogue": dict(catalogue.dropped),
               "engine": engine, **extra, "seconds": round(seconds, 1)}
    log.info("encoded %s", ", ".join(f"{n}: {v['encoded']} new, {v['cached already']} cached already" for n, v in per.items()))
    return summary


def _encode_ray(catalogue, names, known, batch_size, actors, address, pending, bar) -> dict:
    from movie_genres.catalogue.job import PART_ROWS
    from movie_genres.catalogue.ray_engine import EngineError, onnx_bytes, plan_actors, start_ray

    ray, started = start_ray(address)
    try:
        refs, dropped = [], 0
        for part in catalogue.parts(PART_ROWS):
            dropped += part.input_rows - part.rows.num_rows
            refs += [ray.put(pa.Table.from_batches([b], schema=part.rows.schema)) for b in part.rows.to_batches(max_chunksize=batch_size)]
        bar.update(dropped)
        plan = plan_actors(ray, actors)
        if not refs:
            return plan
        plan["actors"] = min(plan["actors"], len(refs))
        ds = ray.data.from_arrow_refs(refs).map_batches(
            _RayEncoder, batch_size=None, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=plan["actors"]),
            num_cpus=plan["cpus_per_actor"],
            fn_constructor_kwargs={"names": names, "known_ref": ray.put(known), "batch_size": batch_size,
                                   "threads": plan["threads_per_actor"], "onnx_ref": ray.put(onnx_bytes(names))},
        )
        try:
            for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                bar.update(pending.take(out))
        except (KeyboardInterrupt, OSError, ValueError):
            raise
        except Exception as exc:
            raise EngineError(f"the Ray job failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                              "what was encoded so far is in the cache, and the same command continues from it") from exc
        return plan
    finally:
        if started:
            ray.shutdown()


class _RayEncoder:
    def __init__(self, names, known_ref, batch_size, threads, onnx_ref=None):
        from movie_genres.catalogue.ray_engine import prepare_actor

        prepare_actor(threads, onnx_ref)
        import ray

        self.encoder = RowEncoder(names, ray.get(known_ref), batch_size, threads=max(2, threads))

    def __call__(self, rows: pa.Table) -> pa.Table:
        return self.encoder(rows)
