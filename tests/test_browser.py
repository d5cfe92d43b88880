"""One real browser over `streamlit run app.py`: a one-round training, its charts, both
generations, a reload that keeps the run, a screenshot of it, Stop, and a run followed to its
end after the page's poll stopped."""

from __future__ import annotations

import re
import time

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, USABLE_JS, my_workers

# Every timer of the page's JavaScript but the watchdog's, Streamlit's poll among them; whether
# the page still showed its run as running then (else its end would prove nothing).
STOP_EVERY_TIMER_BUT_THE_WATCHDOGS = """() => {
    const boxes = [...document.querySelectorAll('.st-key-poll_watchdog *')];
    const watchdog = boxes.map(box => box.shadowRoot?.fedtextTimer).find(Boolean);
    const last = setTimeout(() => {}, 0);
    for (let id = 1; id <= last; id++) {
        if (id !== watchdog) clearInterval(id);
    }
    return {watchdog: !!watchdog, running: /of 30 running/.test(document.body.innerText)};
}"""


def test_a_visitor_trains_one_round_and_compares_the_models(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run scripts/setup.sh --test"
    url, started, marker = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 1720},
        )
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            while True:  # the server takes a moment to listen
                try:
                    page.goto(f"{url}/?client_lr=0.3", timeout=2000)  # a link's setup
                    break
                except Exception:
                    assert time.perf_counter() - started < 120, "streamlit did not start"
                    time.sleep(0.2)
            page.wait_for_function(USABLE_JS, timeout=120_000, polling=100)
            cold_start = time.perf_counter() - started
            print(f"cold start to a usable page: {cold_start:.1f} s")

            rounds = page.get_by_label("Rounds")
            rounds.fill("1")
            rounds.press("Enter")
            page.wait_for_url("**rounds=1**", timeout=30_000)  # the setup is in the link
            assert "client_lr=0.3" in page.url  # and so is the link's own
            page.locator(".st-key-train").get_by_role("button", name="Train").click()
            page.locator(".st-key-tuned_text pre").wait_for(timeout=180_000)
            expect(page.get_by_text("Trained 1 round in")).to_be_visible()

            # Loss and accuracy, base model as round 0 and then round 1, plus the data chart.
            points = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
                .map(p => (p.data || []).filter(t => t.name === 'held-out speeches')
                .map(t => t.x.length)).flat()""")
            assert points == [2, 2]
            assert page.locator('[data-testid="stPlotlyChart"] .main-svg').count() >= 3
            prompt = page.get_by_label("Prompt").input_value()
            base = page.locator(".st-key-base_text pre").inner_text()
            tuned = page.locator(".st-key-tuned_text pre").inner_text()
            assert base.startswith(prompt.strip()) and tuned.startswith(prompt.strip())
            assert base != tuned
            assert "run=" in page.url
            assert my_workers(marker), (
                "no TFF worker of this server found: the cleanup check below would prove nothing"
            )

            page.mouse.move(0, 0)  # no tooltip in the picture
            # Into the test's folder: a test never writes tracked files (the README's picture
            # comes from the shipped model: scripts/try_page.py --screenshot).
            page.screenshot(path=str(tmp_path / "page.png"))

            page.reload()  # a finished run survives a reload: it is in the link and on disk
            page.locator(".st-key-tuned_text pre").wait_for(timeout=60_000)
            assert page.locator(".st-key-tuned_text pre").inner_text() == tuned

            # Stop ends a longer run after the current round and keeps the model so far.
            # A tiny round takes well under the second between the page's polls, so the run
            # is long enough for Stop to land before its end, whichever round it lands in.
            rounds.fill("30")
            rounds.press("Enter")
            page.wait_for_url("**rounds=30**", timeout=30_000)
            page.locator(".st-key-train").get_by_role("button", name="Train").click()
            running = page.get_by_text(re.compile(r"Round \d+ of 30 running"))
            expect(running).to_be_visible(timeout=120_000)
            seen = int(re.search(r"Round (\d+)", running.inner_text()).group(1))
            page.locator(".st-key-stop").get_by_role("button", name="Stop").click()
            expect(page.get_by_text("the model so far is kept")).to_be_visible(timeout=120_000)
            ended = page.get_by_text("Ended after round").inner_text()
            # It ends after the round that was running or a later one (a loaded machine may
            # take a round or two to deliver the click), but never after all 30.
            last = int(re.search(r"Ended after round (\d+) of 30", ended).group(1))
            assert seen <= last < 30, ended
            expect(page.locator(".st-key-tuned_text pre")).to_be_visible()
            earlier = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
                .map(p => (p.data || []).map(t => t.name)).flat()""")
            assert "run 1 (held-out)" in earlier  # the one-round run, for comparison

            # A page whose poll stops for good (seen once with Streamlit's own timer, see
            # ui/poll.py) still follows its run to the end: the watchdog reruns the page.
            page.locator(".st-key-train").get_by_role("button", name="Train").click()
            expect(page.get_by_text(re.compile(r"Round \d+ of 30 running"))).to_be_visible(
                timeout=120_000
            )
            stopped = page.evaluate(STOP_EVERY_TIMER_BUT_THE_WATCHDOGS)
            assert stopped["watchdog"] and stopped["running"], stopped
            expect(page.get_by_text("Trained 30 rounds in")).to_be_visible(timeout=180_000)
        finally:
            browser.close()
