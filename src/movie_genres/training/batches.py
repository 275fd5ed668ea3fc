"""Training batches: oversampling of films with rare genres, poster augmentation, modality dropout.

Everything random is drawn from ``numpy.random.default_rng((seed, epoch))`` so an epoch is the same whether the run
went straight through or was resumed.
"""
from __future__ import annotations

import math

import keras
import numpy as np

from movie_genres.models.inference import trim_padding


def oversample_index(labels: np.ndarray, trained: np.ndarray, max_copies: int = 4) -> np.ndarray:
    """Repeat each training film ``ceil(median genre count / count of its rarest genre)`` times, capped.

    Example:
        >>> oversample_index(np.array([[1, 0], [1, 0], [1, 0], [1, 1]]), np.array([True, True]), 4).tolist()
        [0, 1, 2, 3, 3, 3]
    """
    counts = labels[:, trained].sum(axis=0)
    target = float(np.median(counts[counts > 0])) if (counts > 0).any() else 1.0
    copies = np.ones(len(labels), dtype=int)
    for i, row in enumerate(labels[:, trained]):
        present = counts[row > 0]
        if len(present):
            copies[i] = int(np.clip(math.ceil(target / present.min()), 1, max_copies))
    return np.repeat(np.arange(len(labels)), copies)


def augment_posters(images: np.ndarray, rng: np.random.Generator, rotation: float = 0.05 * 360, zoom: float = 0.1,
                    shift: float = 0.05, brightness: float = 0.1, contrast: float = 0.1) -> np.ndarray:
    """Horizontal flip, small rotation/zoom/translation (one affine map, nearest fill), brightness and contrast.

    The same transforms as Keras' RandomFlip/RandomRotation/RandomZoom/RandomTranslation/RandomBrightness/
    RandomContrast, applied with scipy in one pass per image: measured ~30x faster than chaining the Keras layers on the
    torch backend, and drawn from ``rng`` so a resumed run augments exactly like a straight one.
    Images are pixels in 0..255 (uint8 or float), shape (n, h, w, 3); the result is float32 in 0..255 (the model
    scales its input itself). ``brightness`` is a fraction of the full range.

    Example:
        >>> augment_posters(np.zeros((2, 8, 8, 3), np.uint8), np.random.default_rng(0)).dtype
        dtype('float32')
    """
    from scipy.ndimage import affine_transform

    out = np.empty(images.shape, dtype=np.float32)
    n, h, w, _ = images.shape
    centre = np.array([h / 2, w / 2])
    for i in range(n):
        img = images[i].astype(np.float32)
        img = img[:, ::-1] if rng.random() < 0.5 else img
        angle = np.deg2rad(rng.uniform(-rotation, rotation))
        scale = 1.0 + rng.uniform(-zoom, zoom)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
        offset_px = rng.uniform(-shift, shift, size=2) * np.array([h, w])
        offset = centre - rot @ centre + offset_px
        for c in range(3):
            out[i, :, :, c] = affine_transform(img[:, :, c], rot, offset=offset, order=1, mode="nearest")
        mean = out[i].mean()
        out[i] = (out[i] - mean) * (1.0 + rng.uniform(-contrast, contrast)) + mean + 255.0 * rng.uniform(-brightness, brightness)
    return np.clip(out, 0.0, 255.0)


class TrainBatches(keras.utils.PyDataset):
    """Shuffled, oversampled, augmented batches of named inputs for ``model.fit``.

    ``input_names`` selects (and orders) the inputs the model reads; a single-input model gets the bare array.
    """

    def __init__(self, inputs: dict, labels: np.ndarray, batch_size: int, seed: int, index: np.ndarray | None = None,
                 augment: bool = False, modality_dropout: float = 0.0, epoch: int = 0, input_names: list[str] | None = None):
        super().__init__()
        self.input_names = input_names
        self.inputs, self.labels, self.batch_size, self.seed = inputs, labels, batch_size, seed
        self.base_index = np.arange(len(labels)) if index is None else index
        self.augment, self.modality_dropout = augment, modality_dropout
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        rng = np.random.default_rng((self.seed, epoch))
        self.order = rng.permutation(self.base_index)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, i: int):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        x = {k: v[idx] for k, v in self.inputs.items()}
        rng = np.random.default_rng((self.seed, self.epoch, i))
        if self.augment and "poster" in x:
            x["poster"] = augment_posters(x["poster"], rng)
        if self.modality_dropout > 0 and "has_overview" in x and "has_poster" in x:
            x = self._drop_modality(x, rng)
        x = trim_padding(x)
        x = {k: x[k] for k in self.input_names} if self.input_names else x
        return (x[self.input_names[0]] if len(x) == 1 else x), self.labels[idx]

    def _drop_modality(self, x: dict, rng) -> dict:
        # Hide one modality of some films that have both, so fusion learns to answer from either alone.
        both = (x["has_overview"][:, 0] > 0) & (x["has_poster"][:, 0] > 0)
        drop = both & (rng.random(len(both)) < self.modality_dropout)
        which = rng.random(len(both)) < 0.5
        x = dict(x)
        for flag, feat, sel in (("has_overview", "text_features", drop & which), ("has_poster", "image_features", drop & ~which)):
            if sel.any():
                x[flag] = x[flag].copy()
                x[feat] = x[feat].copy()
                x[flag][sel] = 0.0
                x[feat][sel] = 0.0
        return x


class EpochSetter(keras.callbacks.Callback):
    """Tell the batches which epoch begins, so shuffling and augmentation depend on the epoch number alone (a
    resumed run then sees exactly the batches a straight run would)."""

    def __init__(self, batches: TrainBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)
