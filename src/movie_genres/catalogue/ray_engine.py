"""``--engine ray``: the batch predictor on a pool of Ray actors, on this machine or an existing cluster.

The driver (this process) reads and checks the catalogue as the local engine does, puts the rows still to do into
Ray's object store in blocks of ``batch_size`` films (a small catalogue as one block would go to one actor), and runs
a Ray Data pipeline over them: ``map_batches`` with a callable class that loads the run once per actor
(``compute=ActorPoolStrategy(size=N)``). Results stream back; each part is written (atomically, by output.py) when
all its rows are in, so an interrupted job continues exactly as a local one does.

Each actor takes ``(CPUs - 1) / N`` of Ray's CPUs (fractional where needed), so one CPU stays free for Ray's own
tasks (with every CPU taken the pipeline hangs, ray-project/ray#44687), and runs its encoders on its share of the
cores. The encoders' ONNX bytes are exported once, here, and handed to every actor, which loads them instead of
exporting again. No usage statistics are sent and no dashboard is started. Every node needs this package (with the
``[ray]`` extra), the run folder at the same path, and read access to the posters.
"""
from __future__ import annotations

import logging
import math
import os
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa

from movie_genres.catalogue.batch import output_schema
from movie_genres.catalogue.errors import EngineError
from movie_genres.runs import Run

log = logging.getLogger(__name__)


def start_ray(address: str | None):
    """``(ray, started_here)``: a local Ray (``address`` None) or a connection to ``address`` (``auto``, ``ray://...``)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ notices would interleave with the progress bar
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError("--engine ray needs Ray: pip install -e '.[ray]' (in the project's folder)") from None
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as exc:  # ConnectionError, ValueError for a bad address, ...
        raise EngineError(f"cannot {'join the Ray cluster at ' + address if address else 'start a local Ray'}: {exc}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the job has its own
    ctx.print_on_execution_start = False
    return ray, True


def plan_actors(ray, actors: int | None) -> dict:
    """Actors, Ray CPUs per actor (one CPU left free) and encoder threads per actor."""
    total = float(ray.cluster_resources().get("CPU", 1.0))
    actors = int(actors) if actors else max(1, int(total // 2))
    reserve = 1.0 if total >= 2 else total / 4
    cpus = max(0.01, (total - reserve) / actors)
    threads = max(1, math.floor(total / actors)) if total >= actors else 1
    return {"actors": actors, "cpus_per_actor": math.floor(cpus * 1000) / 1000, "threads_per_actor": threads, "cluster_cpus": total}


def encoder_names(run_dir: Path) -> list[str]:
    """The pretrained encoders a run's featurizer uses (none for the original CNN / BiLSTM)."""
    spec = Run(run_dir).featurizer_spec()
    if spec.get("kind") != "pretrained":
        return []
    return [n for n in [spec.get("text_encoder"), *spec.get("image_encoders", [])] if n]


def onnx_bytes(names: list[str]) -> dict[str, bytes]:
    """``{encoder: ONNX bytes}``, exported here once (kept in the cache) for the encoders that are exported."""
    from movie_genres.features.encoders import get_encoder, onnx_cache_path

    out = {}
    for name in names:
        enc = get_encoder(name)
        path = onnx_cache_path(enc)
        if not path.is_file():
            enc.load()  # exports (and keeps) it, for encoders that are exported
        if path.is_file():
            out[name] = path.read_bytes()
    return out


def node_cpus(ray) -> int | None:
    """The CPUs Ray gives the node this process runs on (None where Ray does not say)."""
    try:
        here = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node.get("NodeID") == here:
                cpus = node.get("Resources", {}).get("CPU")
                return max(1, int(cpus)) if cpus else None
    except Exception:  # an older or limited Ray: keep the planned count
        return None
    return None


def prepare_actor(threads: int, onnx_ref) -> None:
    """In an actor, before anything loads: its thread count, and the driver's ONNX bytes where this node lacks them.

    The plan's threads come from the whole cluster's CPUs; an actor never runs more intra-op threads than its own
    node has CPUs (a 1-CPU node of a 2-node cluster runs 1, not 2)."""
    import ray

    threads = min(threads, node_cpus(ray) or threads)
    os.environ["MOVIE_GENRES_THREADS"] = str(threads)

    from movie_genres.features.encoders import get_encoder, onnx_cache_path
    from movie_genres.io import write_bytes

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    for name, data in (ray.get(onnx_ref) if onnx_ref is not None else {}).items():
        path = onnx_cache_path(get_encoder(name))
        if not path.is_file():
            write_bytes(path, data)


class _Tagger:
    """A Ray actor: the run loaded once, then one table of rows at a time through the batch predictor."""

    def __init__(self, run_dir: str, batch_size: int, threads: int, onnx_ref=None, decisions: dict | None = None):
        prepare_actor(threads, onnx_ref)
        from movie_genres.catalogue.batch import REVIEW_BAND, BatchPredictor
        from movie_genres.predictor import Predictor

        d = decisions or {}
        predictor = Predictor.load(run_dir).with_decisions(d.get("threshold"), d.get("top_k"))
        self.batch = BatchPredictor(predictor, batch_size, threads=max(2, threads), review_band=d.get("review_band", REVIEW_BAND))

    def __call__(self, rows: pa.Table) -> pa.Table:
        return self.batch.predict(rows)


def run_ray(run: Path, catalogue, store, batch_size: int, actors: int | None, address: str | None, bar,
            decisions: dict | None = None) -> tuple[list[int], int, int, dict]:
    """Like the local engine: returns (part indices, parts resumed, films tagged now, engine facts for the summary)."""
    ray, started = start_ray(address)
    try:
        schema = output_schema(Run(run).genres)
        parts, resumed = [], 0
        expected: dict[int, tuple[int, int]] = {}  # part -> (rows, input rows)
        refs = []
        for part in catalogue.parts(store.part_rows):
            parts.append(part.index)
            if store.has(part.index, part.rows.num_rows):
                resumed += 1
                bar.update(part.input_rows)
            elif part.rows.num_rows == 0:
                store.write(part.index, schema.empty_table())
                bar.update(part.input_rows)
            else:
                expected[part.index] = (part.rows.num_rows, part.input_rows)
                refs += [ray.put(pa.Table.from_batches([b])) for b in part.rows.to_batches(max_chunksize=batch_size)]
        plan = plan_actors(ray, actors)
        if not refs:
            return parts, resumed, 0, plan
        plan["actors"] = min(plan["actors"], len(refs))
        onnx_ref = ray.put(onnx_bytes(encoder_names(run)))
        ds = ray.data.from_arrow_refs(refs).map_batches(
            _Tagger,
            batch_size=None,  # one block (batch_size films) per call
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=plan["actors"]),
            num_cpus=plan["cpus_per_actor"],
            fn_constructor_kwargs={"run_dir": str(run), "batch_size": batch_size, "threads": plan["threads_per_actor"], "onnx_ref": onnx_ref,
                                   "decisions": decisions},
        )
        buffers: dict[int, list[pa.Table]] = defaultdict(list)
        got: Counter = Counter()
        done = 0
        try:
            for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                index = out.column("_row").to_numpy() // store.part_rows
                for k in sorted(set(index.tolist())):
                    rows = out.filter(pa.array(index == k))
                    buffers[k].append(rows)
                    got[k] += rows.num_rows
                    if got[k] == expected[k][0]:
                        store.write(k, pa.concat_tables(buffers.pop(k)).sort_by("_row"))
                        done += expected[k][0]
                        bar.update(expected[k][1] - expected[k][0])
                bar.update(out.num_rows)
        except (KeyboardInterrupt, OSError, ValueError):
            raise
        except Exception as exc:  # a failed actor or task: the parts written so far are kept
            raise EngineError(f"the Ray job failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                              "the parts finished so far are kept, and the same command continues from them") from exc
        return parts, resumed, done, plan
    finally:
        if started:
            ray.shutdown()
