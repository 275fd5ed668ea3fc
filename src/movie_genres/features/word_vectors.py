"""Starting word vectors for the BiLSTM's embedding, distilled from the sentence encoder (the Model2Vec recipe).

Each vocabulary word is embedded alone by the frozen text encoder (MiniLM, 384-d), the vectors are reduced to the
embedding width by PCA, and scaled. The BiLSTM keeps its original shape (Embedding(10,000, 256) -> BiLSTM -> dense)
and still trains every weight; it only starts from words that already mean something, which the original could
not learn from 5,000 overviews (docs/BENCHMARKS.md has the comparison). Word vectors are cached like any other text
features, so a second run reads them from disk.
"""
from __future__ import annotations

import numpy as np

PAD, OOV = 0, 1  # ids fixed by OverviewVectorizer


def distilled_embeddings(words: list[str], dim: int, encoder: str = "minilm", cache_dir: str = "", scale: float = 1.0,
                         seed: int = 0, progress: bool = False) -> np.ndarray:
    """An ``(len(words), dim)`` float32 embedding matrix for vocabulary ``words`` (id order; ids 0 and 1 are padding
    and out-of-vocabulary).

    Rows: padding is zero, out-of-vocabulary is the mean word, every other word is its encoder vector projected on the
    top ``dim`` principal components, scaled so the matrix has standard deviation ``scale``. Where the vocabulary or
    the encoder has fewer than ``dim`` components, the remaining columns are small random numbers.
    """
    from sklearn.decomposition import PCA

    from movie_genres.features.encoders import cached_features, get_encoder
    from movie_genres.io import default_cache_dir

    n = len(words)
    out = np.zeros((n, dim), dtype=np.float32)
    real = words[2:]
    if not real:
        return out
    vectors = cached_features(get_encoder(encoder), real, default_cache_dir(cache_dir), progress=progress)
    k = min(dim, vectors.shape[1], len(real))
    reduced = PCA(k, random_state=seed).fit_transform(vectors) if k > 1 else vectors[:, :k] - vectors[:, :k].mean(0)
    std = float(reduced.std()) or 1.0
    out[2:, :k] = reduced / std * scale
    if k < dim:
        out[2:, k:] = np.random.default_rng(seed).normal(0.0, 0.05 * scale, (len(real), dim - k))
    out[OOV] = out[2:].mean(axis=0)
    out[PAD] = 0.0
    return out
