"""A visitor's default run in a real browser with the shipped model: open the page, press Train,
wait for the run, and report what the page shows (times, accuracy, both texts, their style
scores); optionally a screenshot.

    .venv/bin/python scripts/try_page.py [--screenshot docs/screenshot.png] [--baseline]
    .venv/bin/python scripts/try_page.py --query "noise=0.3&rounds=5" --copies --copy-chars 6 \
        --screenshot docs/privacy.png        # a link's setup: here the privacy dial
    .venv/bin/python scripts/try_page.py --client-figures --personalise --height 3000 \
        --screenshot docs/clients.png        # who moved the model, and a model per character
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--baseline", action="store_true", help="then run the baseline too")
    parser.add_argument("--port", type=int, default=8599)
    parser.add_argument("--query", default="", help="a link's setup, e.g. 'noise=0.1&rounds=5'")
    parser.add_argument(
        "--copies", action="store_true", help="mark copies rather than colour by style"
    )
    parser.add_argument("--copy-chars", type=int, default=None, help="the shortest copy marked")
    parser.add_argument("--client-figures", action="store_true", help="measure each client")
    parser.add_argument("--height", type=int, default=2000, help="the browser window's height")
    parser.add_argument(
        "--personalise", action="store_true", help="then a model for the first character"
    )
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    data = tempfile.mkdtemp(prefix="fedtext-try-")
    env = {**os.environ, "FEDTEXT_DATA": data}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless=true",
            f"--server.port={args.port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": args.height})
            started = time.perf_counter()
            while True:
                try:
                    page.goto(f"http://localhost:{args.port}/?{args.query}", timeout=2000)
                    break
                except Exception:
                    if time.perf_counter() - started > 120:
                        raise
                    time.sleep(0.3)
            page.locator(".st-key-base_text pre").wait_for(timeout=180_000)
            train = page.locator(".st-key-train").get_by_role("button", name="Train")
            expect(train).to_be_enabled(timeout=180_000)
            if args.client_figures:
                page.get_by_text("Averaging, privacy, per-client figures").click()
                page.get_by_text("Measure each client").click()
                time.sleep(1)
            time.sleep(2)  # the engine compiles its other rounds meanwhile; as a visitor waits
            clicked = time.perf_counter()
            train.click()
            page.locator(".st-key-tuned_text pre").wait_for(timeout=600_000)
            done = page.get_by_text(re.compile(r"Trained \d+ rounds? in"))
            expect(done).to_be_visible(timeout=60_000)
            waited = time.perf_counter() - clicked
            print(f"page usable, then Train clicked at {clicked - started:.1f} s")
            print(f"click to fine-tuned text: {waited:.1f} s")
            print(done.inner_text())
            for name in ("base_text", "tuned_text"):
                print(f"\n--- {name}:\n{page.locator(f'.st-key-{name} pre').inner_text()}")
            for meter in page.get_by_text(re.compile("^Style meter:")).all():
                print(meter.inner_text())
            for probe in page.get_by_text(re.compile("^Copied from the")).all():
                print(probe.inner_text())
            if args.baseline:
                page.get_by_role("button", name="Centralised baseline").click()
                caption = page.get_by_text(re.compile(r"\(ratio \d"))
                caption.wait_for(timeout=600_000)
                print(caption.inner_text())
            if args.copy_chars is not None:
                page.get_by_label("Shortest copy").fill(str(args.copy_chars))
                page.get_by_label("Shortest copy").press("Enter")
                time.sleep(3)
                for probe in page.get_by_text(re.compile("^Copied from the")).all():
                    print(probe.inner_text())
            if args.client_figures:  # the panel's most telling figure: who agreed with whom
                page.get_by_text("share of the average").first.click()
                page.get_by_text("agreement with the average (cosine)").first.click()
                time.sleep(2)
            if args.personalise:
                started_own = time.perf_counter()
                page.get_by_role("button", name="Fine-tune on their lines").click()
                page.locator(".st-key-personal_text pre").wait_for(timeout=600_000)
                own = page.get_by_text(re.compile(r"'s own model"))
                print(f"\n{own.first.inner_text()} ({time.perf_counter() - started_own:.0f} s)")
                print(page.locator(".st-key-personal_text pre").inner_text())
            if args.screenshot:
                page.get_by_text("Mark copies" if args.copies else "Colour by style").click()
                time.sleep(3)
                page.screenshot(path=str(args.screenshot), full_page=True)
                print(f"screenshot: {args.screenshot}")
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
