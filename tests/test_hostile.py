"""What a hostile user tried on catalogues, caches and the service (issue 18): each case a clear error or a counted
skip, nothing lost. Catalogue jobs here run a stub predictor (the FakePredictor of serve_helpers) behind a fake run
folder, so every test takes well under a few seconds."""
from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from movie_genres.catalogue import CatalogueError, OutputBusy, OutputIncomplete
from movie_genres.catalogue.job import predict_catalogue
from movie_genres.catalogue.output import PartStore
from movie_genres.catalogue.read import open_catalogue, read_poster
from movie_genres.evaluation.metrics import decide
from movie_genres.features.posters import PosterError
from movie_genres.predictor import Predictor
from serve_helpers import GENRES, FakePredictor, image_bytes

# ----------------------------------------------------------------------------------------------------------------------
# a stub run: a run folder that resolve_run accepts, and Predictor.load giving the FakePredictor


class _StubPredictor(FakePredictor):
    """The fake model behind the real Predictor's answer (statuses, reasons), as the catalogue reads it."""

    config: dict = {"min_one_genre": True}
    reads = ["poster", "overview"]

    def __init__(self) -> None:
        super().__init__()
        self.answer = types.MethodType(Predictor.answer, self)  # FakePredictor's own `answer` is a canned reply
        self.run = types.SimpleNamespace(decide=lambda probs, rank=None: decide(probs, 0.5, True, None, rank))
        self.calibrator = lambda probs: probs
        self.raw_scores = self.scores

    def with_decisions(self, threshold=None, top_k=None):
        return self

    def transform(self, posters, overviews, progress=True, cache=None):  # the Predictor's signature
        return super().transform(posters, overviews)

    @property
    def trained(self):
        return np.ones(len(self.genres), dtype=bool)

    @property
    def thresholds_(self):
        return np.full(len(self.genres), 0.5)


@pytest.fixture
def stub_run(tmp_path, monkeypatch) -> Path:
    from movie_genres.predictor import Predictor

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "featurizer.json", "thresholds.json"):
        (run / name).write_text("{}")
    (run / "config.json").write_text(json.dumps({"model": "fake", "version": "0.0-test"}))
    (run / "genres.json").write_text(json.dumps({"genres": GENRES}))
    monkeypatch.setattr(Predictor, "load", classmethod(lambda cls, *a, **k: _StubPredictor()))
    return run


def _dataset(root: Path, ids: list[str], posters: dict[str, bytes] | None = None) -> Path:
    """A --data catalogue: Id and Overview, posters at Images/<Id>.jpg (those in ``posters``)."""
    (root / "Images").mkdir(parents=True)
    with open(root / "IMDB_overview_genres.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Id", "Overview"])
        for i in ids:
            w.writerow([i, f"a film about {i} and a ghost in a house"])
    for i, data in (posters or {}).items():
        (root / "Images" / f"{i}.jpg").write_bytes(data)
    return root


# ----------------------------------------------------------------------------------------------------------------------
# posters that are not files


def test_a_fifo_or_a_device_poster_is_refused_at_once(tmp_path):
    fifo = tmp_path / "poster.jpg"
    os.mkfifo(fifo)
    started = time.monotonic()
    for source in (str(fifo), "/dev/zero", "/dev/urandom", str(tmp_path), f"file://{fifo}"):
        with pytest.raises(PosterError) as err:
            read_poster(source)
        assert err.value.reason == "poster not a regular file", (source, err.value)
    assert time.monotonic() - started < 2  # nothing waited for a writer or read without bound


def test_a_poster_is_read_up_to_the_limit_and_no_further(tmp_path, monkeypatch):
    from movie_genres.catalogue import read

    monkeypatch.setattr(read, "MAX_POSTER_BYTES", 1000)
    (tmp_path / "ok.jpg").write_bytes(b"x" * 1000)
    assert len(read_poster(str(tmp_path / "ok.jpg"))) == 1000
    (tmp_path / "big.jpg").write_bytes(b"x" * 1001)
    with pytest.raises(PosterError, match="poster too large"):
        read_poster(str(tmp_path / "big.jpg"))

    class Endless:  # a stream that claims nothing about its size (a device, a pipe behind a URI)
        asked: list[int] = []

        def read(self, n=-1):
            self.asked.append(n)
            return b"\0" * (n if n >= 0 else 10**9)

    with pytest.raises(PosterError, match="poster too large"):
        read._bounded(Endless(), "endless")
    assert Endless.asked == [1001]


def test_a_fifo_poster_in_a_catalogue_is_a_counted_skip_and_the_job_finishes(stub_run, tmp_path):
    root = _dataset(tmp_path / "films", ["tt01", "tt02", "tt03"], {"tt01": image_bytes(), "tt03": image_bytes(seed=3)})
    os.mkfifo(root / "Images" / "tt02.jpg")
    (root / "Images" / "tt04.jpg").symlink_to("/dev/zero")
    with open(root / "IMDB_overview_genres.csv", "a", encoding="utf-8") as f:
        f.write("tt04,a film whose poster is a device\n")
    out = tmp_path / "tags.parquet"
    summary = predict_catalogue(stub_run, data=root, output=out, progress=False)
    table = pq.read_table(out).to_pydict()
    assert table["Id"] == ["tt01", "tt02", "tt03", "tt04"]
    assert table["status"] == ["ok", "partial: poster not a regular file", "ok", "partial: poster not a regular file"]
    assert summary["partial_by_reason"] == {"poster not a regular file": 2}


def test_an_http_poster_says_the_scheme_is_not_supported():
    with pytest.raises(PosterError) as err:
        read_poster("http://example.com/poster.jpg")
    assert err.value.reason == "poster URI scheme http:// not supported"
    assert "s3://" in str(err.value)


# ----------------------------------------------------------------------------------------------------------------------
# Ids that are paths


def test_an_id_with_dotdot_never_reads_outside_images(stub_run, tmp_path):
    root = _dataset(tmp_path / "films", ["tt01", "../secret", "a/b"], {"tt01": image_bytes()})
    (root / "secret.jpg").write_bytes(image_bytes(seed=9))  # what Images/../secret.jpg would read
    (root / "Images" / "a").mkdir()
    (root / "Images" / "a" / "b.jpg").write_bytes(image_bytes(seed=8))
    out = tmp_path / "tags.parquet"
    summary = predict_catalogue(stub_run, data=root, output=out, progress=False)
    assert pq.read_table(out).column("Id").to_pylist() == ["tt01"]
    assert summary["films"] == 3 and summary["rows"] == 1
    assert list(summary["not_in_output"].values()) == [2] and "Id not a file name" in next(iter(summary["not_in_output"]))


def test_a_dataset_id_with_dotdot_is_a_counted_skip(tmp_path):
    from conftest import synthetic_rows, write_dataset
    from movie_genres.data.dataset import load_dataset

    rows = synthetic_rows(6, seed=2)
    root = write_dataset(tmp_path / "data", rows)
    rows[2]["Id"] = "../" + rows[2]["Id"]
    write_dataset(tmp_path / "data2", rows)
    (tmp_path / "data2" / f"{rows[2]['Id'][3:]}.jpg").write_bytes(image_bytes())  # outside Images/
    ds = load_dataset(tmp_path / "data2")
    assert len(ds) == 5 and ds.skipped == {"Id not a file name": 1}
    assert all(p is None or p.parent.name == "Images" for p in ds.poster_paths)
    assert len(load_dataset(root)) == 6


# ----------------------------------------------------------------------------------------------------------------------
# manifests whose columns are not text


def test_a_parquet_manifest_with_a_list_column_is_a_clear_error(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"Id": ["a", "b"], "overview": [["a ghost", "a house"], ["love"]]}), path)
    with pytest.raises(CatalogueError, match=r"column 'overview' \(overview\) holds list<.*string.*>, not text"):
        open_catalogue(manifest=path)
    pq.write_table(pa.table({"Id": [1.5, 2.5], "overview": ["x", "y"]}), path)
    with pytest.raises(CatalogueError, match=r"column 'Id' \(Id\) holds double"):
        open_catalogue(manifest=path)
    pq.write_table(pa.table({"Id": [1, 2], "overview": ["a ghost", None], "poster": pa.array([None, None], pa.null())}), path)
    cat = open_catalogue(manifest=path)  # integer Ids, an all-null poster column: fine
    assert [p.rows.column("Id").to_pylist() for p in cat.parts(10)] == [["1", "2"]]


# ----------------------------------------------------------------------------------------------------------------------
# two jobs on one output


def test_a_second_job_on_the_same_output_is_refused(stub_run, tmp_path):
    root = _dataset(tmp_path / "films", [f"tt{i:02d}" for i in range(6)])
    out = tmp_path / "tags.parquet"
    cat = open_catalogue(data=root)
    from movie_genres.catalogue.output import run_fingerprint

    with PartStore(out, run_fingerprint(stub_run), cat.fingerprint(), 2) as first:
        assert first.begin() == "fresh"
        with pytest.raises(OutputBusy, match=f"another job \\(process {os.getpid()}\\) is writing {out}"):
            predict_catalogue(stub_run, data=root, output=out, progress=False)
    assert not (tmp_path / "tags.parquet.lock").exists()  # released, and removed
    summary = predict_catalogue(stub_run, data=root, output=out, progress=False, part_rows=2)  # now it may
    assert summary["rows"] == 6 and pq.read_metadata(out).num_rows == 6


def test_a_missing_part_is_never_assembled_and_never_complete(stub_run, tmp_path, monkeypatch):
    root = _dataset(tmp_path / "films", [f"tt{i:02d}" for i in range(6)])
    out = tmp_path / "tags.parquet"
    real = PartStore.write

    def lose_part_1(self, index, table):  # as when another job removed the parts folder under this one
        real(self, index, table)
        if index == 1:
            self._part_path(1).unlink()

    monkeypatch.setattr(PartStore, "write", lose_part_1)
    with pytest.raises(OutputIncomplete, match="1 of 3 parts of .*tags.parquet are missing or short \\(part-000001"):
        predict_catalogue(stub_run, data=root, output=out, progress=False, part_rows=2)
    assert not out.exists()
    monkeypatch.setattr(PartStore, "write", real)
    summary = predict_catalogue(stub_run, data=root, output=out, progress=False, part_rows=2)  # the same command redoes it
    assert summary["parts_resumed"] == 2 and summary["rows"] == 6
    assert pq.read_table(out).column("Id").to_pylist() == [f"tt{i:02d}" for i in range(6)]

    # an output that lost rows after it was written is not "already complete"
    pq.write_table(pq.read_table(out).slice(0, 4), out)
    with pytest.raises(OutputIncomplete, match="holds 4 rows but its summary says 6"):
        predict_catalogue(stub_run, data=root, output=out, progress=False)


def test_two_jobs_at_once_lose_nothing(stub_run, tmp_path, monkeypatch):
    """Job A is halfway through when job B starts on the same output: B is refused, A finishes with every film."""
    ids = [f"tt{i:03d}" for i in range(40)]
    root = _dataset(tmp_path / "films", ids)
    out = tmp_path / "tags.csv"
    real, halfway, go_on = PartStore.write, threading.Event(), threading.Event()

    def write(self, index, table):
        if index == 5:
            halfway.set()
            go_on.wait(10)
        real(self, index, table)

    monkeypatch.setattr(PartStore, "write", write)
    results: list = []
    a = threading.Thread(target=lambda: results.append(predict_catalogue(stub_run, data=root, output=out, progress=False,
                                                                         part_rows=4)))
    a.start()
    assert halfway.wait(10)
    try:
        with pytest.raises(OutputBusy):
            predict_catalogue(stub_run, data=root, output=out, progress=False, part_rows=4)
    finally:
        go_on.set()
        a.join(10)
    assert results and results[0]["rows"] == 40
    with open(out, newline="", encoding="utf-8") as f:
        assert [r["Id"] for r in csv.DictReader(f)] == ids


# ----------------------------------------------------------------------------------------------------------------------
# a cache that cannot be written


def test_an_unwritable_cache_means_uncached_work_and_one_warning(tmp_path, tiny_data, tiny_config, caplog, monkeypatch):
    """train and evaluate with MOVIE_GENRES_CACHE where nothing can be written (here a file stands in the way, which
    stops root too): one warning, the same results as with a cache, and nothing raised."""
    import logging

    from movie_genres import evaluate, train

    (tmp_path / "blocker").write_text("a file where the cache folder would be")
    cache = tmp_path / "blocker" / "cache"
    monkeypatch.setenv("MOVIE_GENRES_CACHE", str(cache))
    cfg = {**tiny_config, "epochs": 1}
    with caplog.at_level(logging.WARNING):
        run = train("text", tiny_data, tmp_path / "run", **cfg)
        scores = evaluate(run, tiny_data, include_training_films=True)
    warned = [r.getMessage() for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(warned) == 1 and str(cache) in warned[0] and "working uncached" in warned[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert scores["n_films"] == 60 and not cache.exists()

    monkeypatch.setenv("MOVIE_GENRES_CACHE", str(tmp_path / "ok-cache"))  # a writable cache gives the same run
    cached = train("text", tiny_data, tmp_path / "cached", **cfg)
    assert json.loads((cached / "thresholds.json").read_text()) == json.loads((run / "thresholds.json").read_text())
    assert (tmp_path / "ok-cache" / "features").is_dir()


def test_a_run_cache_entry_can_be_read_by_others(tmp_path, tiny_data, tiny_config, monkeypatch):
    import stat

    from movie_genres import train
    from movie_genres.training import run_cache

    monkeypatch.setenv("MOVIE_GENRES_CACHE", str(tmp_path / "cache"))
    train("bilstm", tiny_data, tmp_path / "run", **{**tiny_config, "epochs": 1})
    (entry,) = (tmp_path / "cache" / "runs").iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755 and (entry / run_cache.RECORD).is_file()
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o004 for p in entry.rglob("*"))  # every file and folder world-readable


# ----------------------------------------------------------------------------------------------------------------------
# the service


def _raw_request(url: str, path: str, headers: dict, body: bytes, byte_every: float, read_timeout: float = 10.0):
    """Send ``body`` one byte every ``byte_every`` s on a raw socket (a slow client); (status, seconds, body)."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port))
    s.settimeout(read_timeout)
    head = f"POST {path} HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    started = time.monotonic()
    s.sendall(head.encode())
    s.setblocking(False)
    got = b""
    try:
        for i in range(len(body)):
            try:
                s.send(body[i:i + 1])
            except OSError:
                break  # the server has answered and closed
            deadline = time.monotonic() + byte_every
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                except BlockingIOError:
                    time.sleep(0.01)
            if got:
                break
        s.setblocking(True)
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    status = int(got.split(b" ", 2)[1]) if got else None
    return status, time.monotonic() - started, got.partition(b"\r\n\r\n")[2]


def test_a_slow_body_is_a_408_and_the_service_goes_on(monkeypatch):
    import httpx

    from movie_genres.service.app import create_app
    from serve_helpers import multipart_body, running_server

    body, headers = multipart_body(("overview", "a ghost in an old house " * 20, None, None))
    with running_server(create_app(FakePredictor(), body_timeout_seconds=1)) as url:
        for path, hdrs, data in (("/predict", headers, body),
                                 ("/explain", {"content-type": "application/x-www-form-urlencoded"}, b"overview=" + b"a" * 200)):
            status, seconds, answer = _raw_request(url, path, hdrs, data, byte_every=0.2)
            assert status == 408 and 0.9 < seconds < 4, (path, status, seconds)
            assert b"did not arrive within 1 s" in answer
        assert httpx.get(url + "/health").status_code == 200
        r = httpx.post(url + "/predict", content=body, headers=headers)  # a body sent at once is not affected
        assert r.status_code == 200 and r.json()["genres"]


def test_a_body_sent_a_few_bytes_a_second_is_cut_off_early(monkeypatch):
    import httpx

    from movie_genres.service import multipart
    from movie_genres.service.app import create_app
    from serve_helpers import multipart_body, running_server

    monkeypatch.setattr(multipart, "RATE_GRACE_SECONDS", 0.5)
    body, headers = multipart_body(("overview", "a ghost in an old house " * 20, None, None))
    with running_server(create_app(FakePredictor(), min_body_rate_bytes=1000)) as url:
        status, seconds, answer = _raw_request(url, "/predict", headers, body, byte_every=0.2)
        assert status == 408 and 0.4 < seconds < 2, (status, seconds)
        assert b"arriving at under 1000 bytes/s" in answer
        assert httpx.post(url + "/predict", content=body, headers=headers).status_code == 200


def test_slow_clients_holding_every_connection_are_let_go(monkeypatch):
    """As many slow clients as the server takes connections (here 4; 64 by default): /health is 503 while they hold
    them, and 200 again once their bodies have been timed out."""
    import socket

    import httpx

    from movie_genres.service import multipart
    from movie_genres.service.app import create_app
    from serve_helpers import running_server

    monkeypatch.setattr(multipart, "RATE_GRACE_SECONDS", 0.5)
    with running_server(create_app(FakePredictor()), limit_concurrency=4) as url:
        port = int(url.rsplit(":", 1)[1])
        slow = []
        for _ in range(5):  # more than it takes, as 64+ are for the default
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 1000\r\n\r\no")  # then nothing more
            slow.append(s)
            time.sleep(0.02)
        time.sleep(0.2)
        try:
            assert httpx.get(url + "/health").status_code == 503  # every slot is held
            deadline = time.monotonic() + 5
            while httpx.get(url + "/health").status_code != 200:
                assert time.monotonic() < deadline, "the slow clients were never let go"
                time.sleep(0.1)
            answers = []
            for s in slow:
                s.settimeout(2)
                answers.append(s.recv(100)[:12])
            assert answers.count(b"HTTP/1.1 408") >= 3 and set(answers) <= {b"HTTP/1.1 408", b"HTTP/1.1 503"}
        finally:
            for s in slow:
                s.close()


def test_a_huge_field_name_is_not_echoed(caplog):
    import logging

    from fastapi.testclient import TestClient

    from movie_genres.service.app import create_app
    from serve_helpers import multipart_body

    name = "n" * (1 << 20)
    with TestClient(create_app(FakePredictor())) as client, caplog.at_level(logging.INFO):
        for r in (client.post("/predict", content=f"{name}=x".encode(), headers={"content-type": "application/x-www-form-urlencoded"}),
                  client.post("/predict", content=(b := multipart_body((name[:1000], "x", None, None)))[0], headers=b[1]),
                  client.post("/predict", content=(b := multipart_body(("poster", image_bytes(), "f" * 300 + ".jpg", "image/jpeg")))[0],
                              headers=b[1])):
            assert r.status_code == 422 and len(r.text) < 300, r.text[:300]
        assert "1,048,576 characters" in client.post("/predict", content=f"{name}=x".encode(),
                                                     headers={"content-type": "application/x-www-form-urlencoded"}).text
    assert caplog.records and max(len(r.getMessage()) for r in caplog.records) < 400


class _SlowPredictor(FakePredictor):
    """Encoding costs 10 ms a film (as a real encoder costs), so an explanation of a long overview takes seconds."""

    def transform(self, posters, overviews, *args, **kwargs):
        time.sleep(0.01 * len(posters))
        return super().transform(posters, overviews)


def test_predictions_flow_while_a_long_explanation_runs():
    import httpx

    from movie_genres.service.app import create_app
    from serve_helpers import running_server

    predictor = _SlowPredictor()
    overview = " ".join(f"word{i}" for i in range(160))  # 160 words, 1,300 characters
    explained: list = []
    with running_server(create_app(predictor, max_explain_words=120)) as url:
        def explain():
            t0 = time.monotonic()
            explained.append((httpx.post(url + "/explain", data={"overview": overview}, timeout=60), time.monotonic() - t0))

        t = threading.Thread(target=explain)
        t.start()
        deadline = time.monotonic() + 10
        while predictor.transforms < 3 and time.monotonic() < deadline:  # the explanation's variants are encoding
            time.sleep(0.005)
        waits = []
        for _ in range(3):
            t0 = time.monotonic()
            r = httpx.post(url + "/predict", data={"overview": "a ghost in an old house"}, timeout=60)
            waits.append(time.monotonic() - t0)
            assert r.status_code == 200
        t.join(60)
    (r, seconds), = explained
    assert r.status_code == 200 and len(r.json()["words"]) == 120  # the word budget
    assert seconds > 1.0 and max(waits) < 0.5, (seconds, waits)  # 1.2 s of encoding; each /predict waited < 0.5 s
    assert r.json() == json.loads(json.dumps(_explain_direct(overview, 120)))  # the turns change no number


def _explain_direct(overview: str, max_words: int) -> dict:
    from movie_genres.explanation import explain

    return explain(FakePredictor(), None, overview, max_words=max_words)


def test_the_model_lock_lets_predictions_go_first():
    from movie_genres.service.resources import ModelLock

    lock, order = ModelLock(), []
    lock.acquire(False)  # an explanation's turn

    def low():
        with lock.low():
            order.append("explanation")

    def urgent():
        with lock:
            order.append("prediction")

    a = threading.Thread(target=low)
    a.start()
    time.sleep(0.05)
    b = threading.Thread(target=urgent)
    b.start()
    time.sleep(0.05)
    lock.release()
    a.join(5)
    b.join(5)
    assert order == ["prediction", "explanation"]


def test_decoded_pixels_in_flight_are_bounded():
    import asyncio

    from movie_genres.service.resources import Budget, trim_heap

    budget, peak, log = Budget(100), [0], []

    async def request(name: str, pixels: int, seconds: float):
        async with budget.hold(pixels):
            peak[0] = max(peak[0], budget.in_use)
            log.append(f"{name} in")
            await asyncio.sleep(seconds)
            log.append(f"{name} out")

    async def main():
        await asyncio.gather(request("a", 60, 0.05), request("b", 60, 0.01), request("huge", 10**9, 0.01))

    asyncio.run(main())
    assert peak[0] <= 100 and log[:2] == ["a in", "a out"]  # b (and the one over the whole budget) waited for a
    assert budget.in_use == 0
    assert trim_heap() is True  # glibc: the heap's free pages go back


def test_a_batch_waits_for_the_decoding_budget(monkeypatch):
    """Two batches whose posters together exceed max_decoding_pixels never hold their decoded images at once."""
    from fastapi.testclient import TestClient

    from movie_genres.service.app import create_app
    from serve_helpers import multipart_body

    live, peak = [0], [0]

    class Counting(FakePredictor):
        def predict_many(self, items):
            live[0] += 1
            peak[0] = max(peak[0], live[0])
            time.sleep(0.2)
            live[0] -= 1
            return super().predict_many(items)

    poster = image_bytes(size=(100, 100))  # 10,000 pixels
    body, headers = multipart_body(*[(f"poster_{i}", poster, f"p{i}.jpg", "image/jpeg") for i in range(3)])
    app = create_app(Counting(), max_decoding_pixels=40_000, max_image_pixels=40_000)  # one batch of 30,000 at a time
    with TestClient(app) as client:
        results = []
        threads = [threading.Thread(target=lambda: results.append(client.post("/predict/batch", content=body, headers=headers)))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert [r.status_code for r in results] == [200, 200, 200] and peak[0] == 1


def test_turns_give_the_unsplit_answers():
    from movie_genres.service.resources import ModelLock, Turns

    calls = []

    class Recording(FakePredictor):
        def scores(self, inputs):
            calls.append(len(inputs["pixels"]))
            return super().scores(inputs)

    fake, rng = Recording(), np.random.default_rng(0)
    turns = Turns(fake, ModelLock(), rows=8)
    texts = [" ".join(f"w{j}" for j in rng.integers(0, 50, 6)) for _ in range(33)]
    inputs, ok, _ = turns.transform([None] * 33, texts)
    whole, whole_ok, _ = fake.transform([None] * 33, texts)
    assert np.array_equal(ok, whole_ok) and all(np.array_equal(inputs[k], whole[k]) for k in whole)
    np.testing.assert_array_equal(turns.scores(inputs), fake.scores(whole))
    assert calls == [33, 33]  # no one-film turn (the predictor scores one film by another path): 33, not 32 + 1
    calls.clear()
    more = {k: np.concatenate([v, v[:7]]) for k, v in inputs.items()}
    np.testing.assert_array_equal(turns.scores(more), fake.scores(more))
    assert calls == [32, 8, 40]


@pytest.mark.parametrize("model", ["cnn", "bilstm"])
def test_turns_explain_a_trained_run_as_explain_does(trained_runs, model):
    from movie_genres.explanation import explain
    from movie_genres.predictor import Predictor
    from movie_genres.service.resources import ModelLock, Turns

    predictor = Predictor.load(trained_runs[model])
    from PIL import Image

    poster = Image.open(io.BytesIO(image_bytes(size=(90, 130)))).convert("RGB")
    overview = "A ghost haunts an old house where a family of four moves in, and love blooms " * 3
    direct = explain(predictor, poster, overview, max_words=40)
    turned = explain(Turns(predictor, ModelLock()), poster, overview, max_words=40)
    assert turned["genres"] == direct["genres"] and turned["words"] == direct["words"]
    for g, e in direct["explanations"].items():
        t = turned["explanations"][g]
        assert t["probability"] == pytest.approx(e["probability"], abs=1e-4)
        assert [w["weight"] for w in t["words"]] == pytest.approx([w["weight"] for w in e["words"]], abs=1e-4)
        if e["heatmap"] is not None:
            np.testing.assert_allclose(t["heatmap"], e["heatmap"], atol=1e-4)


def test_encode_into_an_unwritable_cache_is_a_clear_error_before_any_work(tmp_path, monkeypatch):
    from movie_genres.catalogue import encode
    from movie_genres.io import OutputError

    root = _dataset(tmp_path / "films", ["tt01", "tt02"])
    (tmp_path / "blocker").write_text("")
    monkeypatch.setenv("MOVIE_GENRES_CACHE", str(tmp_path / "blocker" / "cache"))
    monkeypatch.setattr(encode, "RowEncoder", lambda *a, **k: pytest.fail("no encoding before the cache is checked"))
    with pytest.raises(OutputError, match="cannot be written; set MOVIE_GENRES_CACHE"):
        encode.encode_catalogue(data=root, encoders=["minilm"], progress=False)


def test_one_app_serves_one_event_loop_after_another():
    """TestClient (and a restarted server) runs each session in a new event loop; the shared budgets follow."""
    from fastapi.testclient import TestClient

    from movie_genres.service.app import create_app

    app = create_app(FakePredictor())
    for _ in range(2):
        with TestClient(app) as client:
            r = client.post("/predict", files={"poster": ("p.jpg", image_bytes(), "image/jpeg")})
            assert r.status_code == 200, r.text
