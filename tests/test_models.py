"""Model builders: shapes, parameter counts, named inputs reaching their own branch, .keras save/reload, losses.

Backend-neutral: CI also runs this file under KERAS_BACKEND=jax.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest

from movie_genres.models import heads
from movie_genres.models.bilstm import build_bilstm
from movie_genres.models.cnn import build_cnn
from movie_genres.models.losses import MultiLabelLoss

RNG = np.random.default_rng(0)


def _fusion_inputs(n=4, td=6, vd=5):
    return {
        "text_features": RNG.normal(size=(n, td)).astype("float32"),
        "image_features": RNG.normal(size=(n, vd)).astype("float32"),
        "has_overview": np.ones((n, 1), "float32"),
        "has_poster": np.ones((n, 1), "float32"),
    }


def _late():
    t = heads.build_feature_head("text_features", 6, 25, 8, 0.1, "text")
    v = heads.build_feature_head("image_features", 5, 25, 8, 0.1, "image")
    return heads.build_late_fusion(t, v, [0.7] * 25)


def _ensemble():
    t = heads.build_feature_head("text_features", 6, 25, 8, 0.1, "text")
    v = heads.build_feature_head("image_features", 5, 25, 8, 0.1, "image")
    return heads.build_ensemble(t, v, heads.build_early_fusion(6, 5, 25, 8), heads.build_gmu(6, 5, 25, 8), [0.7] * 25)


def test_cnn_is_the_original_architecture():
    model = build_cnn()
    assert [i.name for i in model.inputs] == ["poster"]
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 25)
    assert abs(model.count_params() - 3.46e6) < 0.02e6
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32, 32, 64, 64, 128, 128] and convs[0].strides == (2, 2)
    assert sum(c.kernel_size == (3, 3) and c.strides == (1, 1) for c in convs) == 6
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [1024, 1024, 25]
    assert model.layers[-1].activation.__name__ == "sigmoid"


def test_cnn_scales_its_pixels_itself_and_older_cnn_runs_load_behind_the_same_scaling(tmp_path):
    from movie_genres.models.cnn import with_input_scaling

    model = build_cnn(image_size=16)
    assert isinstance(model.layers[1], keras.layers.Rescaling) and model.layers[1].scale == pytest.approx(1 / 255)
    pixels = RNG.integers(0, 256, (3, 16, 16, 3)).astype("uint8")
    out = keras.ops.convert_to_numpy(model.predict_on_batch(pixels))
    # a CNN as saved before: the same layers fed pixels / 255 from outside
    old = keras.Model(model.get_layer("stem").input, model.output, name="cnn")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(old.predict_on_batch(pixels.astype("float32") / 255)), out, atol=1e-6)
    old.save(tmp_path / "old.keras")
    upgraded = with_input_scaling(keras.saving.load_model(tmp_path / "old.keras", compile=False))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(upgraded.predict_on_batch(pixels)), out, atol=1e-6)
    assert with_input_scaling(model) is model


def test_bilstm_default_and_original_stack():
    model = build_bilstm(vocab_size=50, sequence_length=10, embedding_dim=8, lstm_units=(4,))
    assert [i.name for i in model.inputs] == ["overview"] and model.output_shape == (None, 25)
    original = build_bilstm()  # defaults: vocabulary 10,000, embedding 256, length 100
    assert original.get_layer("embedding").output_dim == 256 and original.get_layer("embedding").input_dim == 10_000
    stacked = build_bilstm(vocab_size=50, sequence_length=10, embedding_dim=8, lstm_units=(8, 4), recurrent_dropout=0.2)
    assert [layer.name for layer in stacked.layers if isinstance(layer, keras.layers.Bidirectional)] == ["bilstm1", "bilstm2"]
    assert tuple(stacked.get_layer("bilstm1").output.shape) == (None, None, 16)  # the first passes its sequence on
    assert tuple(stacked.get_layer("bilstm2").output.shape) == (None, 8)
    ids = np.array([[3, 4, 5, 0, 0, 0, 0, 0, 0, 0], [9, 8, 7, 6, 5, 4, 0, 0, 0, 0]], "int32")
    out = keras.ops.convert_to_numpy(model(ids))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(ids[1:])), out[1:], atol=1e-6)  # a film's answer is its own
    # 25 independent genre probabilities: the sigmoid of the last layer's logits, one per genre
    hidden = keras.ops.convert_to_numpy(keras.Model(model.inputs, model.get_layer("dense").output)(ids))
    w, b = model.get_layer("genres").get_weights()
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(hidden @ w + b))), atol=1e-5)


def test_bilstm_ignores_padding_so_batches_can_be_trimmed():
    from movie_genres.models.inference import trim_padding

    model = build_bilstm(vocab_size=50, sequence_length=10, embedding_dim=8, lstm_units=(4,), dropout=0.0)
    full = np.array([[3, 4, 5, 0, 0, 0, 0, 0, 0, 0], [7, 8, 9, 10, 11, 0, 0, 0, 0, 0]], "int32")
    trimmed = trim_padding({"overview": full})["overview"]
    assert trimmed.shape == (2, 5) and (trimmed == full[:, :5]).all()
    out_full = keras.ops.convert_to_numpy(model(full))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(trimmed)), out_full, atol=1e-6)
    changed = full.copy()
    changed[0, 2] = 6
    assert not np.allclose(keras.ops.convert_to_numpy(model(changed))[0], out_full[0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(changed))[1], out_full[1], atol=1e-6)


@pytest.mark.parametrize("builder", ["cnn", "bilstm", "text", "early", "gmu", "late", "ensemble"])
def test_save_and_reload_gives_identical_outputs(tmp_path, builder):
    if builder == "cnn":
        model, x = build_cnn(image_size=16), RNG.random((3, 16, 16, 3)).astype("float32")
    elif builder == "bilstm":
        model, x = build_bilstm(vocab_size=30, sequence_length=6, embedding_dim=4, lstm_units=(3,)), RNG.integers(0, 30, (3, 6)).astype("int32")
    elif builder == "text":
        model, x = heads.build_feature_head("text_features", 6, 25, 8), RNG.normal(size=(3, 6)).astype("float32")
    elif builder in ("late", "ensemble"):
        model, x = (_late() if builder == "late" else _ensemble()), _fusion_inputs(3)
    else:
        model = heads.build_early_fusion(6, 5, 25, 8) if builder == "early" else heads.build_gmu(6, 5, 25, 8)
        x = _fusion_inputs(3)
    before = keras.ops.convert_to_numpy(model.predict_on_batch(x))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(loaded.predict_on_batch(x)))


@pytest.mark.parametrize("builder", ["early", "gmu", "late", "ensemble"])
def test_each_fusion_input_reaches_its_own_branch(builder):
    builders = {"early": lambda: heads.build_early_fusion(6, 5, 25, 8), "gmu": lambda: heads.build_gmu(6, 5, 25, 8), "late": _late, "ensemble": _ensemble}
    model = builders[builder]()
    x = _fusion_inputs(2)

    def run(**changes):
        return keras.ops.convert_to_numpy(model.predict_on_batch({**x, **changes}))

    base = run()
    assert not np.allclose(base, run(text_features=x["text_features"] * -3 + 1)), "text features do not reach the output"
    assert not np.allclose(base, run(image_features=x["image_features"] * -3 + 1)), "poster features do not reach the output"
    # With a modality flagged missing, its features must not matter (and the output must stay a valid probability).
    no_text = np.zeros((2, 1), "float32")
    only_poster = run(has_overview=no_text)
    np.testing.assert_allclose(only_poster, run(has_overview=no_text, text_features=x["text_features"] * 5), atol=1e-6)
    assert np.isfinite(only_poster).all() and ((only_poster > 0) & (only_poster < 1)).all()
    no_image = np.zeros((2, 1), "float32")
    np.testing.assert_allclose(run(has_poster=no_image), run(has_poster=no_image, image_features=x["image_features"] * 5), atol=1e-6)


def test_ensemble_is_the_mean_of_its_members():
    t = heads.build_feature_head("text_features", 6, 25, 8, 0.1, "text")
    v = heads.build_feature_head("image_features", 5, 25, 8, 0.1, "image")
    early, gmu = heads.build_early_fusion(6, 5, 25, 8), heads.build_gmu(6, 5, 25, 8)
    late = heads.build_late_fusion(t, v, [0.7] * 25)
    model = heads.build_ensemble(t, v, early, gmu, [0.7] * 25)
    x = _fusion_inputs(3)

    def out(m, inputs):
        return keras.ops.convert_to_numpy(m.predict_on_batch(inputs))

    members = [out(early, x), out(gmu, x), out(late, x), out(t, x["text_features"]), out(v, x["image_features"])]
    np.testing.assert_allclose(out(model, x), np.mean(members, axis=0), atol=1e-6)


def test_losses():
    y = np.array([[1.0, 0.0, 1.0, 0.0]], "float32")
    good = np.array([[0.9, 0.1, 0.8, 0.2]], "float32")
    bad = np.array([[0.1, 0.9, 0.2, 0.8]], "float32")
    bce = MultiLabelLoss("bce")
    ref = keras.losses.BinaryCrossentropy()(y, good)
    np.testing.assert_allclose(float(bce(y, good)), float(ref), rtol=1e-4)
    for kind in ("bce", "focal", "asl"):
        loss = MultiLabelLoss(kind)
        assert float(loss(y, good)) < float(loss(y, bad))
    masked = MultiLabelLoss("bce", genre_mask=[1, 1, 0, 0])
    np.testing.assert_allclose(float(masked(y, good)), float(masked(y, np.array([[0.9, 0.1, 0.01, 0.99]], "float32"))), rtol=1e-5)
    weighted = MultiLabelLoss("bce", pos_weight=[3, 3, 3, 3])
    assert float(weighted(y, good)) > float(bce(y, good))
    clone = MultiLabelLoss.from_config(weighted.get_config())
    assert clone.pos_weight == [3.0] * 4
    with pytest.raises(ValueError, match="unknown loss"):
        MultiLabelLoss("hinge")


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the traced single-film graph is a torch-backend path")
@pytest.mark.parametrize("builder", ["cnn", "gmu", "ensemble", "bilstm"])
def test_single_film_graph_gives_the_models_own_outputs(builder):
    from movie_genres.predictor import _trace_single_film

    if builder == "bilstm":  # sequence length varies per film: a traced loop would not, so no graph
        assert _trace_single_film(build_bilstm(vocab_size=50, sequence_length=10, embedding_dim=8, lstm_units=(4,))) is None
        return
    model = {"cnn": build_cnn, "gmu": lambda: heads.build_gmu(6, 5, 25, 8), "ensemble": _ensemble}[builder]()
    run = _trace_single_film(model)
    assert run is not None
    for _ in range(3):
        x = {"poster": RNG.random((1, 64, 64, 3), dtype=np.float32)} if builder == "cnn" else _fusion_inputs(1)
        if builder != "cnn":
            x["has_poster"][:] = RNG.integers(0, 2)  # missing-modality films take the same graph
        expected = np.asarray(model.predict_on_batch(x if builder != "cnn" else x["poster"]))
        np.testing.assert_allclose(run(x), expected, atol=1e-6)


def _padded_tokens(lengths, steps, vocab=50, seed=0):
    """Right-padded token ids: row i has ``lengths[i]`` non-zero tokens, then zeros."""
    rng = np.random.default_rng(seed)
    x = np.zeros((len(lengths), steps), "int32")
    for i, n in enumerate(lengths):
        x[i, :n] = rng.integers(1, vocab, n)
    return x


def _keras_lstm_bilstm(monkeypatch, **kwargs):
    """``build_bilstm`` as it was before the packed LSTM: plain ``keras.layers.LSTM`` (Keras' own masked loop)."""
    import movie_genres.models.bilstm as bilstm

    with monkeypatch.context() as m:
        m.setattr(bilstm, "LSTM", keras.layers.LSTM)
        model = build_bilstm(**kwargs)
    bidirectional = [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert all(type(layer.forward_layer) is keras.layers.LSTM for layer in bidirectional)
    return model


def _with_random_weights(model, seed=0):
    """Weights large enough that the LSTM states, and so any mismatch, are far from zero."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _packed_calls(monkeypatch):
    """Record, per LSTM call that tries the packed path, whether it took it (False: it fell back to Keras)."""
    from movie_genres.models import lstm

    calls, packed = [], lstm._packed_last_output

    def spy(*args):
        out = packed(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(lstm, "_packed_last_output", spy)
    return calls


BILSTM_SMALL = dict(vocab_size=50, sequence_length=10, embedding_dim=8, lstm_units=(4,), dropout=0.0)
# An all-padding row, a full row, and lengths in between (two rows share a length, as in real batches).
LENGTHS = [0, 1, 3, 7, 10, 10, 5, 2]


def test_packed_lstm_gives_keras_outputs_and_gradients(monkeypatch):
    fast = _with_random_weights(build_bilstm(**BILSTM_SMALL))
    reference = _keras_lstm_bilstm(monkeypatch, **BILSTM_SMALL)
    reference.set_weights(fast.get_weights())
    x = _padded_tokens(LENGTHS, 10)
    calls = _packed_calls(monkeypatch)
    out = keras.ops.convert_to_numpy(fast.predict_on_batch(x))
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(reference.predict_on_batch(x)), atol=1e-5)
    # The LSTM outputs themselves, both directions; a row of padding only gives zeros, as in Keras.
    fast_lstm = keras.Model(fast.input, fast.get_layer("bilstm1").output)
    ref_lstm = keras.Model(reference.input, reference.get_layer("bilstm1").output)
    h = keras.ops.convert_to_numpy(fast_lstm(x))
    np.testing.assert_allclose(h, keras.ops.convert_to_numpy(ref_lstm(x)), atol=1e-5)
    assert (h[0] == 0).all() and (np.abs(h[1:]) > 1e-3).any(axis=1).all()
    if keras.backend.backend() == "torch":
        assert calls == [True, True, True, True]  # forward and backward LSTM, in both models above
    # One SGD step at learning rate 1 moves each weight by its gradient: equal weights after it = equal gradients.
    y = (np.random.default_rng(1).random((len(LENGTHS), 25)) < 0.3).astype("float32")
    before = fast.get_weights()
    for model in (fast, reference):
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="binary_crossentropy")
        model.train_on_batch(x, y)
    for w, w_ref, w0, v in zip(fast.get_weights(), reference.get_weights(), before, fast.weights):
        np.testing.assert_allclose(w, w_ref, atol=1e-5, err_msg=v.path)
        if "lstm" in v.path:  # both directions' kernels, recurrent kernels and biases got a gradient
            assert np.abs(w - w0).max() > 1e-4, v.path


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the packed LSTM path is torch-only")
def test_packed_lstm_is_taken_only_where_it_applies(monkeypatch):
    calls = _packed_calls(monkeypatch)
    # Original stack: the first BiLSTM returns sequences (Keras' loop), the second takes the packed path.
    kwargs = dict(BILSTM_SMALL, lstm_units=(6, 4))
    stacked = _with_random_weights(build_bilstm(**kwargs))
    reference = _keras_lstm_bilstm(monkeypatch, **kwargs)
    reference.set_weights(stacked.get_weights())
    x = _padded_tokens(LENGTHS, 10)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stacked(x)), keras.ops.convert_to_numpy(reference(x)), atol=1e-5)
    assert calls == [True, True]
    # Padding in the middle of a row: not right-padded, so the whole batch runs Keras' loop (which skips that step).
    calls.clear()
    model = _with_random_weights(build_bilstm(**BILSTM_SMALL))
    reference = _keras_lstm_bilstm(monkeypatch, **BILSTM_SMALL)
    reference.set_weights(model.get_weights())
    holes = x.copy()
    holes[4, 2] = 0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(holes)), keras.ops.convert_to_numpy(reference(holes)), atol=1e-5)
    assert calls == [False, False]
    # Layers that return sequences or states never try it.
    from movie_genres.models.lstm import LSTM

    seq = keras.ops.convert_to_tensor(np.random.default_rng(2).normal(size=(3, 5, 4)).astype("float32"))
    LSTM(3, return_sequences=True)(seq)
    LSTM(3, return_state=True)(seq)
    assert calls == [False, False]
    # With no mask at all every row has the full length.
    layer, plain = LSTM(3, go_backwards=True), keras.layers.LSTM(3, go_backwards=True)
    out = keras.ops.convert_to_numpy(layer(seq))
    plain.build(seq.shape)
    plain.set_weights(layer.get_weights())
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(plain(seq)), atol=1e-5)
    assert calls == [False, False, True]


def test_bilstm_save_and_load_keeps_the_packed_lstm_and_loads_keras_lstm_models(tmp_path, monkeypatch):
    from movie_genres.models.lstm import LSTM

    model = _with_random_weights(build_bilstm(**BILSTM_SMALL))
    x = _padded_tokens(LENGTHS, 10)
    expected = keras.ops.convert_to_numpy(model.predict_on_batch(x))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.get_layer("bilstm1").forward_layer) is LSTM and type(loaded.get_layer("bilstm1").backward_layer) is LSTM
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.predict_on_batch(x)), expected, atol=1e-6)
    # A model saved before, with keras.layers.LSTM, still loads and gives the same predictions.
    old = _keras_lstm_bilstm(monkeypatch, **BILSTM_SMALL)
    old.set_weights(model.get_weights())
    old.save(tmp_path / "old.keras")
    old_loaded = keras.saving.load_model(tmp_path / "old.keras")
    assert type(old_loaded.get_layer("bilstm1").forward_layer) is keras.layers.LSTM
    np.testing.assert_allclose(keras.ops.convert_to_numpy(old_loaded.predict_on_batch(x)), expected, atol=1e-5)
