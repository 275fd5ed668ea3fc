"""The one list of models: each model's name, what it is built from, and how it is made.

``movie-genres train --model NAME`` looks names up here; ``train --model all`` trains :data:`MODELS` in this order, a
model starting once the models it :func:`needs` have finished; ``late`` and ``ensemble`` are composed of their
:func:`members`' runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from movie_genres._names import did_you_mean
from movie_genres.config import Config


def _cnn(cfg: Config, featurizer, num_genres: int):
    from movie_genres.models.cnn import build_cnn

    return build_cnn(num_genres, cfg.image_size, cfg.dropout)


def _bilstm(cfg: Config, featurizer, num_genres: int):
    from movie_genres.models.bilstm import build_bilstm

    vocab = min(cfg.vocab_size, featurizer.vectorizer.vocabulary_size)
    return build_bilstm(num_genres, max(vocab, 2), cfg.sequence_length, cfg.embedding_dim, cfg.lstm_units,
                        cfg.recurrent_dropout, dropout=cfg.dropout)


def _head(which: str) -> Callable:
    def build(cfg: Config, featurizer, num_genres: int):
        from movie_genres.models import heads

        name = f"{which}_features"
        return heads.build_feature_head(name, featurizer.dims()[name], num_genres, cfg.hidden_units, cfg.dropout, which)

    return build


def _fusion(builder: str) -> Callable:
    def build(cfg: Config, featurizer, num_genres: int):
        from movie_genres.models import heads

        dims = featurizer.dims()
        return getattr(heads, builder)(dims["text_features"], dims["image_features"], num_genres, cfg.hidden_units, cfg.dropout)

    return build


def _composed(builder: str) -> Callable:
    def compose(members: list, text_weights: list[float]):
        from movie_genres.models import heads

        return getattr(heads, builder)(*members, text_weights)

    return compose


@dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: str  # what its featurizer makes: "pixels" (64x64 posters), "tokens" (overview ids), "text", "image", "both"
    build: Callable | None = None  # (cfg, fitted featurizer, number of genres) -> uncompiled keras.Model
    compose: Callable | None = None  # composed models: (member models in ``members`` order, per-genre text weights) -> model
    pretrained: bool = True  # reads frozen pretrained features (trains a small head, few epochs, one thread)
    fusion: bool = False  # reads both modalities and learns to answer from either (modality dropout)
    members: tuple[str, ...] = ()  # composed of these models' runs (no fit of its own)
    reads: tuple[str, ...] = ()  # reads the features these models' runs cache (train them first in a job)
    start_rank: int = 0  # among models ready to start in a job, lower starts first: long ones, and those others wait for


# Adding a model is one entry here (plus its builder in models/).
SPECS = (
    ModelSpec("cnn", "pixels", _cnn, pretrained=False, start_rank=0),
    ModelSpec("bilstm", "tokens", _bilstm, pretrained=False, start_rank=3),
    ModelSpec("text", "text", _head("text"), start_rank=2),
    ModelSpec("image", "image", _head("image"), start_rank=1),
    ModelSpec("early", "both", _fusion("build_early_fusion"), fusion=True, reads=("text", "image"), start_rank=5),
    ModelSpec("gmu", "both", _fusion("build_gmu"), fusion=True, reads=("text", "image"), start_rank=4),
    ModelSpec("late", "both", compose=_composed("build_late_fusion"), fusion=True, members=("text", "image"), start_rank=7),
    ModelSpec("ensemble", "both", compose=_composed("build_ensemble"), members=("text", "image", "early", "gmu"), start_rank=6),
)
SPEC = {s.name: s for s in SPECS}
MODELS = tuple(s.name for s in SPECS)  # also the order of `train --model all` and of a job's runs in its report
ORIGINAL = tuple(s.name for s in SPECS if not s.pretrained)
PRETRAINED = tuple(s.name for s in SPECS if s.pretrained)
FUSION = tuple(s.name for s in SPECS if s.fusion)
COMPOSED = tuple(s.name for s in SPECS if s.members)


def members(name: str) -> tuple[str, ...]:
    """The models whose runs ``name`` is composed of (empty for a model that is fitted itself)."""
    return SPEC[name].members


def needs(name: str) -> tuple[str, ...]:
    """The models ``name`` waits for when a job trains them too: its members and the models whose features it reads."""
    spec = SPEC[name]
    return tuple(dict.fromkeys(spec.members + spec.reads))


def check_model_name(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'{did_you_mean(name, MODELS + ('all',))} (choose from {', '.join(MODELS)} or all)")
    return name


def register_layers() -> None:
    """Register the package's own Keras objects (layers, losses), so saved models that name them load anywhere."""
    import movie_genres.models.heads  # noqa: F401
    import movie_genres.models.losses  # noqa: F401
    import movie_genres.models.lstm  # noqa: F401


def make_featurizer(cfg: Config):
    from movie_genres.features.inputs import OverviewTokens, PosterPixels, PretrainedFeatures

    kind = SPEC[cfg.model].inputs
    if kind == "pixels":
        return PosterPixels(cfg.image_size, cfg.cache_dir, cfg.workers)
    if kind == "tokens":
        return OverviewTokens(cfg.vocab_size, cfg.sequence_length)
    text, images = PretrainedFeatures.names_at(cfg.text_encoder if kind in ("text", "both") else None,
                                               cfg.image_encoders if kind in ("image", "both") else (), cfg.encoder_precision)
    return PretrainedFeatures(text, images, cfg.cache_dir, cfg.workers)


def build_model(cfg: Config, featurizer, num_genres: int):
    """Uncompiled Keras model for ``cfg.model`` (``late`` and ``ensemble``: :func:`compose_model`)."""
    spec = SPEC[cfg.model]
    if spec.build is None:
        raise ValueError(f"model '{cfg.model}' has no direct builder")
    return spec.build(cfg, featurizer, num_genres)


def compose_model(name: str, fitted: dict, text_weights: list[float]):
    """``late`` / ``ensemble`` from its :func:`members`' fitted models (by name) and the per-genre text weight."""
    spec = SPEC[name]
    if spec.compose is None:
        raise ValueError(f"model '{name}' is not composed of other runs")
    return spec.compose([fitted[m] for m in spec.members], text_weights)
