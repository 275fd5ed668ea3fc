"""Report: plots, samples page and multi-run HTML report, on synthetic run folders and a tiny fake dataset."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from movie_genres.reporting import write_report, write_run_plots, write_samples_page

GENRES = ["Action", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary", "Drama", "Family",
          "Fantasy", "History", "Horror", "Music", "Musical", "Mystery", "N/A", "News", "Reality-TV", "Romance",
          "Sci-Fi", "Short", "Sport", "Thriller", "War", "Western"]
USED = ["Action", "Comedy", "Drama", "Romance", "Thriller"]  # the only genres that occur in the fake data
N_FILMS = 12
MISSING = "tt9000011"  # no poster file
BROKEN = "tt9000010"  # a poster file that is not an image


def _color(i: int) -> tuple[int, int, int]:
    return (20 * i % 256, 255 - 20 * i % 256, (60 + 90 * i) % 256)


def make_dataset(root: Path) -> tuple[Path, pd.DataFrame]:
    """A fake dataset dir: the CSV with the real 25-genre schema and one solid-colour poster per film."""
    rng = np.random.default_rng(1)
    data_dir = root / "data"
    (data_dir / "Images").mkdir(parents=True)
    rows = []
    for i in range(N_FILMS):
        fid = f"tt90000{i:02d}"
        truth = sorted({str(g) for g in rng.choice(USED, size=rng.integers(1, 4), replace=True)}, key=GENRES.index)
        row = {"Id": fid, "Genre": str(truth)}
        row.update({g: int(g in truth) for g in GENRES})
        row["Overview"] = f"Overview of {fid}: a <b>story</b> & \"quotes\" #{i}."
        rows.append(row)
        if fid == BROKEN:
            (data_dir / "Images" / f"{fid}.jpg").write_bytes(b"not a jpeg at all")
        elif fid != MISSING:
            Image.new("RGB", (40, 60), _color(i)).save(data_dir / "Images" / f"{fid}.jpg", quality=95)
    df = pd.DataFrame(rows, columns=["Id", "Genre", *GENRES, "Overview"])
    df.to_csv(data_dir / "IMDB_overview_genres.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    return data_dir, df


def make_run(root: Path, name: str, model: str, dataset: pd.DataFrame, seed: int, micro_f1: float,
             history_rows: int | None = 3, cross_fitted: bool = True) -> Path:
    """A run folder as training writes it; val_predictions.csv rows are shuffled relative to the dataset CSV."""
    rng = np.random.default_rng(seed)
    run = root / name
    run.mkdir()
    trained = [g in USED for g in GENRES]
    excluded = [g for g in GENRES if g not in USED]
    (run / "config.json").write_text(json.dumps({"model": model, "seed": seed, "min_one_genre": True,
                                                 "data_dir": "data", "version": "0.1.0"}))
    (run / "genres.json").write_text(json.dumps({"genres": GENRES, "trained": trained, "excluded": excluded}))
    thresholds = [round(float(rng.uniform(0.3, 0.6)), 2) if t else 0.5 for t in trained]
    (run / "thresholds.json").write_text(json.dumps({"genres": GENRES, "thresholds": thresholds}))
    order = rng.permutation(len(dataset))
    assert not np.array_equal(order, np.arange(len(dataset)))
    vp = {"Id": dataset["Id"].to_numpy()[order]}
    for g in GENRES:
        vp[f"true_{g}"] = dataset[g].to_numpy()[order]
    for g in GENRES:
        y = dataset[g].to_numpy()[order]
        vp[f"prob_{g}"] = np.clip(0.45 * y + rng.uniform(0, 0.55, len(y)), 0, 1) if g in USED else rng.uniform(0, 0.05, len(y))
    pd.DataFrame(vp).to_csv(run / "val_predictions.csv", index=False)
    pd.DataFrame({"Id": dataset["Id"], "split": "val"}).to_csv(run / "split.csv", index=False)
    if history_rows:
        e = np.arange(history_rows)
        pd.DataFrame({"epoch": e, "loss": 0.6 - 0.05 * e, "precision": 0.3 + 0.05 * e, "val_loss": 0.65 - 0.03 * e,
                      "val_precision": 0.28 + 0.04 * e}).to_csv(run / "history.csv", index=False)
    keys = ["micro_f1", "macro_f1", "weighted_f1", "samples_f1", "micro_precision", "micro_recall", "map_macro"]
    tuned = {k: micro_f1 - 0.01 * i for i, k in enumerate(keys)}
    metrics = {
        "model": model, "n_films": len(dataset), "n_skipped": 3, "skipped": {"poster missing": 2, "empty overview": 1},
        "tuned": tuned, "at_0_5": {k: v - 0.05 for k, v in tuned.items()},
        "per_genre": {g: {"precision": 0.5, "recall": 0.5, "f1": round(float(rng.uniform(0.2, 0.9)), 3),
                          "support": int(dataset[g].sum()), "ap": 0.5, "threshold": t}
                      for g, t, tr in zip(GENRES, thresholds, trained) if tr},
        "baselines": {"always Drama": {k: 0.3 for k in keys}, "always Drama + Comedy": {k: 0.35 for k in keys}},
        "excluded_genres": excluded, "train_seconds": 10.0 * seed, "inference_ms_per_film": 1.5,
    }
    if model == "late":
        metrics["by_modality"] = {"poster only": {"micro_f1": 0.41, "macro_f1": 0.2},
                                  "overview only": {"micro_f1": 0.52, "macro_f1": 0.31},
                                  "both": {"micro_f1": 0.58, "macro_f1": 0.36}}
    if cross_fitted:
        metrics["thresholds_note"] = "tuned = per-genre thresholds (micro objective) cross-fitted on 5 folds of the validation films"
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data_dir, df = make_dataset(root)
    run_a = make_run(root, "run_cnn", "cnn", df, seed=3, micro_f1=0.61, history_rows=3)
    run_b = make_run(root, "run_late", "late", df, seed=4, micro_f1=0.55, history_rows=1)
    return root, data_dir, df, run_a, run_b


def _is_png(path: Path) -> bool:
    if path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    with Image.open(path) as im:
        im.verify()
    return True


def _cards(html: str) -> dict[str, str]:
    cards = re.findall(r'<article class="film" data-id="([^"]+)">(.*?)</article>', html, flags=re.S)
    return {unescape(fid): body for fid, body in cards}


def _drawn(monkeypatch) -> dict:
    """Record each figure write_run_plots saves (file name -> matplotlib Figure), still saving it."""
    from movie_genres.reporting import plots

    figures, save = {}, plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.__setitem__(path.name, fig), save(fig, path))[1])
    return figures


def test_run_plots_draw_the_runs_numbers(world, monkeypatch):
    """Each plot shows the run's own numbers (a blank or wrong plot fails), and is a valid PNG."""
    from sklearn.metrics import f1_score, multilabel_confusion_matrix

    from movie_genres.reporting.plots import load_run

    _, _, _, run_a, run_b = world
    for run_dir in (run_a, run_b):  # 3-epoch and 1-epoch histories
        figures = _drawn(monkeypatch)
        paths = write_run_plots(run_dir)
        assert sorted(p.name for p in paths) == sorted(
            ["learning_curves.png", "confusion_matrices.png", "cooccurrence.png", "per_genre_f1.png", "thresholds.png",
             "reliability.png", "per_label.csv"])
        for p in paths:
            assert p.parent == run_dir / "plots" and (_is_png(p) or p.suffix == ".csv")
        run, history = load_run(run_dir), pd.read_csv(run_dir / "history.csv")

        curves = {ax.get_title(): {line.get_label(): line.get_ydata() for line in ax.get_lines()}
                  for ax in figures["learning_curves.png"].axes if ax.get_lines()}
        assert set(curves) == {"loss", "precision"}
        for metric, lines in curves.items():
            np.testing.assert_allclose(lines["train"], history[metric])
            np.testing.assert_allclose(lines["validation"], history[f"val_{metric}"])

        cms = multilabel_confusion_matrix(run.y_true, run.decide())
        panels = {ax.get_title().split()[0]: ax.images[0].get_array() for ax in figures["confusion_matrices.png"].axes if ax.images}
        assert set(panels) == set(USED)
        for genre, shown in panels.items():
            np.testing.assert_array_equal(shown, cms[GENRES.index(genre)])

        mesh = figures["cooccurrence.png"].axes[0].collections[0].get_array()
        present = [GENRES.index(g) for g in GENRES if g in USED]
        co = run.y_true[:, present].T @ run.y_true[:, present]
        np.testing.assert_array_equal(np.ma.compressed(mesh), co[np.tril_indices_from(co)])  # pairs and films per genre

        ax = figures["per_genre_f1.png"].axes[0]
        tuned_bars = {t.get_text().split()[0]: bar.get_width() for t, bar in zip(ax.get_yticklabels(), ax.containers[0])}
        tuned = f1_score(run.y_true, run.decide(), average=None, zero_division=0)
        assert tuned_bars == pytest.approx({g: tuned[GENRES.index(g)] for g in USED})
    assert not list((run_a / "plots").glob(".*tmp*")), "atomic_write leaves no temporary files"


def test_run_plots_without_history(world, tmp_path):
    _, _, df, _, _ = world
    run = make_run(tmp_path, "run_head", "text", df, seed=5, micro_f1=0.5, history_rows=None)
    paths = write_run_plots(run)
    assert {p.name for p in paths} == {"confusion_matrices.png", "cooccurrence.png", "per_genre_f1.png", "thresholds.png",
                                       "reliability.png", "per_label.csv"}
    assert all(_is_png(p) for p in paths if p.suffix == ".png")


def test_samples_page_lines_up_by_id(world, tmp_path):
    _, data_dir, df, run_a, run_b = world
    out = write_samples_page(tmp_path / "samples.html", data_dir, [run_a, run_b], n=N_FILMS)
    html = out.read_text(encoding="utf-8")
    cards = _cards(html)
    assert set(cards) == set(df["Id"])
    truth_by_id = df.set_index("Id")
    preds = {run: pd.read_csv(run / "val_predictions.csv", dtype={"Id": str}).set_index("Id") for run in (run_a, run_b)}
    # the prediction files really are in another order than the CSV, and differ from each other
    assert list(preds[run_a].index) != list(df["Id"]) and list(preds[run_a].index) != list(preds[run_b].index)
    for fid, body in cards.items():
        row = truth_by_id.loc[fid]
        overview = unescape(re.search(r'<p class="overview">(.*?)</p>', body, flags=re.S).group(1))
        assert overview == row["Overview"] and fid in overview
        shown_truth = unescape(re.search(r'<div class="truth" data-genres="([^"]*)"', body).group(1)).split("|")
        assert shown_truth == [g for g in GENRES if row[g] == 1]
        shown = dict(re.findall(r'<tr class="pred" data-run="([^"]+)" data-top="([^"]+)"', body))
        assert set(shown) == {"cnn", "late"}
        for run, label in ((run_a, "cnn"), (run_b, "late")):
            probs = preds[run].loc[fid, [f"prob_{g}" for g in USED]].astype(float)
            expected = [(c[len("prob_"):], round(float(p), 4)) for c, p in probs.sort_values(ascending=False)[:3].items()]
            got = [(g, float(p)) for g, p in (item.split("=") for item in unescape(shown[label]).split("|"))]
            assert [g for g, _ in got] == [g for g, _ in expected]
            assert np.allclose([p for _, p in got], [p for _, p in expected], atol=1e-4)
        assert "labels in val_predictions.csv differ" not in body
        # poster: the thumbnail of this Id's poster (solid colour i), or a placeholder
        i = int(fid[-2:])
        img = re.search(r'<img class="poster" data-id="[^"]+" src="data:image/jpeg;base64,([^"]+)"', body)
        if fid in (MISSING, BROKEN):
            assert img is None and 'class="poster placeholder"' in body
        else:
            with Image.open(io.BytesIO(base64.b64decode(img.group(1)))) as im:
                assert im.format == "JPEG" and max(im.size) <= 180
                mean = np.asarray(im.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)
            assert np.abs(mean - np.array(_color(i))).max() < 12, (fid, mean, _color(i))
    # text is escaped, never raw markup from the data
    assert "<b>story</b>" not in html and "&lt;b&gt;story&lt;/b&gt;" in html
    assert "http://" not in html and "https://" not in html  # self-contained


def test_samples_page_ids_and_sampling(world, tmp_path):
    _, data_dir, _, run_a, _ = world
    html = write_samples_page(tmp_path / "s.html", data_dir, [run_a], ids=[MISSING, "tt9000003", "tt_unknown"]).read_text()
    assert list(_cards(html)) == [MISSING, "tt9000003"]
    assert 'class="poster placeholder" data-id="tt9000011"' in html
    a = list(_cards(write_samples_page(tmp_path / "a.html", data_dir, [run_a], n=4, seed=7).read_text()))
    b = list(_cards(write_samples_page(tmp_path / "b.html", data_dir, [run_a], n=4, seed=7).read_text()))
    assert len(a) == 4 and a == b


def test_report_compares_runs_and_marks_best(world, tmp_path):
    _, data_dir, df, run_a, run_b = world
    out = write_report([run_a, run_b], tmp_path / "report.html", data_dir=data_dir, title="Test <report>")
    html = out.read_text(encoding="utf-8")
    assert "<title>Test &lt;report&gt;</title>" in html
    assert "validation split" in html.lower()
    rows = dict(re.findall(r'<tr class="(?:run|baseline)"><td class="name">([^<]+)</td>(.*?)</tr>', html, flags=re.S))
    assert {"cnn", "late", "baseline: always Drama", "baseline: always Drama + Comedy"} <= set(rows)
    assert sum(k.startswith("baseline:") for k in rows) == 2  # identical baselines of the two runs shown once
    first_cell = lambda row: re.match(r"<td([^>]*)>([^<]*)</td>", row).groups()  # noqa: E731
    assert first_cell(rows["cnn"]) == (' class="best"', "0.610")  # micro F1: cnn wins
    assert first_cell(rows["late"]) == ("", "0.550")
    assert first_cell(rows["baseline: always Drama"]) == ("", "0.300")
    # per-genre table names a winner for each learned genre, and the excluded genres are listed
    per_genre = html.split('id="per-genre"')[1].split('id="data"')[0]
    f1 = {run: json.loads((run / "metrics.json").read_text())["per_genre"] for run in (run_a, run_b)}
    for g in USED:
        a, b = f1[run_a][g]["f1"], f1[run_b][g]["f1"]
        winner = "cnn" if a > b else "late" if b > a else "cnn, late"
        row = re.search(rf"<td class=\"name\">{g}</td>(.*?)</tr>", per_genre).group(1)
        assert row.endswith(f'<td class="txt">{winner}</td>')
        assert f'<td class="best">{max(a, b):.3f}</td>' in row and row.count('class="best"') == (2 if a == b else 1)
    assert "Documentary" in html.split('id="data"')[1].split("</p>")[0]
    assert "poster missing: 2" in html
    # a summary first: the comparison as a chart, then the table
    assert html.index('alt="comparison chart') < html.index('id="comparison"') < html.index('id="per-genre"')
    # a collapsed section per run; the late run's holds its by-input table
    sections = dict(re.findall(r'<details class="run" id="run-\d+" data-run="([^"]+)">(.*?)</details>', html, flags=re.S))
    assert list(sections) == ["cnn", "late"] and "<details open" not in html
    assert 'class="by-modality"' in sections["late"] and "overview only" in sections["late"] and "by-modality" not in sections["cnn"]
    assert 'id="ablation"' not in html
    # the text says what the numbers are: cross-fitted averages, in-sample per-genre F1
    comparison = html.split('id="comparison"')[1].split('id="per-genre"')[0]
    assert "cross-fitted" in comparison and "optimistic" not in comparison and "do not say" not in comparison
    assert "in-sample" in per_genre
    # the co-occurrence plot (the same validation films for both runs) once, outside the runs; 3 plots in each run
    shared = html.split('id="shared-plots"')[1].split('id="runs"')[0]
    assert shared.count("data:image/png;base64,") == 1 and 'alt="cooccurrence.png"' in shared
    assert all(body.count("data:image/png;base64,") == 5 and "cooccurrence" not in body for body in sections.values())
    assert html.count("data:image/png;base64,") == 1 + 1 + 2 * 5  # chart, shared plot, the runs' own
    assert (run_a / "plots" / "per_genre_f1.png").is_file()
    cards = _cards(html)
    assert cards and all('data-run="cnn"' in c and 'data-run="late"' in c for c in cards.values())
    assert set(cards) == set(df["Id"])  # all 12 films fit in the 24 samples
    assert 'class="poster placeholder" data-id="tt9000011"' in cards[MISSING] and 'class="poster placeholder"' in cards[BROKEN]


def test_report_without_data_dir_or_plots(tmp_path):
    _, df = make_dataset(tmp_path)
    run = make_run(tmp_path, "r", "text", df, seed=6, micro_f1=0.5, history_rows=None, cross_fitted=False)
    html = write_report([run], tmp_path / "out" / "r.html").read_text()
    assert "The metrics of text do not say that their thresholds were cross-fitted" in html
    assert 'id="samples"' not in html and html.count("data:image/png;base64,") == 1 + 5  # the chart, and its 5 plots
    assert 'id="shared-plots"' not in html  # one run: nothing to share
    assert "no learning curves" in html


def test_train_with_a_non_utf8_overview_writes_the_samples_page(tmp_path, tiny_config, cache_dir, capsys):
    """One \\xff byte in one overview: the loader skips that row, and the samples page (read after all the training)
    goes through the same loader, so train ends with exit 0 and a samples page, the row counted as skipped."""
    from conftest import synthetic_rows, write_dataset
    from movie_genres.cli import main

    rows = synthetic_rows(40, seed=2)
    bad = rows[5]
    bad["Overview"] += " Set in a cafe."
    data = write_dataset(tmp_path / "data", rows)
    csv_path = data / "IMDB_overview_genres.csv"
    raw = csv_path.read_bytes().replace(b"a cafe.", b"a caf\xff.")
    assert raw.count(b"\xff") == 1
    csv_path.write_bytes(raw)
    overrides = [f"{k}={v}" for k, v in tiny_config.items() if k != "epochs"]
    run = tmp_path / "run"
    code = main(["train", "--model", "cnn", "--data", str(data), "--out", str(run), "--epochs", "1",
                 f"cache_dir={cache_dir}", *overrides])
    assert code == 0, capsys.readouterr().err
    assert (run / "samples.html").is_file() and (run / "model.keras").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped"] == {"non-UTF-8 text": 1} and metrics["n_skipped"] == 1
    html = (run / "samples.html").read_text(encoding="utf-8")
    assert bad["Id"] not in _cards(html) and _cards(html)


def test_report_cards_show_the_explanation_explain_gives(trained_runs, tmp_path):
    """``report(..., explain=RUN)``: each sample card shows why RUN gives its most probable genre, with the same word
    weights as ``explain`` for that film; a poster model's card shades the poster grid."""
    import movie_genres as mg
    from movie_genres.data.dataset import load_dataset

    data, bilstm, cnn = trained_runs["data"], trained_runs["bilstm"], trained_runs["cnn"]
    html = mg.report([bilstm, cnn], tmp_path / "r.html", data=data, explain=bilstm).read_text(encoding="utf-8")
    cards = _cards(html)
    why = {fid: re.search(r'<div class="why" data-run="([^"]+)" data-genre="([^"]+)">', body) for fid, body in cards.items()}
    assert cards and all(why.values()), "every sample film is explained"
    ds = load_dataset(data)
    for fid in list(cards)[:3]:
        run, genre = why[fid].groups()
        assert run == bilstm.name
        overview = ds.overviews[ds.ids.index(fid)]
        want = mg.explain(bilstm, overview=overview, genres=[genre])["explanations"][genre]
        marks = re.findall(r'<mark class="(up|down)" style="--a: [0-9.]+" data-weight="(-?[0-9.]+)">([^<]*)</mark>', cards[fid])
        assert [unescape(t) for _, _, t in marks] == [w["text"] for w in sorted(want["words"], key=lambda w: w["i"])]
        got = {(unescape(t), round(float(w), 3)) for _, w, t in marks}
        assert {(w["text"], round(w["weight"], 3)) for w in want["words"]} == got
        assert "heat" not in cards[fid]  # the BiLSTM does not read posters
    html = mg.report([cnn], tmp_path / "c.html", data=data, explain=cnn).read_text(encoding="utf-8")
    body = next(iter(_cards(html).values()))
    assert len(re.findall(r'<span class="(?:up|down)" style="opacity: [0-9.]+" data-weight=', body)) == 15  # 5x3 grid
    assert 'class="why"' in body and "<mark" not in body
