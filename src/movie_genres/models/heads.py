"""Heads on frozen pretrained features, and three ways to fuse the two modalities.

Inputs are named: ``text_features`` (the sentence encoder), ``image_features`` (stacked poster encoders), and the 0/1 flags
``has_overview`` / ``has_poster`` (shape (n, 1)), which let every fusion model predict from one modality alone.
"""
from __future__ import annotations

import keras
from keras import layers, ops


def _mlp(x, hidden: int, dropout: float, name: str):
    x = layers.Dropout(dropout / 2, name=f"{name}_in_dropout")(x)
    x = layers.Dense(hidden, activation="relu", name=f"{name}_dense")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x)


def build_feature_head(feature: str, dim: int, num_genres: int = 25, hidden: int = 512, dropout: float = 0.5, name: str = "head") -> keras.Model:
    """One modality: features -> dense -> 25 sigmoids. ``feature`` is ``text_features`` or ``image_features``."""
    x_in = keras.Input((dim,), name=feature)
    x = _mlp(x_in, hidden, dropout, name)
    genres = layers.Dense(num_genres, activation="sigmoid", name="genres")(x)
    return keras.Model(x_in, genres, name=name)


@keras.saving.register_keras_serializable(package="movie_genres")
class MaskFeatures(layers.Layer):
    """Zero a modality's features where it is missing (flag 0), so a missing input contributes nothing."""

    def call(self, features, flag):
        return features * ops.cast(flag, features.dtype)


def _inputs(text_dim: int, image_dim: int):
    return (
        keras.Input((text_dim,), name="text_features"),
        keras.Input((image_dim,), name="image_features"),
        keras.Input((1,), name="has_overview"),
        keras.Input((1,), name="has_poster"),
    )


def build_early_fusion(text_dim: int, image_dim: int, num_genres: int = 25, hidden: int = 512, dropout: float = 0.5) -> keras.Model:
    """Early fusion: concatenate (masked) features and the presence flags -> MLP -> 25 sigmoids."""
    t, v, has_t, has_v = _inputs(text_dim, image_dim)
    t_n = layers.LayerNormalization(name="text_norm")(t)
    v_n = layers.LayerNormalization(name="image_norm")(v)
    x = layers.Concatenate(name="concat")([MaskFeatures(name="mask_text")(t_n, has_t), MaskFeatures(name="mask_image")(v_n, has_v), has_t, has_v])
    x = _mlp(x, hidden, dropout, "fusion")
    genres = layers.Dense(num_genres, activation="sigmoid", name="genres")(x)
    return keras.Model([t, v, has_t, has_v], genres, name="early")


@keras.saving.register_keras_serializable(package="movie_genres")
class GatedMultimodalUnit(layers.Layer):
    """Gated multimodal unit (Arevalo et al. 2017): h = z * tanh(W_t t) + (1 - z) * tanh(W_v v), z = sigmoid(W_z [t, v]).

    A missing modality forces the gate to the other one (z = 1 without a poster, z = 0 without an overview).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.text_proj = layers.Dense(units, activation="tanh", name="text_proj")
        self.image_proj = layers.Dense(units, activation="tanh", name="image_proj")
        self.gate = layers.Dense(units, activation="sigmoid", name="gate")

    def build(self, input_shape):
        t_shape, v_shape = input_shape[0], input_shape[1]
        self.text_proj.build(t_shape)
        self.image_proj.build(v_shape)
        self.gate.build((t_shape[0], t_shape[-1] + v_shape[-1]))

    def call(self, inputs):
        t, v, has_t, has_v = inputs
        h_t, h_v = self.text_proj(t), self.image_proj(v)
        z = self.gate(ops.concatenate([t, v], axis=-1))
        # Both present: learned gate. Only text: z = 1. Only poster: z = 0.
        z = has_t * has_v * z + has_t * (1 - has_v)
        return z * h_t + (1 - z) * h_v

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def build_gmu(text_dim: int, image_dim: int, num_genres: int = 25, hidden: int = 512, dropout: float = 0.5) -> keras.Model:
    t, v, has_t, has_v = _inputs(text_dim, image_dim)
    t_n = layers.Dropout(dropout / 2, name="text_dropout")(layers.LayerNormalization(name="text_norm")(t))
    v_n = layers.Dropout(dropout / 2, name="image_dropout")(layers.LayerNormalization(name="image_norm")(v))
    h = GatedMultimodalUnit(hidden, name="gmu")([t_n, v_n, has_t, has_v])
    h = layers.Dropout(dropout, name="gmu_dropout")(h)
    h = layers.Dense(hidden // 2, activation="relu", name="dense")(h)
    h = layers.Dropout(dropout, name="dense_dropout")(h)
    genres = layers.Dense(num_genres, activation="sigmoid", name="genres")(h)
    return keras.Model([t, v, has_t, has_v], genres, name="gmu")


@keras.saving.register_keras_serializable(package="movie_genres")
class LateFusion(layers.Layer):
    """Weighted average of the two modalities' probabilities; weight ``w`` (per genre) on the text model.

    With one modality missing its probabilities get weight 0, so the film keeps the other model's answer.
    """

    def __init__(self, text_weight, **kwargs):
        super().__init__(**kwargs)
        self.text_weight = [float(w) for w in text_weight]

    def call(self, inputs):
        p_t, p_v, has_t, has_v = inputs
        w = ops.convert_to_tensor(self.text_weight, dtype=p_t.dtype)
        w_t = w * has_t
        w_v = (1 - w) * has_v
        return (w_t * p_t + w_v * p_v) / ops.maximum(w_t + w_v, 1e-6)

    def get_config(self):
        return {**super().get_config(), "text_weight": self.text_weight}


def build_late_fusion(text_head: keras.Model, image_head: keras.Model, text_weight) -> keras.Model:
    """Late fusion of two trained single-modality heads (their weights are frozen inside this model)."""
    t, v, has_t, has_v = _inputs(text_head.input_shape[-1], image_head.input_shape[-1])
    text_head.trainable = False
    image_head.trainable = False
    p = LateFusion(text_weight, name="late_fusion")([text_head(t), image_head(v), has_t, has_v])
    return keras.Model([t, v, has_t, has_v], p, name="late")


@keras.saving.register_keras_serializable(package="movie_genres")
class EnsembleMean(layers.Layer):
    """Mean of the fusion models' probabilities and the single-modality heads' (a head whose input is missing is
    replaced by late fusion, which already answers from the modality the film has)."""

    def call(self, inputs):
        p_early, p_gmu, p_late, p_t, p_v, has_t, has_v = inputs
        p_t = has_t * p_t + (1 - has_t) * p_late
        p_v = has_v * p_v + (1 - has_v) * p_late
        return (p_early + p_gmu + p_late + p_t + p_v) / 5.0


def build_ensemble(text_head: keras.Model, image_head: keras.Model, early: keras.Model, gmu: keras.Model, text_weight) -> keras.Model:
    """One model averaging five trained ones: text head, poster head, late fusion of the two, early fusion and GMU."""
    t, v, has_t, has_v = _inputs(text_head.input_shape[-1], image_head.input_shape[-1])
    for m in (text_head, image_head, early, gmu):
        m.trainable = False
    p_t, p_v = text_head(t), image_head(v)
    p_late = LateFusion(text_weight, name="late_fusion")([p_t, p_v, has_t, has_v])
    p = EnsembleMean(name="mean")([early([t, v, has_t, has_v]), gmu([t, v, has_t, has_v]), p_late, p_t, p_v, has_t, has_v])
    return keras.Model([t, v, has_t, has_v], p, name="ensemble")
