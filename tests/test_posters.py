"""One poster decoder for training and serving: the same poster as a file, as bytes and as a PIL image gives identical
model inputs for every featurizer (and identical probabilities from trained models); decompression bombs are counted
skips; encoder versions are checked when a run loads; write_cache=False writes nothing under the cache dir."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import synthetic_rows, write_dataset
from movie_genres.features import inputs
from movie_genres.features.encoders import get_encoder
from movie_genres.features.inputs import FeaturizerError, PosterPixels, PretrainedFeatures, load_featurizer
from movie_genres.features.posters import PosterError, decode_posters, open_poster

IMAGE_ENCODERS = ("effnet-lite0", "nsfw-resnet50")


def _pixels(seed: int, size=(150, 300)) -> np.ndarray:
    """Noisy, structured pixels: downscaling them depends on how the JPEG is decoded."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    arr[: size[1] // 3] //= 2 + seed % 3
    arr[:, : size[0] // 4, seed % 3] = 255
    return arr


def _encode(img: Image.Image, fmt: str = "JPEG", orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    img.save(buf, fmt, quality=90, **kw) if fmt == "JPEG" else img.save(buf, fmt, **kw)
    return buf.getvalue()


def poster_files(root: Path) -> dict[str, Path]:
    """A plain JPEG, a JPEG stored on its side with an EXIF 'rotate 90' tag, a greyscale PNG and a CMYK JPEG."""
    root.mkdir(parents=True, exist_ok=True)
    plain = Image.fromarray(_pixels(0))
    sideways = Image.fromarray(_pixels(1)).transpose(Image.Transpose.ROTATE_90)  # 300x150 on disk
    files = {
        "jpeg": _encode(plain),
        "exif-rotated": _encode(sideways, orientation=6),  # viewers turn it back upright: 150x300
        "grey-png": _encode(Image.fromarray(_pixels(2)).convert("L"), "PNG"),
        "cmyk": _encode(Image.fromarray(_pixels(3)).convert("CMYK")),
    }
    out = {}
    for name, data in files.items():
        out[name] = root / f"{name}.jpg"
        out[name].write_bytes(data)
    return out


def forms(path: Path) -> dict:
    """One poster as every caller hands it over: training (a path), the service (upload bytes, or the image its
    decoder returns), the Python API (an image a user opened)."""
    opened = Image.open(path)
    loaded = Image.open(path)
    loaded.load()
    return {"path": path, "str": str(path), "bytes": path.read_bytes(), "PIL opened": opened, "PIL loaded": loaded,
            "PIL upright (service)": ImageOps.exif_transpose(Image.open(path)), "decoded": open_poster(path.read_bytes())}


@pytest.fixture(scope="module")
def posters(tmp_path_factory) -> dict[str, Path]:
    return poster_files(tmp_path_factory.mktemp("posters"))


# ------------------------------------------------------------------------------------------------------ open_poster
@pytest.mark.parametrize("kind", ["jpeg", "exif-rotated", "grey-png", "cmyk"])
def test_open_poster_gives_the_same_pixels_for_path_bytes_and_image(posters, kind):
    for size in (None, 64):
        arrays = {name: np.asarray(open_poster(src, size)) for name, src in forms(posters[kind]).items()}
        first = arrays["path"]
        assert first.dtype == np.uint8 and first.shape == ((300, 150, 3) if size is None else (64, 64, 3))
        for name, arr in arrays.items():
            np.testing.assert_array_equal(arr, first, err_msg=f"{kind} as {name}, size {size}")
    once = open_poster(posters[kind])
    np.testing.assert_array_equal(np.asarray(open_poster(once)), np.asarray(once))  # decoding again changes nothing


def test_exif_orientation_is_applied(posters):
    upright = open_poster(posters["exif-rotated"])
    assert upright.size == (150, 300)
    stored = Image.open(posters["exif-rotated"]).convert("RGB")
    assert stored.size == (300, 150)
    np.testing.assert_array_equal(np.asarray(upright), np.asarray(stored.transpose(Image.Transpose.ROTATE_270)))


def test_formats_and_pixel_limit_can_be_narrowed(posters):
    png = posters["grey-png"].read_bytes()
    with pytest.raises(PosterError) as exc:
        open_poster(png, formats=("JPEG",))
    assert exc.value.reason == "poster not an image"
    with pytest.raises(PosterError) as exc:
        open_poster(Image.open(posters["jpeg"]), max_pixels=150 * 300 - 1)
    assert exc.value.reason == "poster too large"


def test_feature_cache_keys_of_poster_files(posters):
    """A file's key is its bytes' hash (so caches written before stay valid), tagged where EXIF turns the poster
    (features cached from its sideways decode are not reused); bytes and path give the same key."""
    from movie_genres.features.encoders import content_key

    for kind, path in posters.items():
        data = path.read_bytes()
        assert content_key(path) == content_key(str(path), "poster") == content_key(data)
        assert (content_key(path) == hashlib.sha256(data).hexdigest()) is (kind != "exif-rotated")


# ------------------------------------------------------------------------------------------------ featurizer parity
def _same_inputs(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{what}: input {k}")


@pytest.mark.parametrize("featurizer", ["pixels", "pretrained few", "pretrained many"])
def test_every_featurizer_gets_identical_inputs_from_path_bytes_and_image(posters, tmp_path, monkeypatch, featurizer):
    if featurizer == "pixels":
        feats = PosterPixels(64, cache_dir=str(tmp_path), workers=1)
    else:
        feats = PretrainedFeatures(None, IMAGE_ENCODERS, cache_dir=str(tmp_path), workers=1)
        if featurizer == "pretrained many":
            monkeypatch.setattr(PretrainedFeatures, "CACHE_FROM", 1)  # the training path: cached by content
    kinds = list(posters)
    by_form: dict[str, dict] = {}
    for form in forms(posters[kinds[0]]):
        films = [forms(posters[k])[form] for k in kinds]
        got, ok, problems = feats.transform(films, [None] * len(films), progress=False)
        assert ok.all() and not problems.counts(), (form, problems)
        by_form[form] = got
    for form, got in by_form.items():
        _same_inputs(got, by_form["path"], f"{featurizer}, posters as {form}")


def test_a_tiny_trained_model_gives_identical_probabilities_for_every_form(tmp_path, tiny_config, posters):
    from movie_genres import train
    from movie_genres.predictor import Predictor

    rows = synthetic_rows(40, seed=2)
    data = write_dataset(tmp_path / "data", rows, posters={rows[0]["Id"]: posters["exif-rotated"].read_bytes()},
                         size=(150, 300))
    for model in ("cnn", "image"):
        run = train(model, data, tmp_path / model, cache_dir=str(tmp_path / "cache"),
                    **{**tiny_config, "image_encoders": ["effnet-lite0"]})
        pred = Predictor.load(run)
        for kind in ("jpeg", "exif-rotated"):
            probs = {form: pred.predict_proba([src], [None]) for form, src in forms(posters[kind]).items()}
            assert np.isfinite(probs["path"]).all()
            for form, p in probs.items():
                np.testing.assert_array_equal(p, probs["path"], err_msg=f"{model}: {kind} poster as {form}")


# ------------------------------------------------------------------------------------------------ decompression bombs
def _bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A small JPEG whose header claims width x height pixels (Image.open itself refuses it)."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), (9, 9, 9))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, at Image.open over 1x its limit
def test_a_decompression_bomb_is_a_counted_skip_everywhere(tmp_path, posters, monkeypatch):
    bomb_file = tmp_path / "bomb.jpg"
    bomb_file.write_bytes(_bomb())
    with pytest.raises(Image.DecompressionBombError):  # what Pillow does with it
        Image.open(bomb_file)
    for src in (bomb_file, str(bomb_file), _bomb(), _bomb(10000, 10000)):  # over 2x / over 1x Pillow's limit
        with pytest.raises(PosterError) as exc:
            open_poster(src, 64)
        assert exc.value.reason == "poster too large"

    good = posters["jpeg"]
    _, ok, problems, _ = decode_posters([bomb_file, good], 64, tmp_path / "cache", workers=1, progress=False)
    assert ok.tolist() == [False, True] and problems == ["poster too large", None]

    films = [bomb_file, _bomb(), good, Image.open(good)]
    _, ok, problems = PosterPixels(64, cache_dir=str(tmp_path / "cache"), workers=1).transform(films, [None] * 4, progress=False)
    assert ok.tolist() == [False, False, True, True] and problems.counts() == {"poster too large": 2}
    feats = PretrainedFeatures("minilm", ("effnet-lite0",), cache_dir=str(tmp_path / "cache"), workers=1)
    for cache_from in (32, 1):  # a request's few films, the training path
        monkeypatch.setattr(PretrainedFeatures, "CACHE_FROM", cache_from)
        got, ok, problems = feats.transform(films, ["A film.", "", "", "A film."], progress=False)
        assert ok.tolist() == [True, False, True, True] and problems.counts() == {"poster too large": 2, "empty overview": 2}
        assert got["has_poster"][:, 0].tolist() == [0, 0, 1, 1] and not got["image_features"][:2].any()

    for src in (bomb_file, _bomb()):  # an encoder handed a bomb says so; it is never Pillow's raw error
        with pytest.raises(PosterError) as exc:
            get_encoder("effnet-lite0").encode([src])
        assert exc.value.reason == "poster too large"


def test_a_poster_path_that_does_not_exist_is_counted(tmp_path, posters):
    _, ok, problems = PosterPixels(64, cache_dir=str(tmp_path), workers=1).transform(
        [str(tmp_path / "gone.jpg"), posters["jpeg"]], [None, None], progress=False)
    assert ok.tolist() == [False, True] and problems.per_film == [{"poster": "poster missing"}, {}]


# ------------------------------------------------------------------------------------------------ encoder versions
def _pretrained_run(run: Path) -> Path:
    run.mkdir(parents=True)
    PretrainedFeatures("minilm", ("effnet-lite0",)).save(run)
    return run


def _edit(run: Path, change) -> None:
    spec = json.loads((run / "featurizer.json").read_text())
    change(spec)
    (run / "featurizer.json").write_text(json.dumps(spec))


def test_encoder_versions_are_checked_when_a_run_loads(tmp_path):
    run = _pretrained_run(tmp_path / "run")
    loaded = load_featurizer(run)
    assert loaded.encoders == ["minilm", "effnet-lite0"] and loaded.write_cache
    installed = get_encoder("effnet-lite0").version

    _edit(run, lambda s: s["versions"].update({"effnet-lite0": "0.9-old-weights"}))
    with pytest.raises(FeaturizerError, match="effnet-lite0") as exc:
        load_featurizer(run)
    assert "0.9-old-weights" in str(exc.value) and installed in str(exc.value)

    _edit(run, lambda s: s["versions"].pop("effnet-lite0"))
    with pytest.raises(FeaturizerError, match="no version recorded for encoder 'effnet-lite0'"):
        load_featurizer(run)

    _edit(run, lambda s: s.update(image_encoders=["clip-vit-huge"], versions={**s["versions"], "clip-vit-huge": "1"}))
    with pytest.raises(FeaturizerError, match="clip-vit-huge.*not installed.*effnet-lite0"):
        load_featurizer(run)

    _edit(run, lambda s: s.update(kind="mystery"))
    with pytest.raises(FeaturizerError, match="unknown featurizer kind 'mystery'"):
        load_featurizer(run)


# ------------------------------------------------------------------------------------------------ write_cache
def _tree(root: Path) -> dict[str, tuple]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()} | {str(p.relative_to(root)) + "/": () for p in root.rglob("*") if p.is_dir()}


def test_write_cache_off_writes_nothing_under_the_cache_dir(tmp_path):
    # 34 films: past CACHE_FROM, so these go through the feature cache (a service batch of 32+ films did write it).
    rows = synthetic_rows(68, seed=3)
    data = write_dataset(tmp_path / "data", rows)
    paths = sorted((data / "Images").glob("*.jpg"))
    old, new = (paths[:34], [r["Overview"] for r in rows[:34]]), (paths[34:], [r["Overview"] for r in rows[34:]])
    assert len(old[0]) >= PretrainedFeatures.CACHE_FROM
    cache = tmp_path / "cache"

    def featurizers(write: bool):
        made = [PosterPixels(64, cache_dir=str(cache), workers=1),
                PretrainedFeatures("minilm", ("effnet-lite0",), cache_dir=str(cache), workers=1)]
        for f in made:
            f.write_cache = write
        return made

    for f in featurizers(write=False):  # an empty cache dir stays empty
        f.transform(*old, progress=False)
    assert _tree(cache) == {}

    training = [f.transform(*old, progress=False)[0] for f in featurizers(write=True)]
    before = _tree(cache)
    assert any(k.startswith("posters/") for k in before) and sum(k.startswith("features/") for k in before) >= 2

    for f, expected in zip(featurizers(write=False), training):
        _same_inputs(f.transform(*old, progress=False)[0], expected, type(f).__name__)  # the cache is still read
        mixed = ([*old[0][:10], *new[0]], [*old[1][:10], *new[1]])  # known and new films, new content
        f.transform(*mixed, progress=False)
    assert _tree(cache) == before

    for f in featurizers(write=True):  # the same calls with writing on do add the new films
        f.transform(*new, progress=False)
    assert _tree(cache) != before


def test_featurizers_write_cache_is_on_by_default_and_not_saved(tmp_path):
    for f in (PosterPixels(64), PretrainedFeatures("minilm", ())):
        assert f.write_cache is True
        f.write_cache = False
        run = tmp_path / type(f).__name__
        run.mkdir()
        f.save(run)
        assert "write_cache" not in (run / "featurizer.json").read_text()
        assert load_featurizer(run).write_cache is True
    assert inputs.PretrainedFeatures.CACHE_FROM == 32
