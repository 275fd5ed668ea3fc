"""Model names -> (featurizer, builder). ``movie-genres train --model NAME`` looks names up here."""
from __future__ import annotations

from movie_genres.config import Config
from movie_genres.features.inputs import OverviewTokens, PosterPixels, PretrainedFeatures

ORIGINAL = ("cnn", "bilstm")
PRETRAINED = ("text", "image", "early", "gmu", "late", "ensemble")
MODELS = ORIGINAL + PRETRAINED
FUSION = ("early", "gmu", "late")


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
    if cfg.model == "cnn":
        return PosterPixels(cfg.image_size, cfg.cache_dir, cfg.workers)
    if cfg.model == "bilstm":
        return OverviewTokens(cfg.vocab_size, cfg.sequence_length)
    if cfg.model == "text":
        return PretrainedFeatures(cfg.text_encoder, (), cfg.cache_dir, cfg.workers)
    if cfg.model == "image":
        return PretrainedFeatures(None, cfg.image_encoders, cfg.cache_dir, cfg.workers)
    return PretrainedFeatures(cfg.text_encoder, cfg.image_encoders, cfg.cache_dir, cfg.workers)


def build_model(cfg: Config, featurizer, num_genres: int):
    """Uncompiled Keras model for ``cfg.model`` (``late`` and ``ensemble`` are assembled from trained models)."""
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
