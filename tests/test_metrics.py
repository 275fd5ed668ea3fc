"""Decisions, thresholds, metrics and baselines against hand-computed values."""
from __future__ import annotations

import numpy as np

from movie_genres.evaluation.metrics import baselines, cross_fitted_decisions, decide, full_metrics, metric_set, tune_thresholds

GENRES = ["Comedy", "Drama", "Western"]


def test_decide_gives_every_film_a_genre_and_respects_allowed():
    probs = np.array([[0.1, 0.2, 0.9], [0.6, 0.7, 0.1]])
    out = decide(probs, np.array([0.5, 0.5, 0.5]), min_one=True, allowed=np.array([True, True, False]))
    assert out.tolist() == [[0, 1, 0], [1, 1, 0]]  # Western is not allowed, so film 0 gets its best allowed genre
    assert decide(probs, 0.95, min_one=False).sum() == 0


def test_tuned_thresholds_separate_a_separable_genre():
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]])
    p = np.array([[0.4, 0.1, 0], [0.35, 0.2, 0], [0.1, 0.3, 0], [0.2, 0.45, 0]])
    thr = tune_thresholds(y, p, np.array([True, True, False]))
    assert 0.2 < thr[0] <= 0.35 and 0.2 < thr[1] <= 0.3 and thr[2] == 1.0
    assert (decide(p, thr, allowed=np.array([True, True, False])) == y).all()


def test_baselines_match_hand_computation():
    y = np.array([[0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]])
    b = baselines(GENRES, y, np.array([True, True, False]))
    # always Drama: 3 TP, 1 FP, 2 FN -> precision 0.75, recall 0.6, F1 2/3
    assert b["always Drama"]["micro_precision"] == 0.75 and b["always Drama"]["micro_recall"] == 0.6
    assert abs(b["always Drama"]["micro_f1"] - 2 / 3) < 1e-3
    # always Drama + Comedy: 5 TP, 3 FP, 0 FN
    assert b["always Drama + Comedy"]["micro_precision"] == 0.625 and b["always Drama + Comedy"]["micro_recall"] == 1.0


def test_metric_set_keys_and_macro_over_present_genres():
    y = np.array([[1, 0, 0], [0, 1, 0]])
    m = metric_set(y, y, y.astype(float), np.array([True, True, False]))
    assert set(m) == {"micro_f1", "macro_f1", "weighted_f1", "samples_f1", "micro_precision", "micro_recall", "map_macro"}
    assert m["macro_f1"] == 1.0 and m["map_macro"] == 1.0  # the absent Western does not drag the macro average down


def test_cross_fitted_thresholds_are_not_optimistic_on_noise():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 3)) < 0.3).astype(int)
    p = rng.random((400, 3))  # pure noise
    trained = np.array([True, True, True])
    in_sample = metric_set(y, decide(p, tune_thresholds(y, p, trained)), p, trained)["micro_f1"]
    honest = metric_set(y, cross_fitted_decisions(y, p, trained), p, trained)["micro_f1"]
    assert honest <= in_sample


def test_full_metrics_structure():
    rng = np.random.default_rng(1)
    y = (rng.random((50, 3)) < 0.4).astype(int)
    p = np.clip(y * 0.6 + rng.random((50, 3)) * 0.4, 0, 1)
    m = full_metrics(GENRES, y, p, np.full(3, 0.5), np.array([True, True, True]))
    assert m["n_films"] == 50 and m["tuned"]["micro_f1"] > 0.8
    assert set(m["per_genre"]) == set(GENRES) and m["per_genre"]["Drama"]["support"] == int(y[:, 1].sum())
    common = [GENRES[j] for j in np.argsort(-y.sum(axis=0), kind="stable")[:2]]
    assert list(m["baselines"]) == [f"always {common[0]}", f"always {common[0]} + {common[1]}"]


def test_micro_objective_keeps_a_weak_genre_quiet():
    rng = np.random.default_rng(3)
    n = 600
    strong = (rng.random(n) < 0.5).astype(int)
    weak = (rng.random(n) < 0.1).astype(int)
    y = np.stack([strong, weak], axis=1)
    p = np.stack([np.clip(strong * 0.5 + rng.random(n) * 0.5, 0, 1), rng.random(n) * 0.3], axis=1)  # weak genre: noise
    trained = np.array([True, True])
    micro = tune_thresholds(y, p, trained, "micro")
    per_genre = tune_thresholds(y, p, trained, "per_genre")
    f1 = lambda thr: metric_set(y, decide(p, thr, min_one=False), p, trained)["micro_f1"]  # noqa: E731
    assert micro[1] > per_genre[1]  # per-genre F1 guesses the noisy genre for almost everyone
    assert f1(micro) >= f1(per_genre)
