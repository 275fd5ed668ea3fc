"""Tag a whole catalogue (``movie-genres predict RUN_DIR --data DIR | --manifest FILE --output OUT``).

The catalogue is read in parts (read.py); each part not yet in the output's parts folder goes through the batch
predictor (batch.py) here (``engine="local"``) or on Ray actors (ray_engine.py), and is written atomically
(output.py). A progress bar shows films/s and the time left; at the end the parts become one table and a summary.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from movie_genres._version import __version__
from movie_genres.catalogue.batch import DEFAULT_BATCH, REVIEW_BAND, BatchPredictor, output_schema
from movie_genres.catalogue.output import PartStore, run_fingerprint
from movie_genres.catalogue.read import open_catalogue
from movie_genres.runs import Run

log = logging.getLogger(__name__)

PART_ROWS = 1024  # input rows per part: what an interruption can cost again (about 30 s of a 2-core CPU)
ENGINES = ("local", "ray")


def predict_catalogue(run_dir, data=None, manifest=None, output=None, engine: str = "local", batch_size: int = DEFAULT_BATCH,
                      actors: int | None = None, address: str | None = None, progress: bool = True, part_rows: int = PART_ROWS,
                      threshold=None, top_k: int | None = None, review_band: float = REVIEW_BAND) -> dict:
    """Tag every film of a catalogue; returns the summary (also written to ``OUT.summary.json``).

    ``threshold`` / ``top_k`` decide otherwise than the run's thresholds (``Predictor.with_decisions``);
    ``review_band``: labels that close to their threshold are listed in the ``review`` column."""
    from movie_genres.predictor import resolve_run

    if output is None:
        raise ValueError("give --output OUT.parquet or OUT.csv for a catalogue")
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if int(batch_size) < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if actors is not None and int(actors) < 1:
        raise ValueError(f"--actors must be at least 1, got {actors}")
    if engine == "local" and (actors is not None or address is not None):
        raise ValueError("--actors and --address are for --engine ray")
    catalogue = open_catalogue(data, manifest)
    run = resolve_run(run_dir)
    decisions = {"threshold": threshold, "top_k": top_k, "review_band": float(review_band)}
    Run(run).with_decisions(threshold, top_k)  # a bad threshold or top-k fails here, before any work
    if not 0 <= float(review_band) < 1:
        raise ValueError(f"--review-band must be in [0, 1), got {review_band}")
    store = PartStore(output, run_fingerprint(run, decisions), catalogue.fingerprint(), part_rows)
    with store:  # one job per output: a second one is refused (OutputBusy) until this one ends
        return _tag(run, catalogue, store, engine, int(batch_size), actors, address, progress, decisions)


def _tag(run: Path, catalogue, store: PartStore, engine: str, batch_size: int, actors, address, progress: bool,
         decisions: dict) -> dict:
    if store.begin() == "complete":  # checked before any model loads
        log.info("%s is already complete for this run and input; nothing to do", store.output)
        return {**store.read_summary(), "already_complete": True}
    total = catalogue.count()
    from tqdm.auto import tqdm

    started = time.perf_counter()
    bar = tqdm(total=total, unit="film", desc="tagging", disable=not progress, smoothing=0.05, dynamic_ncols=True)
    try:
        if engine == "local":
            parts, resumed, done = _run_local(run, catalogue, store, batch_size, bar, decisions)
            extra = {}
        else:
            from movie_genres.catalogue.ray_engine import run_ray

            parts, resumed, done, extra = run_ray(run, catalogue, store, batch_size, actors, address, bar, decisions)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    config = Run(run).config
    counts = store.status_counts()
    summary = _summary(counts, catalogue.dropped)
    summary.update(output=str(store.output), model=config.get("model", "?"), version=config.get("version", __version__), engine=engine,
                   batch_size=batch_size, **extra, seconds=round(seconds, 1), films_tagged_now=done,
                   films_per_second=round(done / seconds, 2) if seconds > 0 else None, parts=len(parts), parts_resumed=resumed)
    summary = store.assemble(output_schema(Run(run).genres), parts, summary)
    log.info("%s: %d films, %d ok, %d partial, %d skipped%s", store.output, summary["films"], summary["ok"], summary["partial"], summary["skipped"],
             "; not in the output: " + ", ".join(f"{v} {k}" for k, v in summary["not_in_output"].items()) if summary["not_in_output"] else "")
    return summary


def _run_local(run: Path, catalogue, store: PartStore, batch_size: int, bar, decisions: dict) -> tuple[list[int], int, int]:
    from movie_genres.predictor import Predictor

    batch = None
    parts, resumed, done = [], 0, 0
    try:
        for part in catalogue.parts(store.part_rows):
            parts.append(part.index)
            if store.has(part.index, part.rows.num_rows):
                resumed += 1
                bar.update(part.input_rows)
                continue
            if batch is None:  # loaded once, and only if there is something left to do
                predictor = Predictor.load(run).with_decisions(decisions["threshold"], decisions["top_k"])
                batch = BatchPredictor(predictor, batch_size, review_band=decisions["review_band"])
            store.write(part.index, batch.predict(part.rows, on_batch=bar.update))
            done += part.rows.num_rows
            bar.update(part.input_rows - part.rows.num_rows)
    finally:
        if batch is not None:
            batch.close()
    return parts, resumed, done


def _summary(statuses: Counter, dropped: Counter) -> dict:
    partial, skipped = Counter(), Counter()
    for status, n in statuses.items():
        kind, _, reason = status.partition(": ")
        if kind == "partial":
            partial[reason] += n
        elif kind == "skipped":
            skipped[reason] += n
    rows = sum(statuses.values())
    return {"films": rows + sum(dropped.values()), "rows": rows, "ok": statuses.get("ok", 0), "partial": sum(partial.values()),
            "skipped": sum(skipped.values()), "partial_by_reason": dict(partial.most_common()),
            "skipped_by_reason": dict(skipped.most_common()), "not_in_output": dict(dropped.most_common())}
