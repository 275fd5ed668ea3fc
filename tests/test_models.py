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
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32, 32, 64, 64, 128, 128] and convs[0].strides == (2, 2)
    assert sum(c.kernel_size == (3, 3) and c.strides == (1, 1) for c in convs) == 6
    assert [l.units for l in model.layers if isinstance(l, keras.layers.Dense)] == [1024, 1024, 25]
    assert model.layers[-1].activation.__name__ == "sigmoid"


def test_bilstm_default_and_original_stack():
    model = build_bilstm(vocab_size=50, sequence_length=10, embedding_dim=8, lstm_units=(4,))
    assert [i.name for i in model.inputs] == ["overview"] and model.output_shape == (None, 25)
    original = build_bilstm()  # defaults: vocabulary 10,000, embedding 256, length 100
    assert original.get_layer("embedding").output_dim == 256 and original.get_layer("embedding").input_dim == 10_000
    stacked = build_bilstm(vocab_size=50, sequence_length=10, embedding_dim=8, lstm_units=(8, 4), recurrent_dropout=0.2)
    assert [l.name for l in stacked.layers if isinstance(l, keras.layers.Bidirectional)] == ["bilstm1", "bilstm2"]
    ids = np.array([[3, 4, 5, 0, 0, 0, 0, 0, 0, 0]], "int32")
    out = keras.ops.convert_to_numpy(model(ids))
    assert out.shape == (1, 25) and ((out > 0) & (out < 1)).all()


def test_bilstm_ignores_padding_so_batches_can_be_trimmed():
    from movie_genres.training.batches import trim_padding

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
    model = {"early": lambda: heads.build_early_fusion(6, 5, 25, 8), "gmu": lambda: heads.build_gmu(6, 5, 25, 8), "late": _late, "ensemble": _ensemble}[builder]()
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
