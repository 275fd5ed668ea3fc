"""Overview vectorizer on the ``tokenizers`` library, standing in for Keras ``TextVectorization`` (which needs
TensorFlow): lowercase, strip punctuation, word-level vocabulary learned on the training split only, pad/truncate to a
fixed length. Id 0 is padding and id 1 the out-of-vocabulary token, as in ``TextVectorization``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from movie_genres.io import write_text

PAD, UNK = "[PAD]", "[UNK]"


class OverviewVectorizer:
    """Word-level tokenizer with a learned vocabulary.

    Example:
        >>> v = OverviewVectorizer(vocab_size=10, sequence_length=4).fit(["A cat.", "a dog!"])
        >>> v.transform(["a cat", "zebra"]).tolist()
        [[2, 3, 0, 0], [1, 0, 0, 0]]
    """

    def __init__(self, vocab_size: int = 10_000, sequence_length: int = 100):
        self.vocab_size = vocab_size
        self.sequence_length = sequence_length
        self.tokenizer_: Tokenizer | None = None

    def _new_tokenizer(self) -> Tokenizer:
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s]"), " ")]
        )
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return tok

    def fit(self, texts: list[str]) -> "OverviewVectorizer":
        tok = self._new_tokenizer()
        trainer = trainers.WordLevelTrainer(vocab_size=self.vocab_size, special_tokens=[PAD, UNK], show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        self._configure(tok)
        return self

    def _configure(self, tok: Tokenizer) -> None:
        tok.enable_truncation(self.sequence_length)
        tok.enable_padding(length=self.sequence_length, pad_id=0, pad_token=PAD)
        self.tokenizer_ = tok

    def transform(self, texts: list[str]) -> np.ndarray:
        if self.tokenizer_ is None:
            raise RuntimeError("OverviewVectorizer is not fitted")
        encodings = self.tokenizer_.encode_batch([t or "" for t in texts])
        return np.array([e.ids for e in encodings], dtype=np.int32).reshape(len(texts), self.sequence_length)

    @property
    def vocabulary_size(self) -> int:
        return self.tokenizer_.get_vocab_size() if self.tokenizer_ else 0

    def words(self, n: int | None = None) -> list[str]:
        """The vocabulary in id order (``[PAD]``, ``[UNK]``, then the most frequent words), padded to ``n`` entries
        with ``[UNK]`` where the model's embedding is larger than the learned vocabulary."""
        if self.tokenizer_ is None:
            raise RuntimeError("OverviewVectorizer is not fitted")
        size = self.vocabulary_size
        n = size if n is None else n
        return [self.tokenizer_.id_to_token(i) if i < size else UNK for i in range(n)]

    def save(self, path: str | Path) -> Path:
        return write_text(path, self.tokenizer_.to_str())

    @classmethod
    def load(cls, path: str | Path, sequence_length: int = 100) -> "OverviewVectorizer":
        tok = Tokenizer.from_str(Path(path).read_text(encoding="utf-8"))
        self = cls(vocab_size=tok.get_vocab_size(), sequence_length=sequence_length)
        self._configure(tok)
        return self
