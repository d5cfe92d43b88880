"""The page: `streamlit run app.py` timed to a usable page in Chromium (Playwright), and its
resident memory idle and while training."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fedtext.bench.machine import ForeignLoad, PeakRss, tree_rss
from fedtext.bench.results import ROOT, Results, Row, Settings, median

# Streamlit has finished its run and the browser has drawn it: no running indicator, no spinner,
# no box left for a deferred element, a widget to use.
PAGE_DRAWN_JS = """() => {
    const q = (s) => document.querySelector(s);
    // Streamlit 1.52 marks a running script with an icon labelled "Running...".
    const running = q('[data-testid="stStatusWidget"] [aria-label="Running..."]');
    if (running) return false;
    if (q('[data-testid="stSpinner"]') || q('[data-testid="stSkeleton"]')) return false;
    // A visitor's first run leaves boxes for the charts and tables (ui/first_paint.py).
    if (q('[class*="st-key-later_"]')) return false;
    const widgets = document.querySelectorAll(
      '[data-testid="stMain"] button:not([disabled]), [data-testid="stMain"] input,'
      + ' [data-testid="stMain"] textarea');
    return widgets.length > 0;
}"""


def _page_drawn(page) -> bool:
    return bool(page.evaluate(PAGE_DRAWN_JS))


PAGE_TIMEOUT_S = 120.0  # a page not usable by then counts as failed
TRAIN_TIMEOUT_S = 600.0  # the default run from the page, sampled for memory until it ends
BASE_TEXT = ".st-key-base_text pre"  # the base model's generation
SETTLE_S = 5.0  # idle memory: resident size that changed less than 2% over this long
TRAIN_BUTTON = r"\btrain\b"  # the page's button that starts training (its icon may come first)
USABLE_RATIO_MAX = 0.6  # issue 13: usable in at most 0.6x the time `import tensorflow` takes
USABLE_OVER_BARE_MAX = 1.5  # issue 24: a visitor's page usable in at most 1.5x a bare page's
VISITOR_PAIRS = 5  # a bare page's visitor and the real page's, in turn; medians over these
# The floor under any Streamlit page on this machine: a page with nothing but a Train button and a
# text where the base model's goes, timed like the real one.
BARE_PAGE = """import streamlit as st
st.button("Train")
st.container(key="base_text").code("The base model's text would be here.")
"""
IMPORT_TF = (
    "import time; t = time.perf_counter(); import tensorflow; print(time.perf_counter() - t)"
)


def run_page(settings: Settings, results: Results) -> None:
    """Seconds from `streamlit run` to a usable page (its widgets drawn, Train enabled and the
    base model's text shown) against `import tensorflow` in the same run; resident memory at
    idle and while training from the page."""
    app = ROOT / "app.py"
    skip = None if app.exists() else "app.py does not exist yet"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip = skip or "Playwright is missing: run scripts/setup.sh --test"
    rows = {
        "first": Row(
            "page.first_draw_s",
            "3 cold start",
            "streamlit run to the whole page drawn in Chromium (its first run ended, charts too)",
            None,
            "s",
        ),
        "usable": Row(
            "page.usable_s",
            "3 cold start",
            "streamlit run to a usable page: Train enabled, the base model's text shown",
            None,
            "s",
        ),
        "import": Row(
            "page.import_tf_s",
            "3 cold start",
            "`import tensorflow` in a fresh Python, the same run",
            None,
            "s",
        ),
        "bare": Row(
            "page.bare_streamlit_s",
            "3 cold start",
            "streamlit run to a bare page (a Train button and a text, nothing else): the floor",
            None,
            "s",
        ),
        "bare_ratio": Row(
            "page.usable_bare_ratio",
            "3 cold start",
            "usable page / bare page",
            None,
            "x",
        ),
        "ratio": Row(
            "page.usable_ratio",
            "3 cold start",
            "usable page / `import tensorflow`",
            None,
            "x",
            USABLE_RATIO_MAX,
        ),
        "visitor": Row(
            "page.visitor_usable_s",
            "3 cold start",
            "a new visitor on the running server (a classroom's or a Space's): opening the "
            "address to a usable page",
            None,
            "s",
        ),
        "visitor_bare": Row(
            "page.visitor_bare_s",
            "3 cold start",
            "a new visitor on a running bare page's server (a Train button and a text), timed "
            "like the real page's visitor and in turn with it: the floor",
            None,
            "s",
        ),
        "over_bare": Row(
            "page.usable_over_bare",
            "3 cold start",
            "a new visitor's usable page / a bare page's, both servers running, in turn",
            None,
            "x",
            USABLE_OVER_BARE_MAX,
        ),
        "visitor_ratio": Row(
            "page.visitor_ratio",
            "3 cold start",
            "visitor's usable page / `import tensorflow`",
            None,
            "x",
        ),
        "idle": Row(
            "memory.page_idle_mb", "5 memory", "resident, page server + worker, idle", None, "MB"
        ),
        "train": Row(
            "memory.training_peak_mb",
            "5 memory",
            "peak resident, page server + worker, training from the page",
            None,
            "MB",
            3072.0,
        ),
    }
    if skip:
        for row in rows.values():
            row.note = skip
        results.add(*rows.values())
        return
    first, usable, imports, bare, idle = [], [], [], [], []
    trained = None
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as scratch:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        browser = pw.chromium.launch(executable_path=chromium)  # open before the clock starts
        bare_app = Path(scratch) / "bare.py"
        bare_app.write_text(BARE_PAGE)
        for attempt in range(1 if settings.quick else 3):
            imports.append(_time_import_tensorflow())  # interleaved: the same machine state
            bare_timing = _time_page(browser, bare_app, train=False, settle=False)
            bare += [bare_timing.usable] if bare_timing.usable is not None else []
            timing = _time_page(browser, app, train=attempt == 0)
            first += [timing.first_draw] if timing.first_draw is not None else []
            usable += [timing.usable] if timing.usable is not None else []
            idle.append(timing.idle)
            trained = timing.peak if attempt == 0 else trained
        visitors = time_visitors(browser, app, bare_app, 2 if settings.quick else VISITOR_PAIRS)
        browser.close()
    for row, values in (
        (rows["first"], first),
        (rows["usable"], usable),
        (rows["visitor"], visitors.page),
        (rows["visitor_bare"], visitors.bare),
        (rows["import"], imports),
        (rows["bare"], bare),
    ):
        row.value = median(values) if values else None
        row.note = (
            f"median of {len(values)} ({', '.join(f'{v:.1f}' for v in values)} s)"
            if values
            else f"none within {PAGE_TIMEOUT_S:.0f} s"
        )
    if rows["usable"].value is not None:
        rows["ratio"].value = rows["usable"].value / rows["import"].value
        if rows["visitor"].value is not None:
            rows["visitor_ratio"].value = rows["visitor"].value / rows["import"].value
        if rows["bare"].value:
            rows["bare_ratio"].value = rows["usable"].value / rows["bare"].value
    floor, over_bare = rows["visitor_bare"].value, rows["over_bare"]
    if rows["visitor"].value is not None and floor:
        over_bare.value = rows["visitor"].value / floor
        over_bare.note = f"floor {floor:.2f} s, the same run; {visitors.load}"
    rows["idle"].value = median(idle) / 2**20
    rows["idle"].note = "once the page has loaded the base model and TFF (resident size settled)"
    if trained is None:
        rows["train"].note = "no button labelled Train on the page: see memory.cli_peak_mb"
    else:
        rows["train"].value = trained / 2**20
        rows["train"].note = "sampled from pressing the page's Train button to the run's end"
    results.add(*rows.values())


def _time_import_tensorflow() -> float:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_TF], capture_output=True, text=True, check=True, timeout=300
    )
    return float(out.stdout.strip().splitlines()[-1])


@dataclass
class PageTiming:
    first_draw: float | None  # seconds to the whole page drawn
    usable: float | None  # seconds to Train enabled and the base model's text
    idle: int  # bytes, page server and its children, settled
    peak: int | None  # bytes while training from the page


def _start_server(app: Path) -> tuple[subprocess.Popen, int]:
    """`streamlit run app` on a free port, in a process group of its own, with a store of runs
    of its own: a run stored by an earlier benchmark would come back at once, not train."""
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
    runs = tempfile.mkdtemp(prefix="fedtext-bench-runs-")  # removed by stop_process_group
    env = {**os.environ, "FEDTEXT_DATA": runs}
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    proc.scratch = runs
    return proc, port


def _time_page(browser, app: Path, train: bool, settle: bool = True) -> PageTiming:
    """One cold start of the page, timed from `streamlit run`; `settle` also waits for the whole
    page and its resident size to settle."""
    start = time.perf_counter()
    proc, port = _start_server(app)
    page = browser.new_page()
    since_start = lambda: time.perf_counter() - start  # noqa: E731
    button = page.get_by_role("button", name=re.compile(TRAIN_BUTTON, re.I)).first

    def wait_until(ready) -> float | None:
        while not ready() and since_start() < PAGE_TIMEOUT_S:
            time.sleep(0.05)
        return since_start() if since_start() < PAGE_TIMEOUT_S else None

    try:
        _open(page, port, since_start)
        # The usable page: Train enabled and the base model's text shown, whatever is
        # still drawing below them (Plotly's first chart takes the browser seconds).
        usable = wait_until(lambda: _usable(page))
        if not settle:
            return PageTiming(None, usable, 0, None)
        first_draw = wait_until(lambda: _page_drawn(page))
        idle = _settled_rss(proc.pid)
        peak = None
        if train and usable is not None:
            # Until the run has ended: the worker's memory grows over the rounds.
            finished = page.get_by_text(re.compile(r"Trained \d+ rounds? in"))
            with PeakRss(proc.pid) as sampler:
                button.click()
                deadline = time.monotonic() + TRAIN_TIMEOUT_S
                while finished.count() == 0 and time.monotonic() < deadline:
                    time.sleep(1.0)
            peak = sampler.peak
        return PageTiming(first_draw, usable, idle, peak)
    finally:
        page.close()
        stop_process_group(proc)


def _open(page, port: int, since_start) -> None:
    while since_start() < PAGE_TIMEOUT_S:
        try:
            page.goto(f"http://localhost:{port}", timeout=2000)
            return
        except Exception:  # Playwright's error: the server is not listening yet
            time.sleep(0.1)


@dataclass
class VisitorTimes:
    page: list[float]  # seconds to a usable page, new visitors on the real page's server
    bare: list[float]  # the same on a bare page's server, timed in turn with them
    load: str  # what else ran meanwhile


def time_visitors(browser, app: Path, bare_app: Path, pairs: int) -> VisitorTimes:
    """New visitors (a classroom's, a Space's) on two running servers, the real page's and a bare
    page's, timed in turn the same way: from opening the address to a usable page. Both servers
    have served a first page and settled; each visitor's page finishes drawing before the next
    opens, so its deferred charts do not land in the next one's time."""
    started = time.perf_counter()
    servers = [_start_server(app), _start_server(bare_app)]
    times = VisitorTimes([], [], "")
    try:
        for proc, port in servers:  # each one's first page: the engine, TensorFlow, the caches
            page = browser.new_page()
            _open(page, port, lambda: time.perf_counter() - started)
            while not _page_drawn(page) and time.perf_counter() - started < PAGE_TIMEOUT_S:
                time.sleep(0.1)
            page.close()
            _settled_rss(proc.pid)
        load = ForeignLoad()
        before = os.getloadavg()[0]
        for _ in range(pairs):
            for port, into in ((servers[1][1], times.bare), (servers[0][1], times.page)):
                seconds = _time_visitor(browser, port)
                into += [seconds] if seconds is not None else []
        load.stop()
        foreign = load.summary()["foreign_cores_mean"]
        times.load = (
            f"load average {before:.1f} -> {os.getloadavg()[0]:.1f}, other processes "
            f"{foreign:.1f} cores, on {os.cpu_count()}"
        )
    finally:
        for proc, _ in servers:
            stop_process_group(proc)
    return times


def _usable(page) -> bool:
    button = page.get_by_role("button", name=re.compile(TRAIN_BUTTON, re.I)).first
    return page.locator(BASE_TEXT).count() > 0 and button.count() > 0 and button.is_enabled()


def _time_visitor(browser, port: int) -> float | None:
    """Seconds from opening the page in a new tab (a new Streamlit session) on a server that
    has settled to that tab's usable page; then, untimed, until the whole page is drawn."""
    page = browser.new_page()
    try:
        start = time.perf_counter()
        page.goto(f"http://localhost:{port}", timeout=PAGE_TIMEOUT_S * 1000)
        while not _usable(page):
            if time.perf_counter() - start > PAGE_TIMEOUT_S:
                return None
            time.sleep(0.05)
        usable = time.perf_counter() - start
        while not _page_drawn(page) and time.perf_counter() - start < PAGE_TIMEOUT_S:
            time.sleep(0.1)
        return usable
    finally:
        page.close()


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
    """Stop a process started with start_new_session=True and everything it started, and
    remove its scratch directory, if it has one."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
    if getattr(proc, "scratch", None):
        shutil.rmtree(proc.scratch, ignore_errors=True)
