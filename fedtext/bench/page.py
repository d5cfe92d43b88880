"""The page: `streamlit run app.py` timed to a usable page in Chromium (Playwright), and its
resident memory idle and while training."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fedtext.bench.machine import PeakRss, tree_rss
from fedtext.bench.results import ROOT, Results, Row, Settings, median


def _page_usable(page) -> bool:
    """Streamlit has finished its first run: no running indicator, no spinner, a widget to use."""
    return bool(
        page.evaluate(
            """() => {
            const q = (s) => document.querySelector(s);
            // Streamlit 1.52 marks a running script with an icon labelled "Running...".
            const running = q('[data-testid="stStatusWidget"] [aria-label="Running..."]');
            if (running) return false;
            if (q('[data-testid="stSpinner"]') || q('[data-testid="stSkeleton"]')) return false;
            const widgets = document.querySelectorAll(
              '[data-testid="stMain"] button:not([disabled]), [data-testid="stMain"] input,'
              + ' [data-testid="stMain"] textarea');
            return widgets.length > 0;
        }"""
        )
    )


PAGE_TIMEOUT_S = 120.0  # a page not usable by then counts as failed
BASE_TEXT = ".st-key-base_text pre"  # the base model's generation, drawn once TensorFlow is up
SETTLE_S = 5.0  # idle memory: resident size that changed less than 2% over this long
TRAIN_BUTTON = r"\btrain\b"  # the page's button that starts training (its icon may come first)


def run_page(settings: Settings, results: Results) -> None:
    """Seconds from `streamlit run` to a usable page, resident memory at idle and, where the
    page has a training button, while training from it."""
    app = ROOT / "app.py"
    skip = None if app.exists() else "app.py does not exist yet"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip = skip or "Playwright is missing: run scripts/setup.sh --test"
    rows = {
        "usable": Row(
            "page.usable_s",
            "3 cold start",
            "streamlit run to a usable page in Chromium",
            None,
            "s",
            15.0,
        ),
        "complete": Row(
            "page.base_text_s",
            "3 cold start",
            "streamlit run to the base model's text on the page (TensorFlow loads meanwhile)",
            None,
            "s",
        ),
        "idle": Row(
            "memory.page_idle_mb", "5 memory", "resident, page server + worker, idle", None, "MB"
        ),
        "train": Row(
            "memory.page_train_mb",
            "5 memory",
            "peak resident, page server + worker, training from the page",
            None,
            "MB",
            4096.0,
        ),
    }
    if skip:
        for row in rows.values():
            row.note = skip
        results.add(*rows.values())
        return
    times, complete, idle, trained = [], [], [], None
    with sync_playwright() as pw:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        browser = pw.chromium.launch(executable_path=chromium)  # open before the clock starts
        for attempt in range(1 if settings.quick else 3):
            timing = _time_page(browser, app, train=attempt == 0)
            times += [timing.usable] if timing.usable is not None else []
            complete += [timing.base_text] if timing.base_text is not None else []
            idle.append(timing.idle)
            trained = timing.peak if attempt == 0 else trained
        browser.close()
    for row, values in ((rows["usable"], times), (rows["complete"], complete)):
        row.value = median(values) if values else None
        row.note = (
            f"median of {len(values)} ({', '.join(f'{v:.1f}' for v in values)} s)"
            if values
            else f"none within {PAGE_TIMEOUT_S:.0f} s"
        )
    rows["idle"].value = median(idle) / 2**20
    rows["idle"].note = "once the page has loaded the base model and TFF (resident size settled)"
    if trained is None:
        rows["train"].note = "no button labelled Train on the page: see memory.cli_peak_mb"
    else:
        rows["train"].value = trained / 2**20
        rows["train"].note = "sampled for 60 s after pressing the page's Train button"
    results.add(*rows.values())


@dataclass
class PageTiming:
    usable: float | None  # seconds to a usable page
    base_text: float | None  # seconds to the base model's text
    idle: int  # bytes, page server and its children, settled
    peak: int | None  # bytes while training from the page


def _time_page(browser, app: Path, train: bool) -> PageTiming:
    """One cold start of the page, timed from `streamlit run`."""
    import re

    import portpicker

    port = portpicker.pick_unused_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.headless=true",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    page = browser.new_page()
    since_start = lambda: time.perf_counter() - start  # noqa: E731
    try:
        while since_start() < PAGE_TIMEOUT_S:
            try:
                page.goto(f"http://localhost:{port}", timeout=2000)
                break
            except Exception:  # Playwright's error: the server is not listening yet
                time.sleep(0.1)
        while not _page_usable(page) and since_start() < PAGE_TIMEOUT_S:
            time.sleep(0.05)
        usable = since_start() if since_start() < PAGE_TIMEOUT_S else None
        while not page.locator(BASE_TEXT).count() and since_start() < PAGE_TIMEOUT_S:
            time.sleep(0.05)
        base_text = since_start() if since_start() < PAGE_TIMEOUT_S else None
        idle = _settled_rss(proc.pid)
        peak = None
        button = page.get_by_role("button", name=re.compile(TRAIN_BUTTON, re.I)).first
        if train and usable is not None and button.count():
            with PeakRss(proc.pid) as sampler:
                button.click()
                time.sleep(60)
            peak = sampler.peak
        return PageTiming(usable, base_text, idle, peak)
    finally:
        page.close()
        stop_process_group(proc)


def _settled_rss(pid: int, timeout: float = 90.0) -> int:
    """Resident bytes of a process tree once they change by less than 2% over SETTLE_S: the
    page keeps loading (TFF, the compiled rounds) after its first draw."""
    samples = [tree_rss(pid)]
    deadline = time.monotonic() + timeout
    window = int(SETTLE_S)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        samples.append(tree_rss(pid))
        if len(samples) > window and abs(samples[-1] - samples[-1 - window]) < 0.02 * samples[-1]:
            break
    return samples[-1]


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True and everything it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
