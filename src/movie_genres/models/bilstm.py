"""The original overview model: Embedding(10,000, 256, masked padding) -> bidirectional LSTM -> dense -> 25 sigmoids.

The original notebook stacks BiLSTM(256) and BiLSTM(128) with recurrent dropout; ``lstm_units=(256, 128)`` and
``recurrent_dropout=0.2`` rebuild it. The default is one BiLSTM(128), about 5x faster per epoch (docs/BENCHMARKS.md).
Its LSTMs are :class:`movie_genres.models.lstm.LSTM`, which runs torch's packed-sequence kernel where it can.
"""
from __future__ import annotations

import keras
from keras import layers

from movie_genres.models.lstm import LSTM


def build_bilstm(
    num_genres: int = 25,
    vocab_size: int = 10_000,
    sequence_length: int = 100,
    embedding_dim: int = 256,
    lstm_units: tuple[int, ...] = (128,),
    recurrent_dropout: float = 0.0,
    dense_units: int = 128,
    dropout: float = 0.5,
) -> keras.Model:
    """Build the overview BiLSTM (uncompiled). Input ``overview``: int token ids, 0 = padding."""
    # Any length is accepted: the vectorizer pads to ``sequence_length`` and batches may be cut at their longest
    # overview (training.batches.trim_padding); masking makes the outputs identical either way.
    overview = keras.Input((None,), dtype="int32", name="overview")
    x = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(overview)
    for i, units in enumerate(lstm_units):
        last = i == len(lstm_units) - 1
        lstm = LSTM(units, return_sequences=not last, recurrent_dropout=recurrent_dropout, name=f"lstm{i + 1}")
        x = layers.Bidirectional(lstm, name=f"bilstm{i + 1}")(x)
    x = layers.Dropout(dropout, name="lstm_dropout")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dense_dropout")(x)
    genres = layers.Dense(num_genres, activation="sigmoid", name="genres")(x)
    return keras.Model(overview, genres, name="bilstm")
