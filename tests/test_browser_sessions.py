"""Many browser sessions against ONE `streamlit run` server (issue 11: the server stall).

On a clean clone, one server once stopped answering new sessions after about ten in a row. This
drives 14 sessions through one server: one after another, four at once (two with identical settings,
so one waits for the other's run), closed abruptly while their analysis runs, switched to another
page mid-run, and checks that every one of them renders and that two more render in full at the end.
If one does not, the failure carries every server thread's stack (`inspector.serve.stack_dumps`).
"""

from __future__ import annotations

import pytest

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, browser_marks, server_stacks, streamlit_server

pytestmark = browser_marks()
WAIT_MS = 120_000  # a first render takes seconds; only a stalled server takes this long


def test_fourteen_sessions_against_one_server(tmp_path):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    log_path = tmp_path / "server.log"
    rendered: list[str] = []
    with streamlit_server(log_path) as (url, proc), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

        def open_session(path: str):
            context = browser.new_context(viewport={"width": 1200, "height": 1400})
            page = context.new_page()
            page.goto(url + path, wait_until="domcontentloaded")
            return context, page

        def renders(page, title: str, what: str) -> None:
            page.get_by_role("heading", name=title).first.wait_for(timeout=WAIT_MS)
            rendered.append(what)

        def charts(page) -> None:
            page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_MS)

        try:
            # 1. One after another, each tab closed as soon as it shows its heading (its run is going on).
            for seed in range(4):
                context, page = open_session(f"/?seed={seed}&tokens=8")
                renders(page, "Generation", f"closed mid-run, seed {seed}")
                context.close()
            # 2. Four at once; two have the same settings (one waits for the other's run); two are closed mid-run.
            group = [open_session(f"/?seed={seed}&tokens=8") for seed in (0, 4, 5, 0)]
            for (_context, page), seed in zip(group, (0, 4, 5, 0), strict=True):
                renders(page, "Generation", f"concurrent, seed {seed}")
            group[1][0].close()
            group[2][0].close()
            for context, page in (group[0], group[3]):
                charts(page)
                context.close()
            # 3. Another page chosen while the run goes on, then the tab closed.
            for seed in (6, 7, 1, 2):
                context, page = open_session(f"/?seed={seed}&tokens=8")
                renders(page, "Generation", f"switched mid-run, seed {seed}")
                page.locator('[data-testid="stSidebarNav"]').get_by_text("Spike activity").click()
                page.get_by_role("heading", name="Spike activity").first.wait_for(timeout=WAIT_MS)
                context.close()
            # 4. After all that, new sessions still render in full.
            for path, title in (("/", "Generation"), ("/spike_activity", "Spike activity")):
                context, page = open_session(path)
                renders(page, title, f"final {title}")
                charts(page)
                assert page.locator('[data-testid="stException"]').count() == 0
                context.close()
        except PlaywrightError as exc:
            pytest.fail(
                f"session {len(rendered) + 1} did not render after {len(rendered)} that did ({rendered}): {exc}\n"
                f"server log with every thread's stack:\n{server_stacks(proc, log_path)}"
            )
        finally:
            browser.close()
    assert len(rendered) == 14
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-5000:]
