"""The one list of models: each model's name, what it is built from, and how it is made.

``movie-genres train --model NAME`` looks names up here; ``train --model all`` trains :data:`MODELS` in this order, a
model starting once the models it :func:`needs` have finished; ``late`` and ``ensemble`` are composed of their
:func:`members`' runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from movie_genres.config import Config


@dataclass(frozen=True)
class ModelSpec:
    name: str
    pretrained: bool = True  # reads frozen pretrained features (trains a small head, few epochs, one thread)
    fusion: bool = False  # reads both modalities and learns to answer from either (modality dropout)
    members: tuple[str, ...] = ()  # composed of these models' runs (no fit of its own)
    reads: tuple[str, ...] = ()  # reads the features these models' runs cache (train them first in a job)
    start_rank: int = 0  # among models ready to start in a job, lower starts first: long ones, and those others wait for


SPECS = (
    ModelSpec("cnn", pretrained=False, start_rank=0),
    ModelSpec("bilstm", pretrained=False, start_rank=3),
    ModelSpec("text", start_rank=2),
    ModelSpec("image", start_rank=1),
    ModelSpec("early", fusion=True, reads=("text", "image"), start_rank=5),
    ModelSpec("gmu", fusion=True, reads=("text", "image"), start_rank=4),
    ModelSpec("late", fusion=True, members=("text", "image"), start_rank=7),
    ModelSpec("ensemble", members=("text", "image", "early", "gmu"), start_rank=6),
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
        import difflib

        close = difflib.get_close_matches(name, MODELS + ("all",), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown model '{name}'{hint} (choose from {', '.join(MODELS)} or all)")
    return name


def register_layers() -> None:
    """Register the package's own Keras objects (layers, losses), so saved models that name them load anywhere."""
    import movie_genres.models.heads  # noqa: F401
    import movie_genres.models.losses  # noqa: F401
    import movie_genres.models.lstm  # noqa: F401


def make_featurizer(cfg: Config):
    from movie_genres.features.inputs import OverviewTokens, PosterPixels, PretrainedFeatures

    if cfg.model == "cnn":
        return PosterPixels(cfg.image_size, cfg.cache_dir, cfg.workers)
    if cfg.model == "bilstm":
        return OverviewTokens(cfg.vocab_size, cfg.sequence_length)
    text, images = PretrainedFeatures.names_at(cfg.text_encoder, cfg.image_encoders, cfg.encoder_precision)
    if cfg.model == "text":
        return PretrainedFeatures(text, (), cfg.cache_dir, cfg.workers)
    if cfg.model == "image":
        return PretrainedFeatures(None, images, cfg.cache_dir, cfg.workers)
    return PretrainedFeatures(text, images, cfg.cache_dir, cfg.workers)


def build_model(cfg: Config, featurizer, num_genres: int):
    """Uncompiled Keras model for ``cfg.model`` (``late`` and ``ensemble``: :func:`compose_model`)."""
    from movie_genres.models import heads
    from movie_genres.models.bilstm import build_bilstm
    from movie_genres.models.cnn import build_cnn

    if cfg.model == "cnn":
        return build_cnn(num_genres, cfg.image_size, cfg.dropout)
    if cfg.model == "bilstm":
        vocab = min(cfg.vocab_size, featurizer.vectorizer.vocabulary_size)
        return build_bilstm(num_genres, max(vocab, 2), cfg.sequence_length, cfg.embedding_dim, cfg.lstm_units, cfg.recurrent_dropout, dropout=cfg.dropout)
    dims = featurizer.dims()
    if cfg.model == "text":
        return heads.build_feature_head("text_features", dims["text_features"], num_genres, cfg.hidden_units, cfg.dropout, "text")
    if cfg.model == "image":
        return heads.build_feature_head("image_features", dims["image_features"], num_genres, cfg.hidden_units, cfg.dropout, "image")
    if cfg.model == "early":
        return heads.build_early_fusion(dims["text_features"], dims["image_features"], num_genres, cfg.hidden_units, cfg.dropout)
    if cfg.model == "gmu":
        return heads.build_gmu(dims["text_features"], dims["image_features"], num_genres, cfg.hidden_units, cfg.dropout)
    raise ValueError(f"model '{cfg.model}' has no direct builder")


def compose_model(name: str, trained: dict, text_weights: list[float]):
    """``late`` / ``ensemble`` from its :func:`members`' trained models (by name) and the per-genre text weight."""
    from movie_genres.models import heads

    if name == "late":
        return heads.build_late_fusion(trained["text"], trained["image"], text_weights)
    if name == "ensemble":
        return heads.build_ensemble(trained["text"], trained["image"], trained["early"], trained["gmu"], text_weights)
    raise ValueError(f"model '{name}' is not composed of other runs")
