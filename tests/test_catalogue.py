"""Catalogues: predict --data / --manifest and encode, on tiny synthetic catalogues with every kind of bad row; the
slow tests compare one-film predict, the local batch and Ray on 200 shared films."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import synthetic_rows, write_dataset
from movie_genres.catalogue import CatalogueError, OutputMismatch
from movie_genres.catalogue.job import predict_catalogue
from movie_genres.catalogue.output import PartStore
from movie_genres.catalogue.read import open_catalogue


def _jpeg(colour=(200, 30, 30), size=(40, 80)) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(sum(colour))
    arr = np.clip(np.array(colour) + rng.integers(-30, 30, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# Rows 0-4 are the bad ones; row 10 repeats row 5's Id; one row has no Id.
BAD = {0: "truncated", 1: "not an image", 2: "missing", 3: "no overview", 4: "nothing"}


def make_catalogue(root: Path, n: int = 40) -> tuple[Path, list[str]]:
    """A dataset-format catalogue without genre columns; returns (folder, the Ids expected in the output, in order)."""
    rows = synthetic_rows(n, seed=3)
    posters = {rows[0]["Id"]: _jpeg()[:400], rows[1]["Id"]: b"not an image at all", rows[2]["Id"]: None, rows[4]["Id"]: None}
    rows[3]["Overview"] = rows[4]["Overview"] = ""
    write_dataset(root, rows, posters)
    with open(root / "IMDB_overview_genres.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Id", "Overview"])
        for i, r in enumerate(rows):
            w.writerow([r["Id"], r["Overview"]])
            if i == 10:
                w.writerow([rows[5]["Id"], "a second row for the same film"])
            if i == 20:
                w.writerow(["", "a row with no Id"])
    return root, [r["Id"] for r in rows]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return make_catalogue(tmp_path_factory.mktemp("catalogue") / "films")


@pytest.fixture(scope="module")
def gmu_run(tmp_path_factory, tiny_config, cache_dir):
    """A tiny fusion run (reads posters and overviews) on real encoders: MiniLM and EfficientNet-Lite0."""
    from movie_genres import train

    base = tmp_path_factory.mktemp("gmu")
    data = write_dataset(base / "data", synthetic_rows(60, seed=1))
    return train("gmu", data, base / "gmu", cache_dir=cache_dir, image_encoders=("effnet-lite0",), **tiny_config)


def _read(path: Path):
    return pq.read_table(path).to_pandas()


def _probs(df) -> np.ndarray:
    return df.filter(like="prob_").to_numpy(dtype=np.float64)


def test_every_row_gets_an_answer_or_a_reason(trained_runs, gmu_run, catalogue, tmp_path):
    root, ids = catalogue
    expected = {
        "cnn": {0: "skipped: poster truncated", 1: "skipped: poster not an image", 2: "skipped: poster missing", 3: "ok", 4: "skipped: poster missing"},
        "bilstm": {0: "ok", 1: "ok", 2: "ok", 3: "skipped: no overview", 4: "skipped: no overview"},
        "gmu": {0: "partial: poster truncated", 1: "partial: poster not an image", 2: "partial: poster missing",
                3: "partial: no overview", 4: "skipped: poster missing; no overview"},
    }
    runs = {"cnn": trained_runs["cnn"], "bilstm": trained_runs["bilstm"], "gmu": gmu_run}
    for model, run in runs.items():
        summary = predict_catalogue(run, data=root, output=tmp_path / f"{model}.parquet", progress=False)
        df = _read(tmp_path / f"{model}.parquet")
        assert df["Id"].tolist() == ids  # one row per film, in catalogue order; the duplicate and the Id-less row are out
        assert summary["not_in_output"] == {"duplicate Id (first kept)": 1, "missing Id": 1}
        assert summary["films"] == len(ids) + 2 and summary["rows"] == len(ids)
        for i, status in expected[model].items():
            assert df["status"][i] == status, (model, i)
        assert (df["status"][5:] == "ok").all()
        assert set(df["model"]) == {model} and set(df["version"]) == {"0.1.0"}
        skipped = df["status"].str.startswith("skipped")
        assert df.loc[skipped, "prob_Drama"].isna().all() and not df.loc[~skipped, "prob_Drama"].isna().any()
        assert all(len(g) == 0 for g in df.loc[skipped, "genres"]) and all(len(g) >= 1 for g in df.loc[~skipped, "genres"])
        assert summary["ok"] + summary["partial"] + summary["skipped"] == len(ids)
        assert sum(summary["skipped_by_reason"].values()) == summary["skipped"]
        on_disk = json.loads((tmp_path / f"{model}.parquet.summary.json").read_text())
        assert on_disk["ok"] == summary["ok"] and on_disk["stamp"]["run"]["model"] == model
        assert not (tmp_path / f"{model}.parquet.parts").exists()
    gmu = _read(tmp_path / "gmu.parquet")
    assert list(gmu["inputs_used"][0]) == ["overview"] and list(gmu["inputs_used"][3]) == ["poster"]
    assert list(gmu["inputs_used"][5]) == ["poster", "overview"]


def test_batch_answers_are_one_film_answers(trained_runs, gmu_run, catalogue, tmp_path):
    from movie_genres import Predictor
    from movie_genres.features.posters import PosterError, open_poster

    root, ids = catalogue
    overviews = {}
    for r in csv.DictReader(open(root / "IMDB_overview_genres.csv", encoding="utf-8")):
        overviews.setdefault(r["Id"], r["Overview"])  # the first row of a duplicated Id is the one kept
    for run in (trained_runs["cnn"], trained_runs["bilstm"], gmu_run):
        predict_catalogue(run, data=root, output=tmp_path / "out.parquet", progress=False)
        df = _read(tmp_path / "out.parquet")
        (tmp_path / "out.parquet").unlink()
        (tmp_path / "out.parquet.summary.json").unlink()
        p = Predictor.load(run)
        for i, fid in enumerate(ids):
            if df["status"][i].startswith("skipped"):
                continue
            try:
                image = open_poster(root / "Images" / f"{fid}.jpg")
            except PosterError:
                image = None
            one = p.predict_proba([image], [overviews[fid]])[0]
            np.testing.assert_allclose(_probs(df)[i], one, atol=1e-5)
            assert list(df["genres"][i]) == p.predict_one(image, overviews[fid])["genres"]


def test_a_folder_of_posters_is_a_catalogue(trained_runs, tmp_path):
    folder = tmp_path / "posters"
    folder.mkdir()
    for name, colour in [("b", (10, 10, 200)), ("a", (200, 10, 10)), ("c", (10, 200, 10))]:
        (folder / f"{name}.jpg").write_bytes(_jpeg(colour))
    (folder / "d.png").write_bytes(b"\x89PNG broken")
    (folder / "notes.txt").write_text("not a poster")
    cnn = predict_catalogue(trained_runs["cnn"], data=folder, output=tmp_path / "cnn.csv", progress=False)
    df = __import__("pandas").read_csv(tmp_path / "cnn.csv")
    assert df["Id"].tolist() == ["a", "b", "c", "d"] and cnn["ok"] == 3
    assert df["status"].tolist()[3] in ("skipped: poster not an image", "skipped: poster unreadable", "skipped: poster truncated")
    assert all(isinstance(json.loads(g), list) for g in df["genres"]) and json.loads(df["inputs_used"][0]) == ["poster"]
    bilstm = predict_catalogue(trained_runs["bilstm"], data=folder, output=tmp_path / "bilstm.parquet", progress=False)
    assert bilstm["skipped_by_reason"] == {"no overview": 4}


def _manifest_rows(root: Path) -> list[dict]:
    images = root / "posters"
    images.mkdir(parents=True)
    rows = []
    for i, r in enumerate(synthetic_rows(12, seed=5)):
        (images / f"{r['Id']}.jpg").write_bytes(_jpeg((20 * i, 100, 200 - 10 * i)))
        poster = [f"posters/{r['Id']}.jpg", str(images / f"{r['Id']}.jpg"), (images / f"{r['Id']}.jpg").as_uri()][i % 3]
        rows.append({"Id": r["Id"], "poster": poster, "overview": r["Overview"]})
    rows[3]["poster"] = ""
    rows[4]["overview"] = ""
    rows[5]["poster"] = "posters/nowhere.jpg"
    rows[6]["poster"] = "file:///nowhere/at/all.jpg"
    return rows


def test_manifests_csv_and_parquet_give_the_same_rows(trained_runs, tmp_path):
    import pandas as pd

    rows = _manifest_rows(tmp_path / "m")
    pd.DataFrame(rows).to_parquet(tmp_path / "m" / "films.parquet")
    body = io.StringIO()
    w = csv.writer(body, lineterminator="\n")
    w.writerow(["ID", "Poster", "Overview"])  # header names in any case
    for i, r in enumerate(rows):
        w.writerow([r["Id"], r["poster"], r["overview"]])
        if i == 7:
            body.write('tt9,"one","two","three"\n')  # malformed: too many fields
    raw = ("\ufeff" + body.getvalue()).encode("utf-8")
    raw = raw.replace(rows[8]["overview"].encode(), rows[8]["overview"].encode() + b" \xff\xfe")  # not UTF-8
    (tmp_path / "m" / "films.csv").write_bytes(raw)
    out = {}
    for kind in ("csv", "parquet"):
        for model in ("cnn", "bilstm"):
            s = predict_catalogue(trained_runs[model], manifest=tmp_path / "m" / f"films.{kind}", output=tmp_path / f"{model}-{kind}.parquet", progress=False)
            out[model, kind] = (s, _read(tmp_path / f"{model}-{kind}.parquet"))
    s, cnn = out["cnn", "csv"]
    assert cnn["Id"].tolist() == [r["Id"] for r in rows] and s["not_in_output"] == {"malformed CSV row": 1}
    assert cnn["status"][3] == "skipped: no poster" and cnn["status"][5] == "skipped: poster missing" and cnn["status"][6] == "skipped: poster missing"
    assert (cnn["status"].drop([3, 5, 6]) == "ok").all()  # relative, absolute and file:// posters all read
    _, bilstm = out["bilstm", "csv"]
    assert bilstm["status"][4] == "skipped: no overview" and bilstm["status"][8] == "skipped: overview not UTF-8"
    for model in ("cnn", "bilstm"):
        a, b = out[model, "csv"][1], out[model, "parquet"][1]
        same = [i for i in range(len(rows)) if i != 8]
        np.testing.assert_allclose(_probs(a)[same], _probs(b)[same], atol=1e-6, equal_nan=True)


def test_an_empty_catalogue_is_an_empty_table(trained_runs, tmp_path):
    (tmp_path / "films.csv").write_text("Id,overview\n")
    s = predict_catalogue(trained_runs["bilstm"], manifest=tmp_path / "films.csv", output=tmp_path / "o.csv", progress=False)
    header = next(csv.reader(io.StringIO((tmp_path / "o.csv").read_text())))
    assert s["films"] == s["rows"] == 0 and header[:2] == ["Id", "prob_Action"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "m.csv").write_text("poster,overview\na.jpg,x\n"), "has no Id column"),
        (lambda d: (d / "m.csv").write_text("Id,title\n1,x\n"), "neither a poster nor an overview column"),
        (lambda d: (d / "m.txt").write_text("Id,poster\n"), "must be a .csv or .parquet"),
        (lambda d: (d / "m.parquet").write_bytes(b"PAR1 not really"), "not a readable Parquet file"),
    ],
)
def test_unusable_manifests_are_one_clear_error(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(CatalogueError, match=message):
        open_catalogue(manifest=next(tmp_path.iterdir()))


def test_unusable_folders_are_one_clear_error(tmp_path):
    with pytest.raises(CatalogueError, match="does not exist"):
        open_catalogue(data=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogueError, match="neither IMDB_overview_genres.csv nor poster images"):
        open_catalogue(data=tmp_path / "empty")
    with pytest.raises(CatalogueError, match="give one catalogue"):
        open_catalogue()


def _interrupt_after(monkeypatch, k: int):
    real = PartStore.write
    calls = []

    def write(self, index, table):
        if len(calls) == k:
            raise KeyboardInterrupt
        calls.append(index)
        real(self, index, table)

    monkeypatch.setattr(PartStore, "write", write)
    return calls


def test_an_interrupted_job_continues_where_it_stopped(trained_runs, catalogue, tmp_path, monkeypatch):
    root, ids = catalogue
    run = trained_runs["cnn"]
    straight = predict_catalogue(run, data=root, output=tmp_path / "straight.parquet", progress=False, part_rows=8)
    calls = _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        predict_catalogue(run, data=root, output=tmp_path / "out.parquet", progress=False, part_rows=8)
    assert calls == [0, 1] and sorted(p.name for p in (tmp_path / "out.parquet.parts").glob("part-*")) == ["part-000000.parquet", "part-000001.parquet"]
    assert not (tmp_path / "out.parquet").exists()
    monkeypatch.undo()
    again = predict_catalogue(run, data=root, output=tmp_path / "out.parquet", progress=False, part_rows=999)  # the parts keep their size
    # parts 0 and 1 held input rows 0-15, one of them the repeated Id
    assert again["parts_resumed"] == 2 and again["films_tagged_now"] == len(ids) - 15 and again["parts"] == straight["parts"]
    a, b = _read(tmp_path / "straight.parquet"), _read(tmp_path / "out.parquet")
    assert b["Id"].tolist() == ids and a["status"].tolist() == b["status"].tolist()
    np.testing.assert_allclose(_probs(a), _probs(b), atol=1e-6, equal_nan=True)
    assert {k: again[k] for k in ("ok", "partial", "skipped", "not_in_output")} == {k: straight[k] for k in ("ok", "partial", "skipped", "not_in_output")}


def test_output_of_another_run_or_input_is_refused(trained_runs, catalogue, tmp_path, monkeypatch):
    root, _ = catalogue
    out = tmp_path / "tags.parquet"
    predict_catalogue(trained_runs["cnn"], data=root, output=out, progress=False)
    with pytest.raises(OutputMismatch, match="was written by run .*cnn"):
        predict_catalogue(trained_runs["bilstm"], data=root, output=out, progress=False)
    other, _ = make_catalogue(tmp_path / "other", n=12)
    with pytest.raises(OutputMismatch, match=f"from {root.resolve()}, not {other.resolve()}"):
        predict_catalogue(trained_runs["cnn"], data=other, output=out, progress=False)

    from movie_genres import Predictor

    monkeypatch.setattr(Predictor, "load", lambda *a, **k: pytest.fail("a complete output needs no model"))
    done = predict_catalogue(trained_runs["cnn"], data=root, output=out, progress=False)
    assert done["already_complete"] and done["rows"] == 40
    monkeypatch.undo()

    calls = _interrupt_after(monkeypatch, 1)  # parts of an unfinished cnn job are refused to another run too
    with pytest.raises(KeyboardInterrupt):
        predict_catalogue(trained_runs["cnn"], data=root, output=tmp_path / "half.csv", progress=False, part_rows=8)
    assert calls == [0]
    monkeypatch.undo()
    with pytest.raises(OutputMismatch, match="half.csv.parts was written by run"):
        predict_catalogue(trained_runs["bilstm"], data=root, output=tmp_path / "half.csv", progress=False)
    (tmp_path / "theirs.csv").write_text("someone else's file\n")
    with pytest.raises(OutputMismatch, match="was not written by movie-genres predict"):
        predict_catalogue(trained_runs["cnn"], data=root, output=tmp_path / "theirs.csv", progress=False)
    assert (tmp_path / "theirs.csv").read_text() == "someone else's file\n"


def test_same_path_other_content_is_another_input(trained_runs, tmp_path):
    root, _ = make_catalogue(tmp_path / "films", n=12)
    predict_catalogue(trained_runs["bilstm"], data=root, output=tmp_path / "o.parquet", progress=False)
    csv_path = root / "IMDB_overview_genres.csv"
    csv_path.write_text(csv_path.read_text() + "tt7777777,A new film about love\n")
    with pytest.raises(OutputMismatch, match="same path, other content"):
        predict_catalogue(trained_runs["bilstm"], data=root, output=tmp_path / "o.parquet", progress=False)


def test_ray_actors_leave_a_cpu_free():
    from movie_genres.catalogue.ray_engine import plan_actors

    class Ray:
        def __init__(self, cpus):
            self.cpus = cpus

        def cluster_resources(self):
            return {"CPU": self.cpus}

    assert plan_actors(Ray(2.0), 1) == {"actors": 1, "cpus_per_actor": 1.0, "threads_per_actor": 2, "cluster_cpus": 2.0}
    assert plan_actors(Ray(1.0), 1)["cpus_per_actor"] == 0.75  # fractional: the read task still gets a CPU
    big = plan_actors(Ray(64.0), None)
    assert big["actors"] == 32 and big["actors"] * big["cpus_per_actor"] <= 63


def test_exported_onnx_is_kept_and_loaded_by_later_processes(tmp_path, monkeypatch, caplog):
    from movie_genres.features import encoders

    monkeypatch.setenv("MOVIE_GENRES_CACHE", str(tmp_path))
    first = encoders.EfficientNetLiteEncoder(0, "full", size=96)
    image = Image.open(io.BytesIO(_jpeg()))
    feats = first.encode([image])
    path = encoders.onnx_cache_path(first)
    assert path.is_file() and path.parent == tmp_path / "onnx" and path.name.startswith(first.name)
    from movie_genres.features.encoders import efficientnet_lite

    monkeypatch.setattr(efficientnet_lite, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    np.testing.assert_allclose(encoders.EfficientNetLiteEncoder(0, "full", size=96).encode([image]), feats, atol=1e-6)
    monkeypatch.undo()
    monkeypatch.setenv("MOVIE_GENRES_CACHE", str(tmp_path))
    path.write_bytes(b"damaged")
    np.testing.assert_allclose(encoders.EfficientNetLiteEncoder(0, "full", size=96).encode([image]), feats, atol=1e-6)
    assert "unusable" in caplog.text and path.stat().st_size > 1000


def _exif_rotated_jpeg() -> bytes:
    """A poster stored on its side with an EXIF 'rotate 90' tag (open_poster turns it upright)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("RGB", (80, 40), (200, 30, 30)).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def test_encode_fills_the_cache_train_reads(tmp_path, monkeypatch, tiny_config):
    """Overviews and posters (an EXIF-rotated one included) are cached by encode under the keys training looks up:
    training then encodes nothing, and every key encode wrote is one of training's."""
    import hashlib

    import movie_genres as mg
    from movie_genres.features import encoders

    rows = synthetic_rows(60)
    turned = rows[0]["Id"]
    data = write_dataset(tmp_path / "data", rows, posters={turned: _exif_rotated_jpeg()})
    cache = tmp_path / "cache"
    monkeypatch.setenv("MOVIE_GENRES_CACHE", str(cache))
    names = ["minilm", "effnet-lite0"]
    first = mg.encode(data=data, encoders=names, progress=False)
    distinct = len({r["Overview"] for r in rows})
    assert first["encoders"]["minilm"]["encoded"] == distinct and first["encoders"]["effnet-lite0"]["encoded"] == len(rows)
    assert first["not_encoded"] == {}
    again = mg.encode(data=data, encoders=names, progress=False)["encoders"]
    assert again["minilm"]["encoded"] == again["effnet-lite0"]["encoded"] == 0

    # the keys training computes (cached_features keys a poster file by encoders.content_key(path, "poster"))
    posters = sorted((data / "Images").glob("*.jpg"))
    train_keys = {"minilm": {encoders.content_key(r["Overview"]) for r in rows},
                  "effnet-lite0": {encoders.content_key(p, "poster") for p in posters}}
    for name in names:
        written = set(encoders.load_cache(encoders.get_encoder(name), cache)[0].tolist())
        assert written == train_keys[name], name
    turned_bytes = (data / "Images" / f"{turned}.jpg").read_bytes()
    assert encoders.content_key(turned_bytes, "poster") != hashlib.sha256(turned_bytes).hexdigest()  # EXIF-tagged key

    monkeypatch.setattr(encoders.MiniLMEncoder, "_encode", lambda self, items: pytest.fail("train encoded overviews again"))
    monkeypatch.setattr(encoders.EfficientNetLiteEncoder, "_encode", lambda self, items: pytest.fail("train encoded posters again"))
    for model in ("text", "image"):
        run = mg.train(model, data, tmp_path / model, cache_dir=str(cache), image_encoders=("effnet-lite0",),
                       encoder_precision="fp32", **tiny_config)
        assert (run / "model.keras").exists()
    with pytest.raises(ValueError, match="unknown encoder"):
        mg.encode(data=data, encoders=["minilmm"], progress=False)


def cli(*args):
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    return subprocess.run([sys.executable, "-m", "movie_genres", "-q", *map(str, args)], capture_output=True, text=True, env=env, timeout=600)


def test_cli_tags_a_catalogue_and_says_what_is_wrong(trained_runs, catalogue, tmp_path):
    root, ids = catalogue
    run = trained_runs["bilstm"]
    proc = cli("predict", run, "--data", root, "--output", tmp_path / "tags.csv", "--batch-size", "7")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows"] == len(ids) and summary["skipped_by_reason"] == {"no overview": 2} and summary["batch_size"] == 7
    assert next(csv.reader(io.StringIO((tmp_path / "tags.csv").read_text())))[:2] == ["Id", "prob_Action"]
    for args, message in [
        (["predict", run, "--data", root], "needs --output"),
        (["predict", run, "--data", root, "--overview", "x", "--output", tmp_path / "o.csv"], "not both"),
        (["predict", run, "--manifest", tmp_path / "none.csv", "--output", tmp_path / "o.csv"], "does not exist"),
        (["predict", run, "--data", root, "--output", tmp_path / "o.json"], "give a .parquet or .csv"),
        (["predict", run, "--data", root, "--output", tmp_path / "o.csv", "--actors", "2"], "for --engine ray"),
        (["predict", run, "--overview", "x", "--output", tmp_path / "o.csv"], "needs --data DIR or --manifest FILE"),
        (["encode", "--data", tmp_path / "nowhere"], "does not exist"),
    ]:
        proc = cli(*args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)


# ------------------------------------------------------------------------------------------------ slow: shared films
@pytest.fixture(scope="module")
def shared_slice(shared_data, tmp_path_factory):
    from test_shared_slice import _slice

    return _slice(shared_data, tmp_path_factory.mktemp("shared") / "films", 0, 200)


@pytest.fixture(scope="module")
def local_ray():
    from movie_genres.catalogue.ray_engine import start_ray

    ray, started = start_ray(None)
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_one_film_local_and_ray_give_the_same_probabilities(shared_slice, local_ray, tmp_path, cache_dir, monkeypatch):
    from movie_genres import Predictor, train
    from movie_genres.features.posters import PosterError, open_poster

    run = train("gmu", shared_slice, tmp_path / "gmu", epochs=1, verbose=0, cache_dir=cache_dir, text_encoder="minilm")
    local = predict_catalogue(run, data=shared_slice, output=tmp_path / "local.parquet", progress=False, part_rows=64)
    calls = _interrupt_after(monkeypatch, 1)  # Ray stopped after its first part, then run again
    with pytest.raises(KeyboardInterrupt):
        predict_catalogue(run, data=shared_slice, output=tmp_path / "ray.parquet", engine="ray", actors=1, progress=False, part_rows=64)
    assert len(calls) == 1
    monkeypatch.undo()
    ray = predict_catalogue(run, data=shared_slice, output=tmp_path / "ray.parquet", engine="ray", actors=1, progress=False)
    assert ray["parts_resumed"] == 1 and ray["actors"] == 1 and ray["rows"] == local["rows"] == 200
    a, b = _read(tmp_path / "local.parquet"), _read(tmp_path / "ray.parquet")
    assert a["Id"].tolist() == b["Id"].tolist() and a["status"].tolist() == b["status"].tolist()
    np.testing.assert_allclose(_probs(a), _probs(b), atol=1e-5, equal_nan=True)
    assert [list(g) for g in a["genres"]] == [list(g) for g in b["genres"]]
    p = Predictor.load(run)
    overviews = {r["Id"]: r["Overview"] for r in csv.DictReader(open(shared_slice / "IMDB_overview_genres.csv", encoding="utf-8"))}
    one = []
    for fid in a["Id"]:
        try:
            image = open_poster(shared_slice / "Images" / f"{fid}.jpg")
        except PosterError:
            image = None
        one.append(p.predict_proba([image], [overviews[fid]])[0])
    np.testing.assert_allclose(_probs(a), np.array(one), atol=1e-5)


@pytest.mark.slow
def test_encode_on_ray_gives_the_local_features(shared_slice, local_ray, tmp_path, monkeypatch):
    import movie_genres as mg
    from movie_genres.features.encoders import get_encoder, load_cache

    names = ["minilm", "effnet-lite0"]
    manifest = tmp_path / "films.csv"
    rows = list(csv.DictReader(open(shared_slice / "IMDB_overview_genres.csv", encoding="utf-8")))[:60]
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Id", "poster", "overview"])
        for r in rows:
            w.writerow([r["Id"], str(shared_slice / "Images" / f"{r['Id']}.jpg"), r["Overview"]])
    got = {}
    for engine in ("local", "ray"):
        monkeypatch.setenv("MOVIE_GENRES_CACHE", str(tmp_path / engine))
        s = mg.encode(manifest=manifest, encoders=names, engine=engine, actors=1 if engine == "ray" else None, progress=False)
        assert s["encoders"]["effnet-lite0"]["encoded"] == 60
        got[engine] = {n: dict(zip(*[x.tolist() if i == 0 else list(x) for i, x in enumerate(load_cache(get_encoder(n), tmp_path / engine))])) for n in names}
    for n in names:
        assert set(got["local"][n]) == set(got["ray"][n])
        for k, v in got["local"][n].items():
            np.testing.assert_allclose(got["ray"][n][k], v, atol=1e-5)
