"""HTTP layer of the service, with a FakePredictor (no trained model): every endpoint and every bad input.

After each refused request the service must still answer /health.
"""
from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from movie_genres.features import posters
from movie_genres.features.posters import PosterError
from movie_genres.service.app import create_app
from movie_genres.service.limits import MIB, Limits
from movie_genres.service.routes import decode_poster
from serve_helpers import GENRES, ROOT, FakePredictor, image_bytes, multipart_body, png_header_only, running_server, wait_ready

OVERVIEW = "A retired hitman is pulled back into the underworld when his old crew kidnaps his daughter."


@pytest.fixture
def predictor() -> FakePredictor:
    return FakePredictor()


@contextlib.contextmanager
def started(app, raise_server_exceptions: bool = True) -> Iterator[TestClient]:
    """A TestClient of ``app`` once its warm-up is done; the FakePredictor then forgets the warm-up film."""
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as c:
        wait_ready(c.get)
        if hasattr(app.state.predictor, "reset"):
            app.state.predictor.reset()
        yield c


@pytest.fixture
def client(predictor: FakePredictor) -> TestClient:
    with started(create_app(predictor), raise_server_exceptions=False) as c:
        yield c


def alive(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text


def post(client: TestClient, *parts, path: str = "/predict") -> httpx.Response:
    body, headers = multipart_body(*parts)
    return client.post(path, content=body, headers=headers)


def poster_part(data: bytes, name: str = "poster", filename: str = "poster.jpg", ctype: str = "image/jpeg"):
    return (name, data, filename, ctype)


def overview_part(text: str | bytes, name: str = "overview"):
    return (name, text, None, None)


def refused(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail
    for word in words:
        assert word.lower() in detail.lower(), detail


# ---------------------------------------------------------------------------------------------------- information


def test_health(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model"] == "fake" and body["version"] == "0.0-test"
    assert body["modalities"] == ["poster", "overview"] and body["genres"] == 25
    assert body["limits"]["max_upload_bytes"] == 10 * 1024 * 1024 and body["limits"]["max_overview_chars"] == 5000


def test_genres(client: TestClient) -> None:
    r = client.get("/genres")
    assert r.status_code == 200 and r.json() == {"genres": GENRES}


def test_openapi_documents_both_predict_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/explain", "/health", "/genres"} <= set(spec["paths"])
    explain_form = spec["paths"]["/explain"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"poster", "overview", "genre"} <= set(explain_form["properties"])
    batch = spec["paths"]["/predict/batch"]["post"]
    assert "poster_<i>" in batch["description"] and "overview_<i>" in batch["description"]
    form = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["poster"]["format"] == "binary"
    assert {"413", "415", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])


def test_pages_are_local_only(client: TestClient) -> None:
    for path in ("/", "/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
    page = client.get("/").text
    for element_id in ("poster-input", "poster-preview", "overview-input", "predict-btn", "bars", "inputs-used",
                       "decided-genres", "error", "model-badge"):
        assert f'id="{element_id}"' in page
    static = Path(__file__).resolve().parents[1] / "src/movie_genres/service/static"
    for f in static.iterdir():
        text = f.read_text(encoding="utf-8")
        assert "http://" not in text.replace('"http://www.w3.org/2000/svg"', "") and "https://" not in text, f
        assert client.get(f"/static/{f.name}").status_code == 200


def test_docs_and_redoc_are_served_from_local_assets(client: TestClient) -> None:
    import re

    for path, bundle in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        r = client.get(path)
        assert r.status_code == 200, path
        html = r.text
        assert not re.search(r"(?:https?:)?//[A-Za-z0-9.-]+", html.replace("http://www.w3.org", "")), f"{path} names another host"
        refs = re.findall(r'(?:src|href|url:|spec-url=)\s*=?\s*["\']([^"\']+)["\']', html)
        assert f"/docs-assets/{bundle}" in refs and "/openapi.json" in refs
        for ref in refs:  # every asset and the spec it points at is served here
            served = client.get(ref)
            assert served.status_code == 200 and len(served.content) > 100, ref
        # the page's own CSP: only this origin, plus the hashes of its inline blocks
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "http" not in csp and "script-src 'self'" in csp
        assert r.headers.get_list("content-security-policy") == [csp]  # the service's default did not add a second
    assert "SwaggerUIBundle(" in client.get("/docs").text and '"tryItOutEnabled": true' in client.get("/docs").text
    assert "'unsafe-inline'" not in client.get("/docs").headers["content-security-policy"]
    page = client.get("/").text
    assert 'href="/docs"' in page and 'href="/redoc"' in page  # the page's own API help links to them


# ---------------------------------------------------------------------------------------------------- /predict


def check_answer(body: dict, inputs: list[str]) -> None:
    assert list(body["probabilities"]) == GENRES
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in body["probabilities"].values())
    assert body["genres"] and set(body["genres"]) <= set(GENRES)
    assert body["inputs_used"] == inputs
    assert body["model"] == "fake" and body["version"] == "0.0-test"


def test_predict_poster_and_overview(client: TestClient) -> None:
    r = client.post("/predict", files={"poster": ("p.jpg", image_bytes(), "image/jpeg")}, data={"overview": OVERVIEW})
    assert r.status_code == 200, r.text
    check_answer(r.json(), ["poster", "overview"])
    again = client.post("/predict", files={"poster": ("p.jpg", image_bytes(), "image/jpeg")},
                        data={"overview": OVERVIEW})
    assert again.json() == r.json()  # deterministic
    other = client.post("/predict", files={"poster": ("p.jpg", image_bytes(), "image/jpeg")},
                        data={"overview": OVERVIEW + " Then it rains."})
    assert other.json()["probabilities"] != r.json()["probabilities"]


def test_predict_poster_only(client: TestClient, predictor: FakePredictor) -> None:
    r = post(client, poster_part(image_bytes()))
    assert r.status_code == 200, r.text
    check_answer(r.json(), ["poster"])
    assert predictor.seen[-1][1] is None


def test_predict_overview_only(client: TestClient, predictor: FakePredictor) -> None:
    r = post(client, overview_part("  " + OVERVIEW + "\n"))
    assert r.status_code == 200, r.text
    check_answer(r.json(), ["overview"])
    assert predictor.seen[-1] == (None, OVERVIEW)  # stripped


def test_overview_may_come_as_a_text_file(client: TestClient, predictor: FakePredictor) -> None:
    r = post(client, ("overview", "Un été à Paris. ☀".encode(), "plot.txt", "text/plain"))
    assert r.status_code == 200, r.text
    assert predictor.seen[-1][1] == "Un été à Paris. ☀"


def test_url_encoded_text_form_is_accepted(client: TestClient, predictor: FakePredictor) -> None:
    r = client.post("/predict", data={"overview": "Un été à Paris."})  # no files: httpx sends it url-encoded
    assert r.status_code == 200, r.text
    assert predictor.seen[-1] == (None, "Un été à Paris.")
    headers = {"content-type": "application/x-www-form-urlencoded"}
    refused(client.post("/predict", content=b"overview=caf%E9", headers=headers), 422, "UTF-8")
    refused(client.post("/predict", content=b"overview=caf\xe9", headers=headers), 422, "UTF-8")
    refused(client.post("/predict", content=b"poster=x.jpg", headers=headers), 422, "file upload")
    refused(client.post("/predict", content=b"overview=" + b"x" * 30_000, headers=headers), 422, "5000")
    refused(client.post("/predict", content=b"overview=a&overview=b", headers=headers), 422, "more than once")
    refused(client.post("/predict", content=b"", headers=headers), 422, "send a poster")
    alive(client)


def test_browser_form_with_no_file_chosen_means_no_poster(client: TestClient) -> None:
    r = post(client, ("poster", b"", "", "application/octet-stream"), overview_part(OVERVIEW))
    assert r.status_code == 200, r.text
    assert r.json()["inputs_used"] == ["overview"]


@pytest.mark.parametrize("fmt, save", [("PNG", {}), ("WEBP", {"quality": 80}), ("GIF", {}), ("BMP", {}),
                                       ("JPEG", {"progressive": True})])
def test_other_formats_are_accepted(client: TestClient, fmt: str, save: dict) -> None:
    r = post(client, poster_part(image_bytes(fmt, **save), filename=f"p.{fmt.lower()}", ctype="image/x"))
    assert r.status_code == 200, r.text
    alive(client)


@pytest.mark.parametrize("mode, fmt", [("L", "PNG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"),
                                       ("I;16", "PNG"), ("1", "PNG"), ("L", "JPEG")])
def test_modes_are_converted_to_rgb(client: TestClient, predictor: FakePredictor, mode: str, fmt: str) -> None:
    r = post(client, poster_part(image_bytes(fmt, mode=mode)))
    assert r.status_code == 200, r.text
    image = predictor.seen[-1][0]
    assert image.mode == "RGB" and image.size == (60, 90)


def test_transparent_pixels_become_white(client: TestClient, predictor: FakePredictor) -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(buf, "PNG")
    assert post(client, poster_part(buf.getvalue())).status_code == 200
    assert predictor.seen[-1][0].getpixel((3, 3)) == (255, 255, 255)


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return image_bytes("JPEG", size=(60, 90), exif=exif.tobytes())


def test_exif_orientation_is_applied(client: TestClient, predictor: FakePredictor) -> None:
    assert post(client, poster_part(rotated_jpeg())).status_code == 200
    assert predictor.seen[-1][0].size == (90, 60)


def test_posters_decode_through_the_package_decode(client: TestClient, predictor: FakePredictor,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The service reads no pixels itself: the model gets exactly what ``open_poster`` made of the upload's bytes."""
    made: list[tuple[bytes, Image.Image]] = []

    def spy(source, *args, **kwargs):
        image = real(source, *args, **kwargs)
        made.append((bytes(source), image))
        return image

    real = posters.open_poster
    monkeypatch.setattr(posters, "open_poster", spy)
    data = image_bytes("PNG", mode="RGBA", seed=4)
    assert post(client, poster_part(data, ctype="image/png"), overview_part(OVERVIEW)).status_code == 200
    assert len(made) == 1 and made[0][0] == data
    assert predictor.seen[-1][0] is made[0][1]
    batch = post(client, poster_part(data, name="poster_0"), poster_part(image_bytes(seed=5), name="poster_1"),
                 path="/predict/batch")
    assert batch.status_code == 200 and len(made) == 3


@pytest.mark.parametrize("error, status, words", [
    (PosterError("poster too large", "30000x30000 pixels"), 413, ["too large", "30000x30000"]),
    (PosterError("poster truncated", "image file is truncated"), 422, ["truncated"]),
    (PosterError("poster unreadable", "broken data stream"), 422, ["corrupt", "broken data stream"]),
    (PosterError("poster not an image", "not a JPEG"), 422, ["not an image"]),
    (PosterError("poster of a new kind", "something else"), 422, ["cannot be used", "something else"]),
])  # Pillow's DecompressionBombError and MemoryError reach the service as "poster too large" (open_poster maps them)
def test_poster_errors_map_to_http(client: TestClient, predictor: FakePredictor, monkeypatch: pytest.MonkeyPatch,
                                   error: Exception, status: int, words: list[str]) -> None:
    def broken(source, *args, **kwargs):
        raise error

    monkeypatch.setattr(posters, "open_poster", broken)
    refused(post(client, poster_part(image_bytes())), status, *words)
    refused(post(client, poster_part(image_bytes(), name="poster_2"), overview_part("a", name="overview_0"),
                 overview_part("b", name="overview_1"), path="/predict/batch"), status, "film 2", *words)
    assert predictor.calls == 0
    alive(client)


def test_overview_limit_counts_characters_not_bytes(client: TestClient) -> None:
    assert post(client, overview_part("é" * 5000)).status_code == 200  # 10,000 bytes, 5,000 characters
    refused(post(client, overview_part("é" * 5001)), 422, "5001 characters", "5000")


# ---------------------------------------------------------------------------------------------------- bad input


def truncated_jpeg() -> bytes:
    data = image_bytes("JPEG", size=(300, 400), quality=95)
    return data[: len(data) // 2]


BAD_INPUTS = {
    # name: (parts, status, words in the detail)
    "no inputs at all": ([], 422, ["send a poster, an overview or both"]),
    "blank overview only": ([overview_part("   \n ")], 422, ["send a poster"]),
    "empty file": ([poster_part(b"")], 422, ["empty"]),
    "not an image": ([poster_part(b"%PDF-1.4 this is not a poster at all")], 422, ["not an image"]),
    "text file renamed .jpg": ([poster_part(b"hello\n" * 50, filename="fake.jpg")], 422, ["not an image"]),
    "truncated JPEG": ([poster_part(truncated_jpeg())], 422, ["truncated"]),
    "JPEG header only": ([poster_part(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")], 422, []),
    "decompression bomb 20000x20000": ([poster_part(png_header_only(20000, 20000), ctype="image/png")], 413,
                                       ["too large"]),
    "over the pixel limit 7000x7000": ([poster_part(png_header_only(7000, 7000), ctype="image/png")], 413,
                                       ["7000x7000", "limit"]),
    "EPS is not accepted": ([poster_part(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")], 422,
                            ["not an image"]),
    "overview too long": ([overview_part("x" * 5001)], 422, ["5000"]),
    "overview far too long": ([overview_part("x" * 100_000)], 422, ["longer than the limit"]),
    "overview not UTF-8": ([overview_part(b"Un \xe9t\xe9 \xe0 Paris")], 422, ["UTF-8", "0xe9"]),
    "overview overlong UTF-8": ([overview_part(b"\xc0\xaf")], 422, ["UTF-8"]),
    "overview not UTF-8, as a file": ([("overview", b"\xff\xfe\x00a", "o.txt", "text/plain")], 422, ["UTF-8"]),
    "poster as a text field": ([("poster", "not a file", None, None)], 422, ["file upload"]),
    "unknown field": ([overview_part(OVERVIEW), ("posterr", b"x", "p.jpg", "image/jpeg")], 422, ["posterr"]),
    "duplicate poster": ([poster_part(image_bytes()), poster_part(image_bytes())], 422, ["more than once"]),
    "field name not UTF-8": ([], 422, ["field name", "UTF-8"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_and_the_service_keeps_serving(client: TestClient, predictor: FakePredictor,
                                                            case: str) -> None:
    parts, status, words = BAD_INPUTS[case]
    if case == "field name not UTF-8":  # raw bytes in the Content-Disposition header
        body, headers = multipart_body(("ovXX", "x", None, None))
        r = client.post("/predict", content=body.replace(b"ovXX", b"ov\xff"), headers=headers)
    else:
        r = post(client, *parts)
    refused(r, status, *words)
    assert predictor.calls == 0
    alive(client)
    assert post(client, overview_part(OVERVIEW)).status_code == 200


def test_upload_over_the_size_limit(client: TestClient) -> None:
    big = b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024)
    refused(post(client, poster_part(big)), 413, "limit")
    alive(client)


def test_upload_over_a_custom_limit_is_caught_while_streaming() -> None:
    with started(create_app(FakePredictor(), max_upload_bytes=1000)) as c:
        # request under the body cap (limit + overhead) but the poster part alone over the limit
        refused(post(c, poster_part(image_bytes(size=(200, 200), quality=100))), 413, "poster", "upload limit")
        assert post(c, poster_part(image_bytes(size=(10, 10)))).status_code == 200


@pytest.mark.parametrize("headers, body, status", [
    ({"content-type": "application/json"}, b'{"overview": "x"}', 415),
    ({}, b"", 415),
    ({"content-type": "multipart/form-data"}, b"--x--\r\n", 400),  # no boundary
    ({"content-type": "multipart/form-data; boundary=abc"}, b"this is not multipart at all", 400),
    ({"content-type": "multipart/form-data; boundary=abc"},
     b'--abc\r\nContent-Disposition: form-data; name="overview"\r\n\r\nno closing boundary', 400),
    ({"content-type": "multipart/form-data; boundary=abc"}, b"--abc\r\nContent-Type: text/plain\r\n\r\nx\r\n--abc--\r\n",
     400),  # no Content-Disposition
    ({"content-type": "multipart/form-data; boundary=abc"},
     b"--abc\r\nContent-Disposition: form-data\r\n\r\nx\r\n--abc--\r\n", 400),  # no field name
])
def test_malformed_requests(client: TestClient, headers: dict, body: bytes, status: int) -> None:
    refused(client.post("/predict", content=body, headers=headers), status)
    alive(client)


def test_wrong_method_and_path_are_json(client: TestClient) -> None:
    assert client.get("/predict").status_code == 405
    r = client.get("/nope")
    assert r.status_code == 404 and "detail" in r.json()


def test_decode_poster_directly() -> None:
    limits = Limits()
    assert decode_poster(image_bytes(mode="L"), limits).mode == "RGB"
    with pytest.raises(Exception) as info:
        decode_poster(png_header_only(20000, 20000), limits)
    assert getattr(info.value, "status", None) == 413


# ---------------------------------------------------------------------------------------------------- model problems


def test_model_failure_is_a_500_and_the_service_keeps_serving(predictor: FakePredictor) -> None:
    with started(create_app(predictor), raise_server_exceptions=True) as c:
        predictor.fail = True
        refused(post(c, overview_part(OVERVIEW)), 500, "model failed", "fake model failure")
        alive(c)
        predictor.fail = False
        assert post(c, overview_part(OVERVIEW)).status_code == 200


def test_predictor_value_error_is_a_422() -> None:
    class Picky(FakePredictor):
        def predict_many(self, items):
            raise ValueError("model 'fake' needs a usable poster; film 1 has none (poster unreadable)")

    with started(create_app(Picky())) as c:
        r = post(c, overview_part("a", name="overview_0"), path="/predict/batch")
        refused(r, 422, "cannot use this input", "needs a usable poster")
        alive(c)


@pytest.mark.parametrize("answer", [
    "not a dict",
    {"genres": ["Drama"]},
    {"probabilities": {"Drama": math.nan}, "genres": ["Drama"], "inputs_used": [], "model": "m", "version": "v"},
])
def test_unusable_model_answer_is_a_500(answer: object) -> None:
    with started(create_app(FakePredictor(answer=answer)), raise_server_exceptions=True) as c:
        refused(post(c, overview_part(OVERVIEW)), 500, "unusable")
        alive(c)


def test_numpy_answers_are_serialised() -> None:
    np = pytest.importorskip("numpy")
    answer = {"probabilities": {"Drama": np.float32(0.75), "Comedy": np.float64(0.25)}, "genres": np.array(["Drama"]),
              "inputs_used": ("overview",), "model": "m", "version": "v"}
    with started(create_app(FakePredictor(answer=answer))) as c:
        r = post(c, overview_part(OVERVIEW))
        assert r.status_code == 200, r.text
        assert r.json() == {"probabilities": {"Drama": 0.75, "Comedy": 0.25}, "genres": ["Drama"],
                            "inputs_used": ["overview"], "model": "m", "version": "v"}


def test_input_the_model_cannot_read() -> None:
    text_model = FakePredictor(modalities=("overview",))
    with started(create_app(text_model)) as c:
        assert c.get("/health").json()["modalities"] == ["overview"]
        refused(post(c, poster_part(image_bytes())), 422, "reads only the overview")
        r = post(c, poster_part(image_bytes()), overview_part(OVERVIEW))
        assert r.status_code == 200 and r.json()["inputs_used"] == ["overview"]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        create_app(FakePredictor(), max_batch=0)
    with pytest.raises(ValueError, match="did you mean 'max_batch'"):
        create_app(FakePredictor(), max_batchs=4)
    with pytest.raises(ValueError, match="at most 40,000,000"):
        create_app(FakePredictor(), max_image_pixels=50_000_000)


# ---------------------------------------------------------------------------------------------------- /explain


def test_explain_poster_and_overview(client: TestClient, predictor: FakePredictor) -> None:
    from movie_genres.explanation import GRID, explain, word_spans

    data = image_bytes(size=(60, 90))
    r = post(client, poster_part(data), overview_part(OVERVIEW), path="/explain")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "fake" and body["inputs_used"] == ["poster", "overview"]
    assert body["words"] == word_spans(OVERVIEW) and body["grid"] == list(GRID)
    assert list(body["explanations"]) == body["genres"] and body["genres"]
    for e in body["explanations"].values():
        assert sorted(w["i"] for w in e["words"]) == list(range(len(body["words"])))
        assert [w["weight"] for w in e["words"]] == sorted((w["weight"] for w in e["words"]), reverse=True)
        assert len(e["heatmap"]) == GRID[0] and all(len(row) == GRID[1] for row in e["heatmap"])
        assert set(e["by_modality"]) == {"poster", "overview", "both"} and e["by_modality"]["both"] == e["probability"]
    # the poster went through the same decode as /predict's, and the answer is explanation.explain's
    assert body == json.loads(json.dumps(explain(predictor, decode_poster(data, Limits()), OVERVIEW)))
    alive(client)


def test_explain_one_input_and_asked_genres(client: TestClient) -> None:
    r = post(client, overview_part(OVERVIEW), ("genre", "Horror, Drama", None, None), path="/explain")
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body["explanations"]) == ["Horror", "Drama"] and body["grid"] is None
    assert all(e["heatmap"] is None and e["by_modality"] is None and e["words"] for e in body["explanations"].values())
    r = post(client, poster_part(image_bytes()), path="/explain")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["words"] == [] and body["inputs_used"] == ["poster"]
    assert all(e["words"] == [] and e["heatmap"] for e in body["explanations"].values())


EXPLAIN_BAD_INPUTS = {
    "unknown genre": ([overview_part(OVERVIEW), ("genre", "Horrror", None, None)], 422, ["unknown genre", "Horrror"]),
    "genre field too long": ([overview_part(OVERVIEW), ("genre", "Drama," * 1000, None, None)], 422, ["genre"]),
    "unknown field": ([overview_part(OVERVIEW), ("genres", "Drama", None, None)], 422, ["genres"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS) + list(EXPLAIN_BAD_INPUTS))
def test_explain_refuses_bad_input_like_predict(client: TestClient, predictor: FakePredictor, case: str) -> None:
    parts, status, words = {**BAD_INPUTS, **EXPLAIN_BAD_INPUTS}[case]
    if case == "field name not UTF-8":
        body, headers = multipart_body(("ovXX", "x", None, None))
        r = client.post("/explain", content=body.replace(b"ovXX", b"ov\xff"), headers=headers)
    else:
        r = post(client, *parts, path="/explain")
    refused(r, status, *words)
    assert predictor.transforms == 0
    alive(client)


def test_explain_limits_and_modalities() -> None:
    with started(create_app(FakePredictor(modalities=("overview",)), max_upload_bytes=64 * 1024)) as c:
        refused(post(c, poster_part(b"\xff\xd8\xff" + b"\0" * 65 * 1024), path="/explain"), 413, "limit")
        refused(post(c, poster_part(image_bytes()), path="/explain"), 422, "reads only the overview")
        refused(post(c, overview_part("x" * 5001), path="/explain"), 422, "5000")
        assert c.app.state.predictor.transforms == 0
        r = post(c, poster_part(image_bytes()), overview_part(OVERVIEW), path="/explain")
        assert r.status_code == 200 and r.json()["inputs_used"] == ["overview"]


def test_explain_model_failure_is_a_500(predictor: FakePredictor, monkeypatch: pytest.MonkeyPatch) -> None:
    with started(create_app(predictor), raise_server_exceptions=False) as c:
        monkeypatch.setattr(predictor, "scores", lambda inputs: 1 / 0)
        refused(post(c, overview_part(OVERVIEW), path="/explain"), 500, "ZeroDivisionError")
        monkeypatch.setattr(predictor, "scores", lambda inputs: inputs["words"][:, :1] * 0 + [[float("nan")] * 25])
        refused(post(c, overview_part(OVERVIEW), path="/explain"), 500, "nan")
        alive(c)


# ---------------------------------------------------------------------------------------------------- /predict/batch


def test_batch_matches_single_predictions(client: TestClient, predictor: FakePredictor) -> None:
    films = [
        [poster_part(image_bytes(seed=1), name="poster_0"), overview_part(OVERVIEW, name="overview_0")],
        [overview_part("Two strangers fall in love on a night train.", name="overview_1")],
        [poster_part(image_bytes("PNG", seed=2), name="poster_2", ctype="image/png")],
    ]
    r = post(client, *[p for film in films for p in film], path="/predict/batch")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3 and body["model"] == "fake" and body["version"] == "0.0-test"
    assert [x["inputs_used"] for x in body["results"]] == [["poster", "overview"], ["overview"], ["poster"]]
    for i, film in enumerate(films):
        single = post(client, *[(name.rsplit("_", 1)[0], *rest) for name, *rest in film])
        assert single.json() == body["results"][i]


def test_batch_fields_may_come_in_any_order(client: TestClient) -> None:
    r = post(client, overview_part("b", name="overview_1"), overview_part("a", name="overview_0"),
             path="/predict/batch")
    assert r.status_code == 200 and r.json()["count"] == 2
    assert r.json()["results"][0] == post(client, overview_part("a")).json()


def test_batch_calls_predict_many_once(predictor: FakePredictor) -> None:
    calls = []
    original = predictor.predict_many
    predictor.predict_many = lambda items: calls.append(len(items)) or original(items)
    with started(create_app(predictor)) as c:
        parts = [overview_part(f"film {i}", name=f"overview_{i}") for i in range(32)]
        assert post(c, *parts, path="/predict/batch").status_code == 200
    assert calls == [32]


BAD_BATCHES = {
    "empty": ([], 422, ["empty"]),
    "gap in the indices": ([overview_part("a", name="overview_0"), overview_part("c", name="overview_2")], 422,
                           ["film 1", "send a poster"]),
    "too many films": ([overview_part("a", name="overview_32")], 422, ["at most 32"]),
    "unknown field": ([overview_part("a", name="overviews")], 422, ["overview_<i>"]),
    "single-film field names": ([overview_part("a")], 422, ["unknown field"]),
    "bad poster names its film": ([overview_part("a", name="overview_0"),
                                   poster_part(b"not an image", name="poster_1")], 422, ["film 1", "not an image"]),
    "truncated poster": ([poster_part(truncated_jpeg(), name="poster_0")], 422, ["film 0", "truncated"]),
    "bomb": ([poster_part(png_header_only(20000, 20000), name="poster_3"), overview_part("a", name="overview_0"),
              overview_part("b", name="overview_1"), overview_part("c", name="overview_2")], 413, ["film 3"]),
    "overview not UTF-8": ([overview_part(b"\xff", name="overview_0")], 422, ["film 0", "UTF-8"]),
    "overview too long": ([overview_part("x" * 5001, name="overview_0")], 422, ["film 0", "5000"]),
    "empty poster": ([poster_part(b"", name="poster_0")], 422, ["film 0", "empty"]),
    "duplicate": ([overview_part("a", name="overview_0"), overview_part("a", name="overview_0")], 422,
                  ["more than once"]),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_bad_batches(client: TestClient, predictor: FakePredictor, case: str) -> None:
    parts, status, words = BAD_BATCHES[case]
    refused(post(client, *parts, path="/predict/batch"), status, *words)
    assert predictor.calls == 0
    alive(client)


def test_batch_pixel_budget() -> None:
    with started(create_app(FakePredictor(), max_batch_pixels=10_000)) as c:
        parts = [poster_part(image_bytes(size=(60, 90), seed=i), name=f"poster_{i}") for i in range(3)]  # 16,200 px
        refused(post(c, *parts, path="/predict/batch"), 413, "fewer or smaller")
        assert post(c, *parts[:1], path="/predict/batch").status_code == 200


def test_batch_body_limit() -> None:
    with started(create_app(FakePredictor(), max_batch_bytes=50_000)) as c:
        parts = [poster_part(image_bytes(size=(300, 300), quality=100, seed=i), name=f"poster_{i}") for i in range(8)]
        refused(post(c, *parts, path="/predict/batch"), 413, "limit")
        alive(c)


# ---------------------------------------------------------------------------------------------------- a real server


def test_oversized_upload_is_refused_without_reading_the_rest() -> None:
    """At the ASGI level: the app stops pulling body chunks as soon as the poster crosses the limit."""
    app = create_app(FakePredictor(), max_upload_bytes=100_000)
    chunk = b"\0" * 16_384
    head = b'--b\r\nContent-Disposition: form-data; name="poster"; filename="x.jpg"\r\n\r\n'
    pulled = 0
    answer: dict = {}

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        if pulled > 10_000:  # 160 MB: the app should have stopped long before
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": head if pulled == 1 else chunk, "more_body": True}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"multipart/form-data; boundary=b"), (b"host", b"test")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert answer["status"] == 413, answer
    assert pulled <= 100_000 // len(chunk) + 3  # at most one chunk past the limit
    assert "upload limit" in json.loads(answer["body"])["detail"]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read memory use")
def test_real_server_refuses_big_uploads_without_buffering_them() -> None:
    with running_server(create_app(FakePredictor())) as url, httpx.Client(base_url=url, timeout=120) as http:
        big = b"\xff\xd8\xff" + b"\0" * (12 * 1024 * 1024)
        r = http.post("/predict", files={"poster": ("big.jpg", big, "image/jpeg")})  # Content-Length over the cap
        refused(r, 413, "limit")
        del big

        def endless():  # no Content-Length: 300 MB, produced and dropped chunk by chunk
            yield b'--b\r\nContent-Disposition: form-data; name="poster"; filename="x.jpg"\r\n\r\n'
            for _ in range(300):
                yield b"\0" * (1024 * 1024)

        baseline, peak, done = rss_bytes(), 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_bytes())
                done.wait(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            r = http.post("/predict", content=endless(), headers={"content-type": "multipart/form-data; boundary=b"})
            refused(r, 413, "limit")
        except httpx.TransportError:
            pass  # a server may also close the connection once it has answered
        finally:
            done.set()
            sampler.join()
        assert peak - baseline < 100 * 1024 * 1024, f"memory grew by {(peak - baseline) / 2**20:.0f} MB"
        assert http.get("/health").status_code == 200
        assert http.post("/predict", files={"overview": (None, OVERVIEW)}).status_code == 200


def test_real_server_under_concurrent_load() -> None:
    predictor = FakePredictor()
    with running_server(create_app(predictor)) as url:
        statuses: list[int] = []

        def worker(i: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                for j in range(5):
                    files = {"poster": ("p.png", image_bytes("PNG", seed=i * 10 + j), "image/png")}
                    bad = {"poster": ("p.jpg", truncated_jpeg(), "image/jpeg")}
                    statuses.append(http.post("/predict", files=files, data={"overview": OVERVIEW}).status_code)
                    statuses.append(http.post("/predict", files=bad).status_code)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(set(statuses)) == [200, 422] and statuses.count(200) == 30
        assert httpx.get(url + "/health").status_code == 200


# ---------------------------------------------------------------------------------------------------- a trained run


@pytest.mark.parametrize("model", ["cnn", "bilstm"])
def test_real_predictor_behind_the_api(trained_runs: dict, model: str) -> None:
    from movie_genres.predictor import Predictor

    predictor = Predictor.load(trained_runs[model])
    reads = "poster" if model == "cnn" else "overview"
    other = "overview" if reads == "poster" else "poster"
    with started(create_app(predictor)) as c:
        assert predictor.featurizer.write_cache is False  # serving never writes the training feature cache
        health = c.get("/health").json()
        assert health["status"] == "ok" and health["model"] == model and health["modalities"] == [reads]
        both = [poster_part(image_bytes(seed=3)), overview_part("A story of ghost blood haunted scream.")]
        r = post(c, *both)
        assert r.status_code == 200, r.text
        body = r.json()
        assert list(body["probabilities"]) == predictor.genres and body["genres"] and body["inputs_used"] == [reads]
        assert body == predictor.predict_one(poster=Image.open(io.BytesIO(image_bytes(seed=3))).convert("RGB"),
                                             overview="A story of ghost blood haunted scream.")
        refused(post(c, both[0] if other == "poster" else both[1]), 422, f"reads only the {reads}")
        refused(post(c, poster_part(truncated_jpeg()), both[1]), 422, "truncated")
        batch = post(c, *[(f"{name}_{i}", *rest) for i in range(3) for name, *rest in both], path="/predict/batch")
        assert batch.status_code == 200, batch.text
        assert batch.json()["results"] == [body] * 3
        alive(c)


# ---------------------------------------------------------------------------------------------------- warm-up


class GatedPredictor(FakePredictor):
    """A FakePredictor whose first call (the warm-up) waits until ``gate`` is set, like encoders still loading."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()
        self.warming = threading.Event()

    def predict_one(self, poster=None, overview=None):
        if self.calls == 0:
            self.warming.set()
            assert self.gate.wait(30), "the test never opened the gate"
        return super().predict_one(poster, overview)


def test_health_is_loading_until_the_warm_up_is_done() -> None:
    predictor = GatedPredictor()
    with TestClient(create_app(predictor)) as c:
        assert predictor.warming.wait(10)
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading", r.text
        assert r.json()["model"] == "fake" and r.json()["limits"]["max_batch"] == 32
        predictor.gate.set()
        assert wait_ready(c.get)["status"] == "ok"
        assert predictor.calls == 1
        assert post(c, overview_part(OVERVIEW)).status_code == 200


def test_a_request_during_the_warm_up_waits_for_it() -> None:
    predictor = GatedPredictor()
    with running_server(create_app(predictor), ready=False) as url:
        assert predictor.warming.wait(10)
        answer: dict = {}
        request = threading.Thread(target=lambda: answer.update(
            r=httpx.post(url + "/predict", data={"overview": OVERVIEW}, timeout=30)))
        request.start()
        request.join(0.5)
        assert request.is_alive() and httpx.get(url + "/health").status_code == 503  # still warming, still answering
        predictor.gate.set()
        request.join(30)
        assert answer["r"].status_code == 200 and predictor.calls == 2
        assert httpx.get(url + "/health").json()["status"] == "ok"


@pytest.mark.parametrize("modalities", [("poster", "overview"), ("poster",), ("overview",)])
def test_the_warm_up_reads_every_input_the_model_reads(modalities: tuple[str, ...]) -> None:
    predictor = FakePredictor(modalities=modalities)
    with TestClient(create_app(predictor)) as c:
        wait_ready(c.get)
    assert predictor.calls == 1
    poster, overview = predictor.seen[0]
    assert (poster is not None) == ("poster" in modalities) and (overview is not None) == ("overview" in modalities)
    assert poster is None or (poster.mode == "RGB" and poster.width > 64)


def test_a_failed_warm_up_is_reported_and_the_service_keeps_serving() -> None:
    predictor = FakePredictor(fail=True)
    with TestClient(create_app(predictor), raise_server_exceptions=True) as c:
        deadline = time.monotonic() + 10
        while c.get("/health").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.01)
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "error", r.text
        assert "fake model failure" in r.json()["detail"]
        refused(post(c, overview_part(OVERVIEW)), 500, "model failed")
        predictor.fail = False
        assert post(c, overview_part(OVERVIEW)).status_code == 200


def test_serving_never_writes_the_feature_cache() -> None:
    predictor = FakePredictor()
    create_app(predictor)
    assert predictor.featurizer.write_cache is False


# ---------------------------------------------------------------------------------------------------- module and CLI


def test_no_service_module_imports_the_predictor_at_the_top() -> None:
    """The model stack is heavy: serve() loads it; the app, routes and the CLI's limits import without it."""
    for path in sorted((ROOT / "src/movie_genres/service").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                assert node.module != "movie_genres.predictor" and not (
                    node.module == "movie_genres" and any(a.name == "predictor" for a in node.names)), path
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("movie_genres.predictor") for a in node.names), path


def test_serve_help_lists_the_limits() -> None:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "KERAS_BACKEND": "torch"}
    r = subprocess.run([sys.executable, "-m", "movie_genres", "serve", "--help"], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    for option in ("--host", "--port", "--max-upload-bytes", "--max-overview-chars", "--max-batch",
                   "--max-image-pixels", "--max-batch-bytes", "--max-batch-pixels", "--limit-concurrency"):
        assert option in r.stdout, option
    assert "(default: 10M)" in r.stdout and "(default: 32)" in r.stdout


@pytest.fixture
def fake_serve(monkeypatch: pytest.MonkeyPatch) -> dict:
    """``movie-genres serve`` without a model or a socket: Predictor.load gives a FakePredictor, uvicorn.run records."""
    import uvicorn

    from movie_genres.predictor import Predictor

    seen: dict = {"loads": 0}

    def load(run_dir):
        seen["loads"] += 1
        seen["predictor"] = FakePredictor()
        return seen["predictor"]

    def run(app, **kwargs):
        seen["app"], seen["uvicorn"] = app, kwargs
        with TestClient(app) as c:
            seen["health"] = wait_ready(c.get)

    monkeypatch.setattr(Predictor, "load", staticmethod(load))
    monkeypatch.setattr(uvicorn, "run", run)
    return seen


def test_serve_options_reach_the_app(fake_serve: dict) -> None:
    from movie_genres import cli

    assert cli.main(["serve", "some-run", "--port", "8123", "--max-batch", "4", "--max-upload-bytes", "2M",
                     "--max-overview-chars", "300", "--limit-concurrency", "8"]) == 0
    limits = fake_serve["app"].state.limits
    assert limits == Limits(max_batch=4, max_upload_bytes=2 * MIB, max_overview_chars=300)
    assert fake_serve["health"]["limits"]["max_batch"] == 4
    assert fake_serve["uvicorn"]["port"] == 8123 and fake_serve["uvicorn"]["limit_concurrency"] == 8
    assert fake_serve["predictor"].featurizer.write_cache is False
    assert cli.main(["serve", "some-run"]) == 0  # no options: the defaults
    assert fake_serve["app"].state.limits == Limits() and fake_serve["uvicorn"]["limit_concurrency"] == 64


def test_serve_keywords_reach_the_app(fake_serve: dict) -> None:
    import movie_genres as mg

    mg.serve("some-run", port=9000, max_batch_pixels=5_000_000, limit_concurrency=3)
    assert fake_serve["app"].state.limits == Limits(max_batch_pixels=5_000_000)
    assert fake_serve["uvicorn"]["limit_concurrency"] == 3 and fake_serve["uvicorn"]["port"] == 9000


@pytest.mark.parametrize("args, message", [
    (["--max-batch", "0"], "must be at least 1"),
    (["--max-upload-bytes", "ten"], "not a size"),
    (["--limit-concurrency", "-2"], "must be at least 1"),
])
def test_bad_serve_options_are_usage_errors(fake_serve: dict, capsys: pytest.CaptureFixture, args: list[str],
                                            message: str) -> None:
    from movie_genres import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "some-run", *args])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert fake_serve["loads"] == 0


def test_bad_limits_are_refused_before_the_run_loads(fake_serve: dict, capsys: pytest.CaptureFixture) -> None:
    import movie_genres as mg
    from movie_genres import cli

    assert cli.main(["serve", "some-run", "--max-image-pixels", "50000000"]) == 2
    assert "at most 40,000,000" in capsys.readouterr().err
    with pytest.raises(ValueError, match="did you mean 'max_batch'"):
        mg.serve("some-run", max_bach=3)
    assert fake_serve["loads"] == 0
