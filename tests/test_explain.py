"""Explanations: planted evidence ranks first, variants are batched, and fusion models' spliced inputs are exact."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import write_dataset
from movie_genres.data.dataset import GENRES
from movie_genres.evaluation.metrics import decide
from movie_genres.explanation import GRID, explain, occluded_posters, without_span, word_spans
from movie_genres.features.inputs import Problems

HORROR = GENRES.index("Horror")
PLANT = "zombie"
FILLER = ["a", "the", "story", "of", "man", "woman", "city", "night", "day", "house", "friend", "town", "old", "young", "world"]
OTHER = {"Comedy": "funny laugh joke silly", "Drama": "family grief life struggle", "Romance": "love kiss wedding heart"}


class StubPredictor:
    """A predictor reading both inputs: Horror is decided by the planted word and by a red patch in the poster's
    bottom-right quarter. Its featurizer keeps each input in its own model inputs, as the real ones do."""

    def __init__(self, modalities=("poster", "overview")):
        self.genres = list(GENRES)
        self.trained = np.ones(len(GENRES), dtype=bool)
        self.thresholds_ = np.full(len(GENRES), 0.5)
        self.config, self.model_name, self.version = {}, "stub", "0"
        self.modalities = set(modalities)
        self.featurizer = object()
        self.calls = {"transform": 0, "scores": 0, "rows": 0}

    def transform(self, posters, overviews):
        self.calls["transform"] += 1
        n = len(posters)
        word = np.array([[float(PLANT in (t or "").split())] for t in overviews], dtype=np.float32)
        red = np.zeros((n, 1), dtype=np.float32)
        for i, p in enumerate(posters):
            if p is not None and "poster" in self.modalities:
                a = np.asarray(p.convert("RGB"), dtype=np.float32)
                h, w = a.shape[:2]
                quarter = a[h // 2 :, w // 2 :]
                red[i] = ((quarter[..., 0] > 180) & (quarter[..., 1] < 80)).mean()
        has_p = np.array([[p is not None] for p in posters], dtype=np.float32)
        has_o = np.array([[bool((t or "").strip())] for t in overviews], dtype=np.float32)
        usable = np.zeros(n, dtype=bool)
        if "poster" in self.modalities:
            usable |= has_p[:, 0] > 0
        if "overview" in self.modalities:
            usable |= has_o[:, 0] > 0
        return {"word": word, "red": red, "has_poster": has_p, "has_overview": has_o}, usable, Problems.none(n)

    def decide(self, probs):
        return decide(probs, self.thresholds_, True, self.trained)

    def scores(self, inputs):
        self.calls["scores"] += 1
        self.calls["rows"] += len(inputs["word"])
        probs = np.full((len(inputs["word"]), len(self.genres)), 0.1)
        probs[:, HORROR] = 1 / (1 + np.exp(-(2 * inputs["word"][:, 0] + 2 * inputs["red"][:, 0] - 2.5)))
        return probs


def patch_poster(size=(40, 60), patch=True) -> Image.Image:
    """Grey noise; with ``patch`` a red rectangle filling the bottom-right quarter."""
    rng = np.random.default_rng(0)
    a = np.clip(110 + rng.integers(-20, 20, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    if patch:
        a[size[1] // 2 :, size[0] // 2 :] = (220, 20, 20)
    return Image.fromarray(a)


def test_word_spans_keep_offsets():
    text = "A zombie's  night,  in town."
    spans = word_spans(text)
    assert [s["text"] for s in spans] == ["A", "zombie's", "night", "in", "town"]
    assert all(text[s["start"] : s["end"]] == s["text"] for s in spans)
    assert without_span(text, spans[2]["start"], spans[2]["end"]) == "A zombie's ,  in town."
    assert word_spans(None) == [] and word_spans("  ") == []


def test_occluded_posters_grey_one_cell_each():
    image = patch_poster()
    cells = occluded_posters(image, (6, 4))
    assert len(cells) == 24
    base = np.asarray(image)
    changed = [np.argwhere((np.asarray(c) != base).any(axis=2)) for c in cells]
    # cell (row 2, col 1) of a 40x60 poster is x 10..19, y 20..29
    ys, xs = changed[2 * 4 + 1].T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 19, 20, 29)
    covered = np.zeros(base.shape[:2], dtype=int)
    for c in changed:
        covered[tuple(c.T)] += 1
    assert (covered <= 1).all()  # cells never overlap


def test_planted_word_and_patch_rank_first_in_few_batched_calls():
    p = StubPredictor()
    overview = "An old man in a quiet town meets a zombie at night"
    out = explain(p, patch_poster(), overview)
    assert "Horror" in out["genres"] and out["inputs_used"] == ["poster", "overview"]
    h = out["explanations"]["Horror"]
    assert h["words"][0]["text"] == PLANT and h["words"][0]["weight"] > 0.1
    assert all(abs(w["weight"]) < 1e-6 for w in h["words"][1:])
    assert out["words"][h["words"][0]["i"]]["text"] == PLANT
    heat = np.array(h["heatmap"])
    assert heat.shape == GRID and out["grid"] == list(GRID)
    rows, cols = GRID
    assert heat[rows // 2 :, cols // 2 :].min() > heat[: rows // 2].max() + 0.01  # the patch's cells, and only they
    m = h["by_modality"]
    assert m["both"] == h["probability"] and m["overview"] < m["both"] and m["poster"] < m["both"]
    # one film, 12 words and 15 cells: 3 featurizer calls (film, words, cells) and one pass through the model
    assert p.calls["scores"] == 1 and p.calls["transform"] == 3
    assert p.calls["rows"] == 3 + len(out["words"]) + rows * cols


def test_one_modality_models_explain_only_theirs():
    text_only = StubPredictor(("overview",))
    out = explain(text_only, patch_poster(), f"a {PLANT} in town", genres="Horror")
    h = out["explanations"]["Horror"]
    assert out["inputs_used"] == ["overview"] and h["heatmap"] is None and h["by_modality"] is None and out["grid"] is None
    assert h["words"][0]["text"] == PLANT

    poster_only = StubPredictor(("poster",))
    out = explain(poster_only, patch_poster(), f"a {PLANT} in town", genres=["Horror"], grid=(2, 2))
    h = out["explanations"]["Horror"]
    assert out["words"] == [] and h["words"] == [] and np.argmax(h["heatmap"]) == 3
    with pytest.raises(ValueError, match="reads the poster"):
        explain(poster_only, None, "words only")


def test_bad_requests_are_clear_errors():
    p = StubPredictor()
    with pytest.raises(ValueError, match="did you mean 'Horror'"):
        explain(p, None, "x", genres=["Horor"])
    p.trained[GENRES.index("Western")] = False
    with pytest.raises(ValueError, match="not learned"):
        explain(p, None, "x", genres="Western")
    with pytest.raises(ValueError, match="grid"):
        explain(p, patch_poster(), None, grid=(0, 3))
    with pytest.raises(ValueError, match="none to explain"):
        explain(p, None, "   ")


def test_long_overviews_are_batched_below_the_feature_cache_size():
    p = StubPredictor(("overview",))
    p.featurizer = type("F", (), {"CACHE_FROM": 32})()
    words = " ".join(FILLER[i % len(FILLER)] for i in range(70)) + f" {PLANT}"
    out = explain(p, None, words, genres="Horror")
    assert out["explanations"]["Horror"]["words"][0]["text"] == PLANT
    assert p.calls["scores"] == 1 and p.calls["transform"] == 1 + 3  # 71 variants in chunks of 31


# ----------------------------------------------------------------------------------------------------- real models
def planted_rows(n: int, seed: int = 0) -> list[dict]:
    """Films where one rare word, and only it, marks Horror; the other genres have their own words."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        horror = rng.random() < 0.3
        other = [str(rng.choice(list(OTHER)))] if (not horror or rng.random() < 0.5) else []
        genres = [g for g in GENRES if g in other or (horror and g == "Horror")]
        words = list(rng.choice(FILLER, size=6)) + [w for g in other for w in OTHER[g].split()[:2]]
        if horror:
            words.append(PLANT)
        rng.shuffle(words)
        rows.append({"Id": f"tt{2000000 + i:07d}", "genres": genres, "Overview": " ".join(words).capitalize() + "."})
    return rows


@pytest.fixture(scope="module")
def planted_runs(tmp_path_factory, tiny_config, cache_dir):
    from movie_genres import train

    base = tmp_path_factory.mktemp("explain")
    data = write_dataset(base / "data", planted_rows(160))
    cfg = {**tiny_config, "embedding_init": "random", "embedding_dim": 16, "lstm_units": "8", "patience": 40,
           "learning_rate": 0.01, "image_encoders": "effnet-lite0", "hidden_units": 32}
    return {m: train(m, data, base / m, cache_dir=cache_dir, **{**cfg, "epochs": epochs}) for m, epochs in (("bilstm", 12), ("early", 30))}


@pytest.mark.parametrize("model", ["bilstm", "early"])
def test_planted_word_ranks_first_for_trained_models(planted_runs, model):
    from movie_genres import Predictor

    p = Predictor.load(planted_runs[model])
    overview = f"An old man and a young woman find a {PLANT} in the city at night."
    poster = patch_poster(patch=False)
    out = explain(p, poster, overview, genres="Horror")
    h = out["explanations"]["Horror"]
    assert h["words"][0]["text"] == PLANT, h["words"][:3]
    assert h["words"][0]["weight"] > 0.2 and h["probability"] > 0.5
    assert h["words"][0]["weight"] > 3 * max(abs(w["weight"]) for w in h["words"][1:])
    if model == "early":
        assert out["inputs_used"] == ["poster", "overview"] and np.array(h["heatmap"]).shape == GRID
        assert set(h["by_modality"]) == {"poster", "overview", "both"}


def test_fusion_explanations_match_the_model_on_each_variant(planted_runs):
    """The word and cell variants are encoded for one input and spliced with the film's other input; their
    probabilities must be what the model says for the whole edited film."""
    from movie_genres import Predictor

    p = Predictor.load(planted_runs["early"])
    overview = f"A {PLANT} meets a friend in town."
    poster = patch_poster()
    calls = {"scores": 0}
    scores = p.scores

    def counted(inputs):
        calls["scores"] += 1
        return scores(inputs)

    p.scores = counted
    out = explain(p, poster, overview, genres=["Horror", "Comedy"], grid=(2, 2))
    assert calls["scores"] == 1
    p.scores = scores
    spans = out["words"]
    texts = [without_span(overview, s["start"], s["end"]) for s in spans]
    cells = occluded_posters(poster, (2, 2))
    probs = p.predict_proba([poster] * len(texts) + cells + [poster, None], texts + [overview] * len(cells) + [None, overview])
    for g in ("Horror", "Comedy"):
        j, h = GENRES.index(g), out["explanations"][g]
        words = {w["i"]: w["weight"] for w in h["words"]}
        np.testing.assert_allclose([words[i] for i in range(len(spans))], h["probability"] - probs[: len(spans), j], atol=2e-4)
        np.testing.assert_allclose(np.ravel(h["heatmap"]), h["probability"] - probs[len(spans) : -2, j], atol=2e-4)
        np.testing.assert_allclose([h["by_modality"]["poster"], h["by_modality"]["overview"]], probs[-2:, j], atol=2e-4)


def test_cnn_heatmap_peaks_on_a_planted_patch(tmp_path, tiny_config, cache_dir):
    """A CNN trained on posters where a red patch (bottom-right quarter) marks Horror: the heatmap is highest there."""
    from movie_genres import Predictor, train

    rng = np.random.default_rng(3)
    rows, posters = [], {}
    for i in range(90):
        horror = i % 3 == 0
        fid = f"tt{3000000 + i:07d}"
        rows.append({"Id": fid, "genres": ["Horror"] if horror else [str(rng.choice(list(OTHER)))], "Overview": "A story."})
        buf = io.BytesIO()
        img = np.asarray(patch_poster(patch=horror)).copy()
        img = np.clip(img.astype(int) + rng.integers(-15, 15, size=img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(buf, "PNG")
        posters[fid] = buf.getvalue()
    data = write_dataset(tmp_path / "data", rows, posters=posters)
    run = train("cnn", data, tmp_path / "cnn", cache_dir=cache_dir,
                **{**tiny_config, "epochs": 8, "patience": 8, "augment": False, "image_size": 32, "learning_rate": 1e-3})
    p = Predictor.load(run)
    out = explain(p, patch_poster(), "ignored by a poster model", genres="Horror", grid=(2, 2))
    h = out["explanations"]["Horror"]
    assert out["inputs_used"] == ["poster"] and out["words"] == []
    without = explain(p, patch_poster(patch=False), None, genres="Horror", grid=(2, 2))["explanations"]["Horror"]
    assert h["probability"] > without["probability"] + 0.2, (h, without)
    heat = np.array(h["heatmap"])
    assert np.argmax(heat) == 3 and heat[1, 1] > 0.1 and heat[1, 1] > 5 * np.abs(heat).ravel()[:3].max(), heat


def test_cli_predict_explain(planted_runs):
    from test_cli import cli

    out = json.loads(cli("predict", planted_runs["bilstm"], "--overview", f"a {PLANT} in the old house", "--explain",
                         "--genre", "Horror").stdout)
    assert list(out["explanations"]) == ["Horror"] and out["explanations"]["Horror"]["words"][0]["text"] == PLANT
    bad = cli("predict", planted_runs["bilstm"], "--overview", "x", "--genre", "Horror", check=False)
    assert bad.returncode == 2 and "--genre needs --explain" in bad.stderr
