"""A visitor's first page in a real browser at 1280 px: the charts and tables come in a second
run without disturbing the link's values, the quick picks read on one line each, and Streamlit's
Deploy button is not shown to visitors."""

from __future__ import annotations

import time

import pytest

from fedtext.text import memorisation
from fedtext.text.prompt import TUTORIAL_PROMPT
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, USABLE_JS

WIDTH = 1280  # a laptop's browser: the narrowest the page is laid out for
QUICK_PICKS = ("Tutorial's 2", "Random", "Top N", "Whole play")
# Lines of text a button's label takes: the distinct tops of its text's boxes.
LABEL_LINES_JS = """(button) => {
    const tops = new Set();
    const walker = document.createTreeWalker(button, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const range = document.createRange();
        range.selectNodeContents(walker.currentNode);
        for (const box of range.getClientRects()) {
            if (box.width > 0) tops.add(Math.round(box.top));
        }
    }
    return tops.size;
}"""
# The whole page: its runs ended and no box left waiting for a chart or a table.
DRAWN_JS = """() => {
    const q = (s) => document.querySelector(s);
    return !q('[data-testid="stStatusWidget"] [aria-label="Running..."]')
        && !q('[class*="st-key-later_"]')
        && document.querySelectorAll('[data-testid="stPlotlyChart"]').length >= 3;
}"""


def open_usable(tab, address: str, started: float) -> None:
    """Opens the address once the server listens, and waits for a usable page."""
    while True:
        try:
            tab.goto(address, timeout=2000)
            break
        except Exception:
            assert time.perf_counter() - started < 120, "streamlit did not start"
            time.sleep(0.2)
    tab.wait_for_function(USABLE_JS, timeout=120_000, polling=100)


@pytest.fixture
def page(server, tmp_path):
    """A Chromium page 1280 px wide on the served page, opened with a link's setup."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run scripts/setup.sh --test"
    url, started, _ = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            viewport={"width": WIDTH, "height": 800},
        )
        try:
            tab = browser.pages[0] if browser.pages else browser.new_page()
            open_usable(
                tab,
                f"{url}/?clients=KING_LEAR_FOOL,KING_LEAR_KING_LEAR&client_lr=0.3&clip=0",
                started,
            )
            yield tab
        finally:
            browser.close()


def test_the_charts_come_after_and_the_links_values_stay(page):
    page.wait_for_function(DRAWN_JS, timeout=120_000, polling=200)
    # The second run replaced the first's widgets: each still shows the link's value, not its
    # default (a rerun asked for before the first run's widgets were mounted lost them).
    chips = page.locator('[data-testid="stMultiSelect"] [data-baseweb="tag"]')
    assert chips.count() == 2
    rate = page.get_by_role("slider", name="Client learning rate")
    assert rate.get_attribute("aria-valuetext") == "0.3"
    assert page.get_by_role("slider", name="Gradient clipping").get_attribute("aria-valuetext") == (
        "off"
    )
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1  # the clients' table
    # Widgets the first run left out take the visitor's values when they come.
    assert page.get_by_label("Prompt").input_value() == TUTORIAL_PROMPT
    assert page.get_by_label("Shortest copy").input_value() == str(memorisation.MIN_CHARS)
    page.get_by_text("Averaging, privacy, what the server sees").click()
    assert page.get_by_role("radio", name="weighted").is_checked()


def test_quick_picks_read_on_one_line_at_1280_px(page):
    # Read on the page as it stays, after its second run: the wrapping is the layout's, and a
    # button counted in the middle of a run once was not there (CI, a slower machine).
    page.wait_for_function(DRAWN_JS, timeout=120_000, polling=200)
    buttons = page.get_by_role("button").all_inner_texts()
    for label in QUICK_PICKS:
        button = page.get_by_role("button", name=label, exact=True)
        assert button.count() == 1, f"no {label!r} among the buttons {buttons}"
        assert button.evaluate(LABEL_LINES_JS) == 1, f"{label!r} wraps at {WIDTH} px"


def test_visitors_see_no_deploy_button(page):
    page.wait_for_function(DRAWN_JS, timeout=120_000, polling=200)
    assert page.locator('[data-testid="stMainMenu"]').count() == 1  # the toolbar is drawn
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
    assert page.get_by_role("button", name="Deploy").count() == 0


def test_a_click_is_kept_when_the_second_run_lands_in_its_run(server, tmp_path):
    """Train pressed just after the first run: the browser's request for the second run is held
    back by the test until the click's run has begun, so it lands in the middle of that run (as
    it does on a loaded machine, where a click once started nothing). The run still starts,
    and the texts keep the visitor's prompt."""
    from playwright.sync_api import sync_playwright
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    url, started, _ = server
    race = {"held": None, "clicked": False, "released": False}

    def route(page_socket):
        server_socket = page_socket.connect_to_server()

        def from_page(message):
            back = BackMsg()
            back.ParseFromString(message)
            widgets = back.rerun_script.widget_states.widgets
            if any("first_paint" in w.id and w.WhichOneof("value") for w in widgets):
                if race["held"] is None and not race["released"]:
                    race["held"] = message  # the second run's request: sent once Train's has begun
                    return
            if any(w.id.endswith("-train") and w.trigger_value for w in widgets):
                race["clicked"] = True
            server_socket.send(message)

        def from_server(message):
            forward = ForwardMsg()
            forward.ParseFromString(message)
            if race["clicked"] and race["held"]:
                server_socket.send(race["held"])  # Train's run is drawing: now the second
                race["held"], race["released"] = None, True
            page_socket.send(message)

        page_socket.on_message(from_page)
        server_socket.on_message(from_server)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": WIDTH, "height": 800})
            tab.route_web_socket("**/_stcore/stream", route)
            open_usable(tab, f"{url}/?rounds=1", started)
            for _ in range(300):  # it asks two animation frames after the first run is drawn
                if race["held"] is not None:
                    break
                tab.wait_for_timeout(100)
            assert race["held"] is not None, "the browser never asked for the second run"
            tab.locator(".st-key-train").get_by_role("button", name="Train").click()
            tab.wait_for_selector(".st-key-tuned_text pre", timeout=300_000)
            assert race["released"]
            assert tab.get_by_label("Prompt").input_value() == TUTORIAL_PROMPT
            assert tab.get_by_text("Cannot generate").count() == 0
        finally:
            browser.close()
