"""Scores -> decisions -> metrics."""
from movie_genres.evaluation.metrics import baselines, decide, metric_set, per_genre_table, tune_thresholds

__all__ = ["baselines", "decide", "metric_set", "per_genre_table", "tune_thresholds"]
