"""A classroom on one server: 8 browsers at once on `streamlit run app.py`, 3 training and 5
generating. Every training run must end as it would alone, every generation must be exactly
what the same request gives alone, and the test prints generation latency under load."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, USABLE_JS

TRAINERS, GENERATORS = 3, 5
CLIENTS = "KING_LEAR_FOOL,KING_LEAR_KENT"
ROUNDS = 3


async def open_page(browser, url: str):
    context = await browser.new_context(viewport={"width": 1280, "height": 1400})
    page = await context.new_page()
    # Eight pages, the server and the TFF worker share the machine's cores: a click may wait
    # long for its page's turn (30 s, Playwright's default, was once too short on 2 cores).
    page.set_default_timeout(120_000)
    await page.goto(url, timeout=120_000)
    await page.wait_for_function(USABLE_JS, timeout=180_000, polling=200)
    return page


async def train(browser, url: str, seed: int) -> dict:
    page = await open_page(browser, f"{url}/?clients={CLIENTS}&rounds={ROUNDS}&seed={seed}")
    await page.locator(".st-key-train").get_by_role("button", name="Train").click()
    saw_queue = False
    deadline = time.monotonic() + 600
    body = ""
    while time.monotonic() < deadline:
        body = await page.locator("body").inner_text()
        saw_queue |= "Waiting for the training queue" in body
        if f"Trained {ROUNDS} rounds in" in body:
            break
        assert "Cannot start training" not in body and "Traceback" not in body, body[-500:]
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"training run with seed {seed} did not finish: {body[-400:]}")
    run_id = parse_qs(urlparse(page.url).query)["run"][0]
    await page.context.close()
    return {"seed": seed, "run_id": run_id, "saw_queue": saw_queue}


async def generate_while(browser, url: str, busy: asyncio.Event, samples: list) -> list:
    """Click "Again" over and over while training runs; time each new text's arrival."""
    page = await open_page(browser, url)
    base = page.locator(".st-key-base_text pre")
    seen = []
    while busy.is_set() or len(seen) < 3:
        await asyncio.sleep(0.5)  # a student reads a little before asking again
        before = await base.inner_text()
        start = time.perf_counter()
        await page.get_by_role("button", name="Again").click()
        while (await base.count()) == 0 or await base.inner_text() == before:
            await asyncio.sleep(0.02)
            # a hang, not a speed goal: the latency is printed below (worst 28-49 s on 2 cores)
            assert time.perf_counter() - start < 180, "no new text within 180 s"
        samples.append(time.perf_counter() - start)
        seed = int(await page.locator(".st-key-gen_seed input").input_value())
        prompt = await page.get_by_label("Prompt").input_value()
        length = int(await page.locator(".st-key-length input").input_value())
        seen.append((prompt, length, seed, await base.inner_text()))
    await page.context.close()
    return seen


async def classroom(url: str):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            busy, samples = asyncio.Event(), []
            busy.set()
            generators = [
                asyncio.create_task(generate_while(browser, url, busy, samples))
                for _ in range(GENERATORS)
            ]
            trained = await asyncio.gather(*(train(browser, url, s) for s in range(TRAINERS)))
            busy.clear()
            generated = await asyncio.gather(*generators)
        finally:
            await browser.close()
    return trained, generated, samples


@pytest.mark.classroom
@pytest.mark.timeout(900)
def test_eight_visitors_at_once(server, tiny_model_dir, client_data, capsys):
    from fedtext.learning.training import FederatedTrainer
    from fedtext.model.generation import TextGenerator
    from fedtext.model.keras_model import load_model
    from fedtext.service.store import RunStore

    url, _, data_root = server
    started = time.perf_counter()
    trained, generated, samples = asyncio.run(classroom(url))
    took = time.perf_counter() - started

    # Each run ends as it would alone: the same metrics as the same config trained here.
    store = RunStore(Path(data_root))
    train, test = client_data
    for run in trained:
        saved = store.load(run["run_id"])
        assert [r.round_num for r in saved.history] == list(range(ROUNDS + 1))
        solo_trainer = FederatedTrainer(saved.config, train, test, tiny_model_dir)
        alone = list(solo_trainer.rounds())
        # Losses and weights, not accuracy: the tiny random model's logits are so nearly
        # uniform that float rounding alone can flip an argmax.
        for shared, solo in zip(saved.history, alone, strict=True):
            assert shared.eval_loss == pytest.approx(solo.eval_loss, rel=1e-4)
            if solo.train_loss is not None:
                assert shared.train_loss == pytest.approx(solo.train_loss, rel=1e-4)
        for a, b in zip(saved.weights, solo_trainer.weights, strict=True):
            np.testing.assert_allclose(a, b, atol=2e-3)  # stored as float16
    assert len({run["run_id"] for run in trained}) == TRAINERS
    assert any(run["saw_queue"] for run in trained), "no visitor ever saw their place in line"

    # Each text is what the same request gives alone: no recurrent state is shared.
    model, config = load_model(tiny_model_dir)
    alone = TextGenerator(model.get_weights(), config)
    texts = [item for session in generated for item in session]
    for prompt, length, seed, text in texts:
        assert text.strip() == alone.generate(prompt, length, 1.0, seed).strip()

    with capsys.disabled():
        print(
            f"\n{TRAINERS} training + {GENERATORS} generating sessions in {took:.0f} s; "
            f"{len(samples)} generations while training ran: median "
            f"{statistics.median(samples):.2f} s, worst {max(samples):.2f} s"
        )
