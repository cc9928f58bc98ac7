"""End to end: `streamlit run app.py` on a free port, driven in headless Debian Chromium by Playwright.

Screenshots go to `artifacts/screenshots/` so a person can look at what a user sees. Skipped, with
the reason, when /usr/bin/chromium is absent (`.ci/run` installs it; `apt-get install chromium`).
"""

from __future__ import annotations

import pytest

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, browser_marks, streamlit_server
from tests.conftest import REPO, TOUR_PREDICTIONS

SHOTS = REPO / "artifacts" / "screenshots"
pytestmark = browser_marks()


# A fresh server per test keeps the tests independent; `test_browser_sessions.py` drives many
# sessions against one server on purpose.
@pytest.fixture()
def app_url(tmp_path):
    with streamlit_server(tmp_path / "server.log") as (url, _):
        yield url


@pytest.fixture()
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 2400})
        yield context.new_page()
        browser.close()


PAGES = [
    ("Generation", "generation"),
    ("Spike activity", "spike_activity"),
    ("State saturation", "saturation"),
    ("Quantization error", "quantization_error"),
    ("Hardware", "hardware"),
    ("Learn", "learn"),
]


def _settle(page, timeout_ms: int = 180_000) -> None:
    """Wait until Streamlit has finished running the script and the charts are drawn."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )
    page.wait_for_timeout(1500)


@pytest.mark.parametrize("title,slug", PAGES)
def test_every_page_in_chromium(page, app_url, title, slug):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{app_url}/{'' if slug == 'generation' else slug}", wait_until="domcontentloaded")
    page.get_by_role("heading", name=title).first.wait_for(timeout=180_000)
    _settle(page)
    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
    _settle(page)
    page.screenshot(path=str(SHOTS / f"{slug}.png"), full_page=True)
    body = page.inner_text("body")
    assert "Traceback" not in body
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator(".js-plotly-plot").count() >= 1


def test_lava_backend_in_chromium(page, app_url):
    """Backend = Lava simulation under a real `streamlit run`: Generation, then Spike activity."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Generation").first.wait_for(timeout=180_000)
    _settle(page)
    page.locator('[data-testid="stSidebar"]').get_by_text("Lava simulation").click()
    page.get_by_role("heading", name="Integer model · Lava simulation").wait_for(timeout=300_000)
    _settle(page)
    page.screenshot(path=str(SHOTS / "generation_lava.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Spike activity").click()
    page.get_by_role("heading", name="Spike activity").first.wait_for(timeout=180_000)
    _settle(page)
    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
    page.screenshot(path=str(SHOTS / "spike_activity_lava.png"), full_page=True)
    assert "Traceback" not in page.inner_text("body")
    assert page.locator('[data-testid="stException"]').count() == 0


def test_settings_from_the_url_in_chromium(page, app_url):
    """A shared link restores the sidebar's settings (issue 11.16); a hostile value is named, not obeyed."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{app_url}/?seed=5&tokens=12&state_bits=16&top_k=abc", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Generation").first.wait_for(timeout=180_000)
    _settle(page)
    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
    _settle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_label("Seed (0 to 2,147,483,647)").input_value() == "5"
    assert "top_k from the link was ignored" in sidebar.inner_text()  # markdown renders the backticks as code
    assert "seed=5" in page.url and "tokens=12" in page.url
    page.screenshot(path=str(SHOTS / "generation_from_link.png"), full_page=True)


def test_markdown_in_a_shared_link_is_shown_as_text_in_chromium(page, app_url):
    """Issue 22.2: `?prompt=## Session expired: [log in again](http://...)` draws neither a heading nor a live link."""
    import urllib.parse

    prompt = "ROMEO:\n\n## Session expired: [log in again](http://evil.example)\n\nhttp://evil.example"
    page.goto(f"{app_url}/?tokens=4&prompt={urllib.parse.quote(prompt)}", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Generation").first.wait_for(timeout=180_000)
    _settle(page)
    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
    _settle(page)
    main = page.locator('[data-testid="stMain"]')
    assert main.locator('a[href*="evil"]').count() == 0
    assert main.locator('h2:has-text("Session expired")').count() == 0
    assert main.locator("code").filter(has_text="## Session expired: [log in again](http://evil.example)").count() >= 1
    assert main.get_by_text("## Session expired: [log in again](http://evil.example)").count() >= 2  # both panes, literally


def test_out_of_range_seed_in_chromium(page, app_url):
    """Issue 11.15: typing a seed out of range says so at the top and draws no stale chart."""
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Generation").first.wait_for(timeout=180_000)
    _settle(page)
    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
    box = page.locator('[data-testid="stSidebar"]').get_by_label("Seed (0 to 2,147,483,647)")
    box.fill("99999999999")
    box.press("Enter")
    page.get_by_text("Nothing was run").first.wait_for(timeout=60_000)
    _settle(page)
    page.screenshot(path=str(SHOTS / "generation_bad_seed.png"), full_page=True)
    assert page.locator(".js-plotly-plot").count() == 0


def test_exported_figure_draws_offline(page, tmp_path):
    """Issue 11.5: an exported HTML figure draws with every network request refused."""
    import plotly.graph_objects as go

    from inspector.views.exports import figures_html

    path = tmp_path / "figure.html"
    path.write_text(figures_html({"test": go.Figure(go.Bar(x=[1, 2, 3], y=[3, 1, 2]))}, {"prompt": "x"}), encoding="utf-8")
    blocked = []
    page.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith("file:") else (
            blocked.append(route.request.url), route.abort()
        )
    )
    try:
        page.goto(path.as_uri(), wait_until="load")
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
        assert page.locator(".js-plotly-plot .bars path").count() == 3
    finally:
        page.unroute("**/*")
    assert blocked == []  # it did not even try to fetch anything


def test_bundle_downloads_in_chromium(page, app_url, tmp_path):
    """The sidebar's one-click bundle (issue 11.7) downloads a zip with every part, built on click."""
    import json
    import zipfile

    page.goto(f"{app_url}/spike_activity", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Spike activity").first.wait_for(timeout=180_000)
    _settle(page)
    with page.expect_download(timeout=120_000) as info:
        page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Download everything (zip)").click()
    path = tmp_path / "bundle.zip"
    info.value.save_as(path)
    names = set(zipfile.ZipFile(path).namelist())
    assert {"run.json", "columns.csv", "figures.html", "tables/tokens.csv", "tables/token_metrics.parquet"} <= names
    assert json.loads(zipfile.ZipFile(path).read("run.json"))["model"]


def test_learn_saturation_experiment_in_chromium(page, app_url):
    """The Learn tour's saturation step with its experiment run: the squeezed state range clips."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{app_url}/learn", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Learn").first.wait_for(timeout=180_000)
    _settle(page)
    page.get_by_text("5. Saturation").click()
    _settle(page)
    page.get_by_role("button", name="Run the experiment").click()
    page.get_by_text("With the squeezed state range").wait_for(timeout=300_000)
    _settle(page)
    page.screenshot(path=str(SHOTS / "learn_saturation.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_bad_checkpoint_path_in_chromium(page, app_url):
    """A path whose ~user does not exist: a message in the sidebar, no traceback."""
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Generation").first.wait_for(timeout=180_000)
    _settle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.locator('[data-testid="stSelectbox"]').first.click()
    page.get_by_text("Local checkpoint directory…").click()
    _settle(page)
    box = sidebar.get_by_role("textbox", name="Checkpoint directory")
    box.fill("~nosuchuser/models")
    box.press("Enter")
    _settle(page)
    page.screenshot(path=str(SHOTS / "bad_path.png"), full_page=True)
    assert "no user 'nosuchuser'" in page.inner_text("body")
    assert "Traceback" not in page.inner_text("body")


TOUR = [("1. Weights", None), *TOUR_PREDICTIONS]


def _screens(page, stem: str, step_px: int = 600) -> int:
    """Screenshots of the whole scrolled page as a user sees it, window by window: Streamlit scrolls
    inside its main element, so a full-page screenshot would show only the first window."""
    main = page.locator('[data-testid="stMain"]')
    main.evaluate("e => e.scrollTo(0, 0)")
    page.wait_for_timeout(400)
    shots = 0
    while True:
        page.screenshot(path=str(SHOTS / f"{stem}_{shots}.png"))
        shots += 1
        if main.evaluate("e => e.scrollTop + e.clientHeight >= e.scrollHeight - 2") or shots >= 8:
            return shots
        main.evaluate(f"e => e.scrollBy(0, {step_px})")
        page.wait_for_timeout(500)


def test_learn_tour_at_1300_in_chromium(app_url):
    """Issue 21.5: every step of the tour at 1300 x 900, reached as a user does (the sidebar's
    navigation), its prediction answered (and step 5's experiment run): screenshots window by window,
    nothing wider than the window, the data-flow map on screen after scrolling."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("heading", name="Generation").first.wait_for(timeout=180_000)
        _settle(page)
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Learn").click()
        page.get_by_role("heading", name="Learn").first.wait_for(timeout=180_000)
        _settle(page)
        tour_map = page.locator(".st-key-tour_map")
        for number, (label, question) in enumerate(TOUR, start=1):
            tour_map.get_by_text(label, exact=True).click()
            _settle(page)
            if question is not None:
                page.locator(f".st-key-{question}").locator("label").nth(1).click()  # the first option (0 is the question)
                page.locator('[data-testid="stAlert"]').first.wait_for(timeout=300_000)
                _settle(page)
            if number == 5:
                page.get_by_role("button", name="Run the experiment").click()
                page.get_by_text("With the squeezed state range").wait_for(timeout=300_000)
                _settle(page)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            tour_map.locator("svg").first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0, label
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 1300, label
            for frame in page.locator('[data-testid="stDataFrame"]').all():  # every column of a table is in view
                box = frame.bounding_box()
                assert box is not None and box["x"] + box["width"] <= 1300, label
            shots = _screens(page, f"learn_step{number}")
            if shots > 1:  # scrolled down: the map is still at the top of the window
                box = tour_map.bounding_box()
                assert box is not None and 0 <= box["y"] < 120, (label, box)
        browser.close()
