"""Your labels: the label set is read from the data (a folder's 0/1 columns or a manifest's label lists), checked, and
carried by the run through evaluate, predict, the catalogue and the service."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from movie_genres import evaluate, predict, train
from movie_genres.data.dataset import DataError, check_label_names, load_dataset, parse_labels
from movie_genres.predictor import Predictor

# A three-label taxonomy with a space, a comma and non-ASCII letters in its names
TAXONOMY = {"Science Fiction": ("rocket", "alien", "planet"), "Drame, familial": ("mother", "tears", "grief"),
            "Comédie": ("joke", "laugh", "silly")}
COLOURS = {"Science Fiction": (30, 30, 200), "Drame, familial": (120, 60, 20), "Comédie": (240, 220, 40)}


def _films(n: int, seed: int, first: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    names = list(TAXONOMY)
    out = []
    for i in range(n):
        labels = [str(x) for x in rng.choice(names, size=1 + int(rng.random() < 0.3), replace=False)]
        words = [w for g in labels for w in TAXONOMY[g]]
        rng.shuffle(words)
        out.append({"Id": f"x{first + i:05d}", "labels": labels, "overview": "A story of " + " ".join(words) + "."})
    return out


def _manifest(root, films, fmt: str = "csv", column: str = "genres"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "posters").mkdir(exist_ok=True)
    for f in films:
        colour = np.array(COLOURS[f["labels"][0]] if f["labels"] else (128, 128, 128), dtype=np.int16)
        rng = np.random.default_rng(abs(hash(f["Id"])) % 2**32)
        img = np.clip(colour + rng.integers(-20, 20, size=(60, 30, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "posters" / f"{f['Id']}.jpg", "JPEG")
    frame = pd.DataFrame({"Id": [f["Id"] for f in films], "poster": [f"posters/{f['Id']}.jpg" for f in films],
                          "overview": [f["overview"] for f in films]})
    if fmt == "csv":
        frame[column] = ["|".join(f["labels"]) for f in films]
        path = root / "films.csv"
        frame.to_csv(path, index=False)
    else:
        frame[column] = [f["labels"] for f in films]
        path = root / "films.parquet"
        frame.to_parquet(path, index=False)
    return path


def test_label_cells_and_names():
    assert parse_labels("Action|Science Fiction") == ["Action", "Science Fiction"]
    assert parse_labels('["Drame", "Comédie"]') == parse_labels("['Drame', 'Comédie']") == ["Drame", "Comédie"]
    assert parse_labels(np.array(["SF/Fantasy", " Film-Noir "])) == ["SF/Fantasy", "Film-Noir"]
    assert parse_labels("") == parse_labels(None) == []
    with pytest.raises(ValueError, match="not a list"):
        parse_labels("[unclosed")
    assert check_label_names([" Science Fiction ", "Comédie", "SF/Fantasy"], "x") == ["Science Fiction", "Comédie", "SF/Fantasy"]
    for bad, message in ((["Drama", " drama"], "'Drama' and 'drama' are the same label"), (["ok", "tab\there"], "control character"),
                         (["x" * 101], "at most 100"), (["", "a"], "empty")):
        with pytest.raises(DataError, match=message):
            check_label_names(bad, "labels")


def test_a_folder_takes_whatever_label_columns_it_has_and_genre_is_optional(tmp_path):
    root = tmp_path / "d"
    (root / "Images").mkdir(parents=True)
    (root / "IMDB_overview_genres.csv").write_text(
        "Id,Science Fiction,Comédie,Overview\nt1,1,0,A rocket.\nt2,0,1,A joke.\nt3,1,1,An alien joke.\n", encoding="utf-8")
    ds = load_dataset(root)
    assert ds.genres == ["Science Fiction", "Comédie"] and ds.labels.tolist() == [[1, 0], [0, 1], [1, 1]]
    (root / "IMDB_overview_genres.csv").write_text("Id,Genre,A,A ,Overview\nt1,['A'],1,0,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="same label"):
        load_dataset(root)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_manifest_gives_its_labels_and_counts_rows_without_labels(tmp_path, fmt):
    films = _films(12, seed=0)
    films[3]["labels"] = []
    path = _manifest(tmp_path, films, fmt)
    ds = load_dataset(path)
    assert ds.genres == sorted(TAXONOMY, key=str.casefold) and len(ds) == 11 and ds.skipped == {"no labels": 1}
    row = ds.ids.index(films[0]["Id"])
    assert {g for g, v in zip(ds.genres, ds.labels[row]) if v} == set(films[0]["labels"])
    assert ds.poster_paths[row] == tmp_path / "posters" / f"{films[0]['Id']}.jpg"
    with pytest.raises(DataError, match="missing column.*tags.*--labels"):
        load_dataset(path, label_column="tags")


def test_a_manifest_with_wrong_column_types_or_remote_posters_is_a_clear_error(tmp_path):
    films = _films(4, seed=1)
    frame = pd.DataFrame({"Id": [f["Id"] for f in films], "overview": [[f["overview"]] for f in films],
                          "genres": [f["labels"] for f in films]})
    frame.to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(DataError, match="column 'overview' is list<element: string>, expected text"):
        load_dataset(tmp_path / "bad.parquet")
    pd.DataFrame({"Id": ["a"], "poster": ["s3://bucket/a.jpg"], "overview": ["x"], "genres": ["A"]}).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match="s3:// URI"):
        load_dataset(tmp_path / "r.csv")


@pytest.mark.slow
def test_a_taxonomy_of_your_own_trains_evaluates_and_predicts_in_its_names(tmp_path, tiny_config, cache_dir):
    train_path = _manifest(tmp_path / "train", _films(90, seed=2), "csv")
    other_path = _manifest(tmp_path / "other", _films(40, seed=3, first=1000), "parquet")
    run = train("early", train_path, tmp_path / "run", cache_dir=cache_dir, **{**tiny_config, "min_positives": 2, "epochs": 30})
    genres = json.loads((run / "genres.json").read_text())["genres"]
    assert genres == sorted(TAXONOMY, key=str.casefold)
    m = evaluate(run, other_path)
    assert m["n_films"] == 40 and m["micro_f1"] > m["baselines"][next(iter(m["baselines"]))]["micro_f1"] + 0.2
    answer = predict(run, overview="A rocket lands on an alien planet.")
    assert set(answer["probabilities"]) == set(TAXONOMY) and "Science Fiction" in answer["genres"]
    assert max(answer["probabilities"], key=answer["probabilities"].get) == "Science Fiction"
    p = Predictor.load(run)
    assert p.genres == genres
    # the catalogue's columns and the service speak the taxonomy's names
    from movie_genres import predict_batch

    for out in (tmp_path / "tags.csv", tmp_path / "tags.parquet"):
        summary = predict_batch(run, manifest=other_path, output=out, progress=False)
        assert summary["ok"] == 40
        frame = pd.read_csv(out) if out.suffix == ".csv" else pd.read_parquet(out)
        assert [c for c in frame.columns if c.startswith("prob_")] == [f"prob_{g}" for g in genres]
        decided = frame["genres"].map(lambda v: json.loads(v) if isinstance(v, str) else list(v))
        assert {x for row in decided for x in row} <= set(genres)

    from fastapi.testclient import TestClient

    from movie_genres.service.app import create_app
    from serve_helpers import wait_ready

    with TestClient(create_app(p)) as client:
        wait_ready(client.get)
        assert client.get("/genres").json()["genres"] == genres
        answer = client.post("/predict", data={"overview": "A silly joke and a laugh."}).json()
        assert max(answer["probabilities"], key=answer["probabilities"].get) == "Comédie" and set(answer["probabilities"]) == set(genres)
    with TestClient(create_app(p.with_decisions(threshold=0.0))) as client:  # movie-genres serve --threshold 0
        wait_ready(client.get)
        assert set(client.post("/predict", data={"overview": "A silly joke."}).json()["genres"]) == set(genres)


# -- decisions a catalogue team can set


def test_a_precision_target_is_reached_on_the_films_it_was_tuned_on_and_unreachable_labels_are_never_decided():
    from movie_genres.evaluation.metrics import NEVER, decide, expected_rates, tune_thresholds

    rng = np.random.default_rng(0)
    y = (rng.random((600, 4)) < 0.3).astype(int)
    probs = np.clip(y * np.array([0.5, 0.4, 0.3, 0.0]) + rng.random((600, 4)) * 0.6, 0, 1)  # label 3: pure noise
    trained = np.ones(4, dtype=bool)
    thr = tune_thresholds(y, probs, trained, "precision:0.9")
    decided = decide(probs, thr, min_one=False, allowed=trained)
    for j in range(3):
        assert y[decided[:, j] == 1, j].mean() >= 0.9 and decided[:, j].sum() > 0
    assert thr[3] == NEVER and not decided[:, 3].any()
    recall = tune_thresholds(y, probs, trained, "recall:0.8")
    got = decide(probs, recall, min_one=False, allowed=trained)
    assert all(got[y[:, j] == 1, j].mean() >= 0.8 for j in range(4))
    rates = expected_rates(y, probs, trained, "precision:0.9", min_one=False)
    assert min(rates["precision"][:3]) > 0.8 and rates["recall"][3] == 0.0  # cross-fitted: near the target, not above it by construction
    for bad in ("precision:2", "recall:x", "accuracy:0.9"):
        with pytest.raises(ValueError):
            tune_thresholds(y, probs, trained, bad)


@pytest.mark.slow
def test_thresholds_a_team_sets_at_training_and_at_predict_time(tmp_path, tiny_config, cache_dir):
    train_path = _manifest(tmp_path / "train", _films(90, seed=4), "csv")
    settings = {**tiny_config, "min_positives": 2, "epochs": 20}
    run = train("text", train_path, tmp_path / "run", cache_dir=cache_dir, threshold="precision:0.9", **settings)
    saved = json.loads((run / "thresholds.json").read_text())
    assert saved["objective"] == "precision:0.9" and set(saved["expected"]) == set(TAXONOMY)
    assert all(0 <= v["precision"] <= 1 for v in saved["expected"].values())
    p = Predictor.load(run)
    assert not p.run.min_one_genre  # a precision target decides only what passes it
    film = "A story of rocket and joke and mother."
    everything = predict(run, overview=film, threshold=0.0)
    assert set(everything["genres"]) == set(TAXONOMY)  # threshold 0: every label
    assert len(predict(run, overview=film, threshold=0.0, top_k=1)["genres"]) == 1
    assert predict(run, overview=film, threshold=1.0)["genres"] == []
    with pytest.raises(ValueError, match="between 0 and 1"):
        predict(run, overview=film, threshold=1.5)
    # the catalogue lists labels near their thresholds for a person to review
    from movie_genres import predict_batch

    out = tmp_path / "tags.parquet"
    predict_batch(run, manifest=train_path, output=out, progress=False, review_band=0.5)
    frame = pd.read_parquet(out)
    thr = dict(zip(p.genres, p.thresholds_))
    for _, row in frame.iterrows():
        near = {g for g in p.genres if thr[g] <= 1 and abs(row[f"prob_{g}"] - thr[g]) <= 0.5}
        assert set(row["review"]) == near


def _synthetic_run(root, n_labels: int, n_films: int = 300, seed: int = 0):
    """A run folder as training writes it (no model): labels, thresholds, metrics, validation predictions."""
    from movie_genres.evaluation.calibration import fit_calibration
    from movie_genres.evaluation.metrics import full_metrics

    rng = np.random.default_rng(seed)
    genres = [f"Étiquette {i:03d}, n°{i}" for i in range(n_labels)]
    y = (rng.random((n_films, n_labels)) < np.linspace(0.4, 0.02, n_labels)).astype(np.int8)
    probs = np.clip(0.2 + 0.4 * y + rng.normal(0, 0.15, y.shape), 0.001, 0.999)
    trained = y.sum(axis=0) >= 2
    thr = np.where(trained, 0.4, 1.0)
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model": "text", "min_one_genre": True}))
    (root / "genres.json").write_text(json.dumps({"genres": genres, "trained": trained.tolist(), "excluded": []}))
    (root / "thresholds.json").write_text(json.dumps({"genres": genres, "thresholds": thr.tolist()}))
    (root / "calibration.json").write_text(json.dumps(fit_calibration(genres, y, probs, trained)))
    (root / "metrics.json").write_text(json.dumps({"model": "text", **full_metrics(genres, y, probs, thr, trained, cross_fit=False)}))
    frame = pd.concat([pd.DataFrame({"Id": [f"f{i}" for i in range(n_films)]}),
                       pd.DataFrame(y, columns=[f"true_{g}" for g in genres]),
                       pd.DataFrame(probs, columns=[f"prob_{g}" for g in genres])], axis=1)
    frame.to_csv(root / "val_predictions.csv", index=False)
    return root, genres


@pytest.mark.parametrize("n_labels", [2, 40, pytest.param(200, marks=pytest.mark.slow)])
def test_the_report_stays_readable_from_2_to_200_labels(tmp_path, n_labels):
    from movie_genres.reporting import write_report

    run, genres = _synthetic_run(tmp_path / "run", n_labels)
    out = write_report([run], tmp_path / "report.html")
    html = out.read_text()
    per_label = pd.read_csv(run / "plots" / "per_label.csv")
    assert len(per_label) == int(json.loads((run / "genres.json").read_text())["trained"].count(True))
    assert list(per_label["support"]) == sorted(per_label["support"], reverse=True)  # most frequent first
    shown = min(30, len(per_label))
    assert html.count("<tr") <= shown + 40  # the per-label table is cut at 30 rows, the rest is in the CSV
    assert ("less frequent labels are not shown" in html) == (len(per_label) > 30)
    assert "Étiquette 000, n°0" in html  # non-ASCII and comma names survive, escaped as HTML needs
    for name in ("confusion_matrices.png", "per_genre_f1.png", "thresholds.png", "reliability.png", "cooccurrence.png"):
        with Image.open(run / "plots" / name) as im:
            assert im.height < 3500, (name, im.size)  # no 200-row grids


@pytest.mark.slow
def test_a_40_label_taxonomy_trains_evaluates_and_beats_the_constant_answer(tmp_path, tiny_config, cache_dir):
    vocabulary = ("dragon pirate robot wizard zombie knight cowboy alien vampire ninja detective astronaut chef "
                  "dinosaur mermaid spy soldier boxer pianist farmer surgeon witch ghost shark tiger volcano train "
                  "submarine castle desert jungle island prison casino circus hospital school church museum").split()
    names = [f"Sujet {w.capitalize()} / thème" for w in vocabulary]
    rng = np.random.default_rng(5)
    films = []
    for i in range(400):
        picked = rng.choice(len(names), size=1 + int(rng.random() < 0.4), replace=False)
        text = " and ".join(f"a {vocabulary[j]}" for j in picked)
        films.append({"Id": f"s{i:04d}", "overview": f"A story of {text}.", "genres": [names[j] for j in picked]})
    frame = pd.DataFrame(films)
    train_path, other_path = tmp_path / "train.parquet", tmp_path / "other.parquet"
    frame.iloc[:320].to_parquet(train_path, index=False)
    frame.iloc[320:].to_parquet(other_path, index=False)
    run = train("text", train_path, tmp_path / "run", cache_dir=cache_dir,
                **{**tiny_config, "min_positives": 2, "epochs": 60, "patience": 10, "hidden_units": 64})
    assert json.loads((run / "genres.json").read_text())["genres"] == sorted(names, key=str.casefold)
    m = evaluate(run, other_path)
    assert m["n_films"] == 80 and m["micro_f1"] > max(b["micro_f1"] for b in m["baselines"].values()) + 0.2


def test_the_shared_imdb_folder_reads_as_it_always_did(shared_data):
    """The default path does not move: the folder reader finds the 25 IMDb columns, in their order, with the one-hot
    values of the CSV, and the Genre lists agree with them (no row dropped for disagreeing)."""
    import csv

    from movie_genres.data.dataset import GENRES

    ds = load_dataset(shared_data)
    assert ds.genres == list(GENRES)
    with open(shared_data / "IMDB_overview_genres.csv", encoding="utf-8") as f:
        rows = {r["Id"]: r for r in csv.DictReader(f)}
    for i in range(0, len(ds), 97):
        assert [int(v) for v in ds.labels[i]] == [int(rows[ds.ids[i]][g]) for g in GENRES]
    assert "Genre disagrees with one-hot columns" not in ds.skipped
