"""The web page, driven in headless Chromium (Debian's /usr/bin/chromium through Playwright; no downloaded browser).

Needs: ``apt-get install -y chromium`` and ``pip install playwright==1.65.2`` (never ``playwright install``).
Without them the tests skip, or FAIL when the CI environment variable is set.

``check_page(browser, base_url, poster, overview, out_dir)`` works against any running service: the tests here use the
FakePredictor; with a trained run, serve ``create_app(Predictor.load(run_dir))`` through ``running_server`` and call it
the same way (``test_page_with_a_trained_run`` does, with conftest's tiny run or ``MG_SERVE_RUN_DIR=runs/x``).
``MG_SCREENSHOT_OUT=docs/screenshot-page.png`` also copies the main test's screenshot there (the trained run's one
instead when MG_SERVE_RUN_DIR is set).
"""
from __future__ import annotations

import math
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from movie_genres.service.app import create_app
from serve_helpers import FakePredictor, image_bytes, running_server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OVERVIEW = ("A retired astronaut is called back for one last mission when a signal from the edge of the solar system "
            "threatens Earth. Haunted by the crew she lost, she must lead a young team into the unknown.")


def missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed: pip install playwright==1.65.2 (do not run `playwright install`)")
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} not found: apt-get install -y chromium (or set MG_CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def fake_server() -> Iterator[str]:
    with running_server(create_app(FakePredictor())) as url:
        yield url


def make_poster(path: Path) -> Path:
    """A poster-like JPEG: night sky, a sun, a title band."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (400, 600), (20, 24, 48))
    draw = ImageDraw.Draw(img)
    for y in range(0, 420, 6):
        draw.rectangle([0, y, 400, y + 6], fill=(20 + y // 6, 24 + y // 12, 80 + y // 5))
    draw.ellipse([100, 120, 300, 320], fill=(240, 170, 60))
    draw.rectangle([0, 420, 400, 600], fill=(12, 12, 20))
    draw.text((120, 490), "THE LAST HORIZON", fill=(255, 255, 255))
    img.save(path, quality=90)
    return path


def read_bars(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        "#bars .bar",
        "els => els.map(e => ({genre: e.dataset.genre, prob: e.dataset.prob, decided: e.dataset.decided, "
        "text: e.querySelector('.bar-value').textContent}))")


def read_explanation(page: Any) -> dict[str, Any]:
    """What the page's explanation card shows: the genre, each word's mark, each heatmap cell, the modality bars."""
    return page.eval_on_selector("#explanation", """root => {
        const alpha = (e) => { const m = getComputedStyle(e).backgroundColor.match(/rgba?\\(([^)]*)\\)/);
                               const v = m ? m[1].split(",").map(Number) : [];
                               return v.length === 4 ? v[3] : (v.length === 3 ? 1 : 0); };
        return {
          genre: root.dataset.genre,
          selected: [...root.querySelectorAll(".xp-genre[aria-selected=true]")].map(b => b.dataset.genre),
          buttons: [...root.querySelectorAll(".xp-genre")].map(b => b.dataset.genre),
          words: [...root.querySelectorAll(".xp-word")].map(m => ({i: Number(m.dataset.i), text: m.textContent,
                                                                  weight: Number(m.dataset.weight), alpha: alpha(m)})),
          text: (root.querySelector(".xp-words") || {}).textContent || null,
          cells: [...root.querySelectorAll(".xp-cell")].map(c => ({row: Number(c.dataset.row), col: Number(c.dataset.col),
                                                                  weight: Number(c.dataset.weight), alpha: alpha(c)})),
          grid: (() => { const g = root.querySelector(".xp-grid"); if (!g) return null;
                         const s = getComputedStyle(g); return [s.gridTemplateRows.split(" ").length,
                                                                s.gridTemplateColumns.split(" ").length]; })(),
          poster: (root.querySelector(".xp-poster img") || {}).src || null,
          modalities: Object.fromEntries([...root.querySelectorAll(".xp-modality")].map(
              li => [li.dataset.modality, Number(li.dataset.prob)])),
        };
    }""")


def check_explanation(shown: dict[str, Any], exp: dict[str, Any], answer: dict[str, Any], signal: bool = False) -> None:
    """The explanation card matches POST /explain: highlighted words, the heatmap grid and the modality bars.

    ``signal``: the shown genre must have a word (if the overview was read) and a poster cell that moved it."""
    assert list(exp["explanations"]) == answer["genres"]
    genre = shown["genre"]
    assert genre in exp["explanations"], (genre, list(exp["explanations"]))
    assert shown["selected"] == ([genre] if len(answer["genres"]) > 1 else [])
    assert sorted(shown["buttons"]) == (sorted(answer["genres"]) if len(answer["genres"]) > 1 else [])
    e = exp["explanations"][genre]
    if e["words"]:
        weights = {w["i"]: w["weight"] for w in e["words"]}
        assert [w["text"] for w in shown["words"]] == [s["text"] for s in exp["words"]]
        assert all(math.isclose(w["weight"], weights[w["i"]], abs_tol=1e-9) for w in shown["words"])
        top = e["words"][0]  # the word that moved the genre most
        assert top["weight"] > 0 or not signal, e["words"]
        warm = [w["alpha"] for w in shown["words"] if w["weight"] >= 0]
        if top["weight"] > 0:
            assert shown["words"][top["i"]]["alpha"] == max(warm) > 0, (top, shown["words"])
        assert shown["text"] and all(w["text"] in shown["text"] for w in shown["words"])
    else:
        assert shown["words"] == []
    if e["heatmap"] is not None:
        rows, cols = exp["grid"]
        assert shown["grid"] == [rows, cols] and len(shown["cells"]) == rows * cols
        for c in shown["cells"]:
            assert math.isclose(c["weight"], e["heatmap"][c["row"]][c["col"]], abs_tol=1e-9), c
        strongest = max(abs(v) for row in e["heatmap"] for v in row)
        assert strongest > 0 or not signal, e["heatmap"]
        if strongest > 0:
            top_cell = max(shown["cells"], key=lambda c: abs(c["weight"]))
            assert top_cell["alpha"] == max(c["alpha"] for c in shown["cells"]) > 0
        assert shown["poster"] and shown["poster"].startswith("blob:")
    else:
        assert shown["cells"] == [] and shown["poster"] is None
    if e["by_modality"] is not None:
        assert shown["modalities"] == pytest.approx(e["by_modality"], abs=1e-9)
    else:
        assert shown["modalities"] == {}


def check_page(browser: Any, base_url: str, poster: Path | None, overview: str | None, out_dir: Path,
               viewport: tuple[int, int] = (1280, 900), publish: bool = False, signal: bool = False) -> dict[str, Any]:
    """Fill the page like a user, wait for the bars and the explanation, check them against POST /predict and POST
    /explain (``signal``: see :func:`check_explanation`); returns the prediction.

    Also checks that the page loads nothing from outside the service and logs no errors; saves ``page.png`` in
    ``out_dir`` and, with ``publish`` and MG_SCREENSHOT_OUT set, copies it there.
    """
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    outside: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((base_url, "blob:", "data:")) else outside.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(base_url + "/")
        page.wait_for_selector("#model-badge[data-state=up]", timeout=15_000)
        if poster is not None:
            page.set_input_files("#poster-input", str(poster))
            page.wait_for_selector("#dropzone[data-has-file=true]")
            assert page.eval_on_selector("#poster-preview", "img => img.src").startswith("blob:")
            page.wait_for_function("document.getElementById('poster-preview').complete")
        if overview is not None:
            page.fill("#overview-input", overview)
        page.click("#predict-btn")
        page.wait_for_selector("#results[data-state=done]", timeout=60_000)
        page.wait_for_selector("#explain-card[data-state=done]", timeout=60_000)  # drawn after the prediction
        page.wait_for_timeout(600)  # let the bar transition finish before the screenshot
        bars = read_bars(page)
        shown = read_explanation(page)
        other = None
        switch = page.query_selector(f"#explanation .xp-genre:not([data-genre='{shown['genre']}'])")
        if switch is not None:  # the genre selector re-draws in place
            switch.click()
            other = read_explanation(page)
        decided_chips = page.eval_on_selector_all("#decided-genres .chip", "els => els.map(e => e.dataset.genre)")
        inputs = page.eval_on_selector_all(
            "#inputs-used .input-chip", "els => Object.fromEntries(els.map(e => [e.dataset.input, e.dataset.used]))")
        screenshot = out_dir / "page.png"
        page.evaluate("window.scrollTo(0, 0)")  # the genre switch scrolled; the poster card is sticky
        page.wait_for_timeout(100)
        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()

    files = {"poster": (poster.name, poster.read_bytes(), "image/jpeg")} if poster is not None else None
    data = {"overview": overview} if overview is not None else None
    expected = httpx.post(base_url + "/predict", files=files, data=data, timeout=120)
    assert expected.status_code == 200, expected.text
    answer = expected.json()

    expected = httpx.post(base_url + "/explain", files=files, data=data, timeout=120)
    assert expected.status_code == 200, expected.text
    check_explanation(shown, expected.json(), answer, signal)
    if other is not None:
        check_explanation(other, expected.json(), answer, signal)
        assert other["genre"] != shown["genre"]

    probs = answer["probabilities"]
    assert [b["genre"] for b in bars] == sorted(probs, key=lambda g: (-probs[g], g))  # every genre, sorted
    for bar in bars:
        assert math.isclose(float(bar["prob"]), probs[bar["genre"]], rel_tol=0, abs_tol=1e-12), bar
        assert bar["decided"] == str(bar["genre"] in answer["genres"]).lower(), bar
        assert bar["text"].endswith("%")
    assert sorted(decided_chips) == sorted(answer["genres"])
    assert {m for m, used in inputs.items() if used == "true"} == set(answer["inputs_used"])
    assert not outside, f"the page loaded things from outside the service: {outside}"
    assert not errors, f"console errors: {errors}"
    assert screenshot.stat().st_size > 10_000

    if publish and os.environ.get("MG_SCREENSHOT_OUT"):
        target = Path(os.environ["MG_SCREENSHOT_OUT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)
    return answer


def test_page_shows_the_same_answer_as_the_api(browser: Any, fake_server: str, tmp_path: Path) -> None:
    answer = check_page(browser, fake_server, make_poster(tmp_path / "poster.jpg"), OVERVIEW, tmp_path, publish=True,
                        signal=True)
    assert answer["inputs_used"] == ["poster", "overview"]


@pytest.mark.parametrize("with_poster, with_overview", [(True, False), (False, True)])
def test_page_with_one_input(browser: Any, fake_server: str, tmp_path: Path, with_poster: bool,
                             with_overview: bool) -> None:
    poster = make_poster(tmp_path / "poster.jpg") if with_poster else None
    answer = check_page(browser, fake_server, poster, OVERVIEW if with_overview else None, tmp_path,
                        viewport=(420, 900), signal=True)
    assert answer["inputs_used"] == (["poster"] if with_poster else ["overview"])


def test_page_shows_server_refusals(browser: Any, fake_server: str, tmp_path: Path) -> None:
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not a poster")
    truncated = tmp_path / "cut.jpg"
    data = image_bytes("JPEG", size=(300, 400), quality=95)
    truncated.write_bytes(data[: len(data) // 2])
    page = browser.new_page()
    try:
        page.goto(fake_server + "/")
        page.wait_for_selector("#model-badge[data-state=up]")
        page.click("#predict-btn")  # nothing chosen: the page says so itself
        assert "poster" in page.text_content("#error").lower()
        for bad, words in ((not_image, "not an image"), (truncated, "truncated")):
            page.set_input_files("#poster-input", str(bad))
            page.click("#predict-btn")
            page.wait_for_selector("#error[data-status='422']")
            assert words in page.text_content("#error")
        page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        # the page (and the service) still work afterwards
        page.click("#poster-clear")
        page.fill("#overview-input", OVERVIEW)
        page.click("#predict-btn")
        page.wait_for_selector("#results[data-state=done]")
        assert page.is_hidden("#error")
        assert len(read_bars(page)) == 25
    finally:
        page.close()


def test_the_explanation_loads_after_the_prediction(browser: Any, tmp_path: Path) -> None:
    """The prediction is shown (and the page usable) while the explanation is still being worked out."""
    gate = threading.Event()

    class SlowExplainer(FakePredictor):
        def scores(self, inputs):
            if len(inputs["words"]) > 1:  # an explanation's batch of variants, not a prediction
                assert gate.wait(30)
            return super().scores(inputs)

    with running_server(create_app(SlowExplainer())) as url:
        page = browser.new_page()
        try:
            page.goto(url + "/")
            page.wait_for_selector("#model-badge[data-state=up]", timeout=15_000)
            page.fill("#overview-input", OVERVIEW)
            page.click("#predict-btn")
            page.wait_for_selector("#results[data-state=done]", timeout=15_000)
            assert page.get_attribute("#explain-card", "data-state") == "loading"
            assert page.is_enabled("#predict-btn") and len(read_bars(page)) == 25
            gate.set()
            page.wait_for_selector("#explain-card[data-state=done]", timeout=15_000)
            assert page.eval_on_selector_all("#explanation .xp-word", "els => els.length") == len(OVERVIEW.split())
            page.click("#clear-btn")
            assert page.is_hidden("#explain-card")
        finally:
            gate.set()
            page.close()


def test_page_waits_for_the_model_to_warm_up(browser: Any) -> None:
    gate = threading.Event()

    class Warming(FakePredictor):
        def predict_one(self, poster=None, overview=None):
            if self.calls == 0:  # the service's warm-up film
                assert gate.wait(30)
            return super().predict_one(poster, overview)

    with running_server(create_app(Warming()), ready=False) as url:
        page = browser.new_page()
        try:
            page.goto(url + "/")
            page.wait_for_selector("#model-badge[data-state=warming]", timeout=15_000)
            assert "warming up" in page.text_content("#model-badge")
            gate.set()
            page.wait_for_selector("#model-badge[data-state=up]", timeout=15_000)
            assert "reads poster + overview" in page.text_content("#model-badge")
        finally:
            gate.set()
            page.close()


def test_docs_and_redoc_work_offline(browser: Any, fake_server: str, tmp_path: Path) -> None:
    """Swagger UI at /docs runs a request with "Try it out"; ReDoc at /redoc renders; nothing leaves the server and
    the pages' own CSP blocks nothing they need. (ReDoc's bundle asks for its vendor's logo from that vendor's host:
    the CSP refuses it and ReDoc leaves the logo out.)"""
    page = browser.new_page()
    fetched: list[str] = []
    refused: list[str] = []
    local = (fake_server, "data:", "blob:")
    page.on("requestfinished", lambda r: None if r.url.startswith(local) else fetched.append(r.url))
    page.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)
    try:
        page.goto(fake_server + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = page.eval_on_selector_all(".opblock", "els => els.map(e => e.querySelector('.opblock-summary-method').textContent"
                                                       " + ' ' + e.querySelector('.opblock-summary-path').dataset.path)")
        assert {"POST /predict", "POST /predict/batch", "POST /explain", "GET /health", "GET /genres"} <= set(paths)
        genres = page.locator(".opblock", has=page.locator("[data-path='/genres']"))
        genres.locator(".opblock-summary").click()
        genres.locator("button.execute").click()  # "Try it out" is on: the request runs from the page
        page.wait_for_selector(".live-responses-table tbody .response-col_status", timeout=20_000)
        assert genres.locator(".live-responses-table tbody .response-col_status").first.text_content().strip() == "200"
        assert '"genres"' in genres.locator(".live-responses-table .microlight").first.text_content()
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)

        page.goto(fake_server + "/redoc")
        page.wait_for_selector("h1", timeout=20_000)
        page.wait_for_function("document.body.innerText.includes('Genres of several films')", timeout=20_000)
        assert "movie-genres" in page.text_content("h1")
    finally:
        page.close()
    assert not fetched, fetched
    assert not [m for m in refused if "cdn.redoc.ly/redoc/logo-mini.svg" not in m], refused


def test_page_with_a_trained_run(browser: Any, trained_runs: dict, tmp_path: Path) -> None:
    """The real Predictor behind the page: the tiny cnn run from conftest, or MG_SERVE_RUN_DIR if set."""
    from movie_genres.predictor import Predictor

    predictor = Predictor.load(os.environ.get("MG_SERVE_RUN_DIR") or trained_runs["cnn"])
    with running_server(create_app(predictor)) as url:
        answer = check_page(browser, url, make_poster(tmp_path / "poster.jpg"), OVERVIEW, tmp_path,
                            publish=bool(os.environ.get("MG_SERVE_RUN_DIR")))  # a real run's page wins
    assert set(answer["inputs_used"]) == set(predictor.modalities)
