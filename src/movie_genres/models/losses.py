"""Multi-label losses on sigmoid probabilities, with a per-genre weight vector.

Keras ``class_weight`` does not work for multi-label targets, so imbalance is handled inside the loss:
``genre_mask`` zeroes genres that are not trained (too few positives) and ``pos_weight`` up-weights positives per genre.
"""
from __future__ import annotations

import keras
from keras import ops

_EPS = 1e-7


@keras.saving.register_keras_serializable(package="movie_genres")
class MultiLabelLoss(keras.losses.Loss):
    """Binary cross-entropy (``kind="bce"``), focal loss (``"focal"``) or asymmetric loss (``"asl"``).

    Args:
        kind: bce | focal | asl.
        pos_weight: per-genre weight on positive terms (list of floats), or None for 1.
        genre_mask: per-genre 0/1 (list), genres with 0 contribute nothing; None trains all.
        gamma: focal exponent (focal) / negative focusing exponent (asl).
        gamma_pos: positive focusing exponent (asl).
        clip: probability margin for negatives (asl), Ridnik et al. 2021.

    Example:
        >>> loss = MultiLabelLoss("bce", genre_mask=[1, 0])
    """

    def __init__(self, kind="bce", pos_weight=None, genre_mask=None, gamma=2.0, gamma_pos=0.0, clip=0.05, name="multilabel_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in ("bce", "focal", "asl"):
            raise ValueError(f"unknown loss '{kind}'; choose bce, focal or asl")
        self.kind = kind
        self.pos_weight = None if pos_weight is None else [float(v) for v in pos_weight]
        self.genre_mask = None if genre_mask is None else [float(v) for v in genre_mask]
        self.gamma, self.gamma_pos, self.clip = float(gamma), float(gamma_pos), float(clip)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, _EPS, 1 - _EPS)
        pos_w = 1.0 if self.pos_weight is None else ops.convert_to_tensor(self.pos_weight, dtype=p.dtype)
        if self.kind == "bce":
            pos_term = -ops.log(p)
            neg_term = -ops.log(1 - p)
        elif self.kind == "focal":
            pos_term = -ops.power(1 - p, self.gamma) * ops.log(p)
            neg_term = -ops.power(p, self.gamma) * ops.log(1 - p)
        else:  # asymmetric loss: harder focusing and a probability margin on the many negatives
            p_neg = ops.maximum(p - self.clip, 0.0)
            pos_term = -ops.power(1 - p, self.gamma_pos) * ops.log(p)
            neg_term = -ops.power(p_neg, self.gamma + 2.0) * ops.log(ops.clip(1 - p_neg, _EPS, 1.0))
        per_genre = y_true * pos_w * pos_term + (1 - y_true) * neg_term
        if self.genre_mask is not None:
            mask = ops.convert_to_tensor(self.genre_mask, dtype=p.dtype)
            return ops.sum(per_genre * mask, axis=-1) / ops.maximum(ops.sum(mask), 1.0)
        return ops.mean(per_genre, axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "kind": self.kind,
            "pos_weight": self.pos_weight,
            "genre_mask": self.genre_mask,
            "gamma": self.gamma,
            "gamma_pos": self.gamma_pos,
            "clip": self.clip,
        }
