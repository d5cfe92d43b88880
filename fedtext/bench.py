"""Benchmarks of the engine and the page on this machine: one table, as JSON and Markdown."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil  # installed with TFF (through portpicker)

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench"
SECTIONS = ("overhead", "scaling", "coldstart", "page", "generation", "memory", "learning")
WARMUP_ROUNDS = 1  # the first round of a trainer pays TFF's and the worker's one-off costs
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass
class Row:
    """One figure of the table; `key` is stable across runs so a run compares with the last."""

    key: str
    section: str
    measure: str
    value: float | None
    unit: str
    target_max: float | None = None  # the target, where it sets one
    note: str = ""
    previous: float | None = None

    @property
    def ok(self) -> bool | None:
        if self.target_max is None or self.value is None:
            return None
        return self.value <= self.target_max


@dataclass(frozen=True)
class Settings:
    base_dir: Path
    out_dir: Path = OUT_DIR
    sections: tuple[str, ...] = SECTIONS
    quick: bool = False
    repeats: int = 3  # timed rounds per scaling point; medians over these
    overhead_repeats: int = 5  # more for the two headline ratios
    learning_rounds: int = 20
    random_weights: bool = False  # the base model is untrained: learning figures mean nothing

    @property
    def clients_sweep(self) -> tuple[int, ...]:
        return (1, 2, 4) if self.quick else (1, 2, 4, 8, 16)

    @property
    def batches_sweep(self) -> tuple[int, ...]:
        return (1, 2, 5) if self.quick else (1, 2, 5, 10, 20)


@dataclass
class Results:
    settings: Settings
    rows: list[Row] = field(default_factory=list)
    scaling: list[dict] = field(default_factory=list)
    learning: dict[str, list[dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)
        for row in rows:
            shown = "skipped" if row.value is None else f"{row.value:.3g} {row.unit}"
            print(
                f"  {row.measure}: {shown}{'  (' + row.note + ')' if row.note else ''}", flush=True
            )


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ---------------------------------------------------------------- memory


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (the TFF worker is a child)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakRss:
    """Samples tree_rss(pid) in a thread; resident memory peaks between samples are missed,
    so the interval is short next to a round."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)


# ---------------------------------------------------------------- federation overhead and scaling


class KerasFloor:
    """Federated Averaging's arithmetic in plain Keras in this process: each client trains a
    copy of the global weights with SGD, then the weights are averaged by examples."""

    def __init__(self, model_config, learning_rate: float):
        import tensorflow as tf

        from fedtext.model import MaskedLoss, build_model

        self.model = build_model(model_config)
        self.optimizer = tf.keras.optimizers.SGD(learning_rate)
        self.loss = MaskedLoss()
        spec = tf.TensorSpec([None, None], tf.int64)
        self._step = tf.function(self._train_step, input_signature=[spec, spec])

    def _train_step(self, x, y):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = self.loss(y, self.model(x, training=True))
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        return loss

    def round(self, weights: list[np.ndarray], clients: list[list[tuple]]) -> list[np.ndarray]:
        total = [np.zeros_like(w) for w in weights]
        examples = 0
        for batches in clients:
            self.model.set_weights(weights)
            n = 0
            for x, y in batches:
                self._step(x, y)
                n += len(x)
            for acc, w in zip(total, self.model.get_weights(), strict=True):
                acc += w * n
            examples += n
        return [t / max(examples, 1) for t in total]


def largest_clients(count: int) -> tuple[str, ...]:
    """The clients with the most training text: every one has 20 full batches or more."""
    from fedtext import data

    clients = sorted(data.load_clients(), key=lambda c: (-c.train_chars, c.client_id))
    return tuple(c.client_id for c in clients[:count])


def time_rounds(ctx: dict, settings: Settings, n_clients: int, batches: int, repeats: int) -> dict:
    """Median wall time of a trainer's round with evaluation off, and of the Keras floor on the
    same batches, interleaved round by round so both see the same machine."""
    from fedtext.config import FederatedConfig
    from fedtext.training import FederatedTrainer

    config = FederatedConfig(
        client_ids=largest_clients(n_clients),
        batches_per_client=batches,
        rounds=WARMUP_ROUNDS + repeats,
    )
    trainer = FederatedTrainer(config, ctx["train"], ctx["test"], settings.base_dir)
    # Evaluation off: the round is the trainer's own loop (sampling, data, TFF, weights) without it.
    trainer.evaluate = lambda weights=None: (0.0, 0.0)
    data_seconds: list[float] = []
    original = trainer.client_datasets

    def timed_client_datasets(round_num, client_ids):
        start = time.perf_counter()
        result = original(round_num, client_ids)
        data_seconds.append(time.perf_counter() - start)
        return result

    trainer.client_datasets = timed_client_datasets
    floor_key = (trainer.model_config, config.client_learning_rate)
    floor_weights = list(trainer.weights)
    tff_s, floor_s, first = [], [], None
    for result in trainer.rounds():
        if result.round_num == 0:
            continue
        if ctx.get("floor_key") != floor_key:
            # Built only now: TFF's first build leaves Keras' layer classes on their graph-mode
            # bases, which breaks eager models built before it; building one after repairs them.
            ctx["floor"], ctx["floor_key"] = KerasFloor(*floor_key), floor_key
        floor: KerasFloor = ctx["floor"]
        datasets = original(result.round_num, result.client_ids)
        clients = [list(d.as_numpy_iterator()) for d in datasets]
        start = time.perf_counter()
        floor_weights = floor.round(floor_weights, clients)
        elapsed = time.perf_counter() - start
        if result.round_num <= WARMUP_ROUNDS:
            first = result.seconds
            continue
        tff_s.append(result.seconds)
        floor_s.append(elapsed)
    tff, base = median(tff_s), median(floor_s)
    return {
        "clients": n_clients,
        "batches": batches,
        "repeats": repeats,
        "round_s": tff,
        "floor_s": base,
        "ratio": tff / base,
        "data_s": median(data_seconds[WARMUP_ROUNDS:]),
        "first_round_s": first,
        "round_s_all": tff_s,
        "floor_s_all": floor_s,
    }


def run_overhead_and_scaling(ctx: dict, settings: Settings, results: Results) -> None:
    points: dict[tuple[int, int], dict] = {}
    wide = 4 if settings.quick else 8  # the 8 clients; 4 keep the quick mode quick
    wanted = []
    if "overhead" in settings.sections:
        wanted += [(2, 5, settings.overhead_repeats), (wide, 5, settings.overhead_repeats)]
    if "scaling" in settings.sections:
        wanted += [(k, 5, settings.repeats) for k in settings.clients_sweep]
        wanted += [(2, b, settings.repeats) for b in settings.batches_sweep]
    for k, b, repeats in wanted:
        if (k, b) in points:
            continue
        print(f"  timing {k} clients x {b} batches ...", flush=True)
        points[(k, b)] = time_rounds(ctx, settings, k, b, repeats)
    if "overhead" in settings.sections:
        for k in (2, wide):
            p = points[(k, 5)]
            label = "the tutorial's setting" if k == 2 else f"{k} clients"
            results.add(
                Row(
                    f"overhead.ratio.{k}x5",
                    "1 overhead",
                    f"TFF round / Keras floor, {k} clients x 5 batches ({label})",
                    p["ratio"],
                    "x",
                    1.15,
                    note=f"TFF {p['round_s']:.2f} s, floor {p['floor_s']:.2f} s, "
                    f"data {p['data_s']:.2f} s; median of {p['repeats']}",
                ),
                Row(
                    f"overhead.round_s.{k}x5",
                    "1 overhead",
                    f"round time, {k} clients x 5 batches, evaluation off",
                    p["round_s"],
                    "s",
                ),
            )
        p = points[(2, 5)]
        results.add(
            Row(
                "overhead.first_round_s.2x5",
                "1 overhead",
                "first round of a trainer (warm process)",
                p["first_round_s"],
                "s",
            )
        )
    if "scaling" in settings.sections:
        results.scaling = [p for (k, b), p in sorted(points.items())]
        for sweep, fixed, vary in (
            ("clients", 5, settings.clients_sweep),
            ("batches", 2, settings.batches_sweep),
        ):
            pts = [points[(v, fixed)] if sweep == "clients" else points[(fixed, v)] for v in vary]
            results.add(*scaling_rows(sweep, pts))


def scaling_rows(sweep: str, points: list[dict]) -> list[Row]:
    """Fit round time = fixed + per_step * (clients * batches); say how far each point is off."""
    steps = np.array([p["clients"] * p["batches"] for p in points], float)
    times = np.array([p["round_s"] for p in points])
    per_step, fixed = np.polyfit(steps, times, 1)
    predicted = fixed + per_step * steps
    off = (times - predicted) / predicted
    worst = int(np.argmax(np.abs(off)))
    linear = bool(np.all(np.abs(off) <= 0.1))
    pairs = zip(steps, off, strict=True)
    where = ", ".join(f"{int(s)} client batches {o:+.0%}" for s, o in pairs if abs(o) > 0.1)
    ratios = ", ".join(f"{p['clients']}x{p['batches']}: {p['ratio']:.2f}" for p in points)
    return [
        Row(
            f"scaling.{sweep}.per_step_s",
            "2 scaling",
            f"cost per client batch (slope, {sweep} grow)",
            float(per_step),
            "s",
            note=f"TFF/floor {ratios}",
        ),
        Row(
            f"scaling.{sweep}.fixed_s",
            "2 scaling",
            f"fixed cost per round (intercept, {sweep} grow)",
            float(fixed),
            "s",
            note=(
                "linear: every point within 10% of the fit" if linear else f"not linear: {where}"
            ),
        ),
        Row(
            f"scaling.{sweep}.worst_off",
            "2 scaling",
            f"largest departure from linear ({sweep} grow)",
            float(abs(off[worst])),
            "",
            note=f"at {int(steps[worst])} client batches",
        ),
    ]


# ---------------------------------------------------------------- cold start and memory (CLI)


def run_cli_rounds(settings: Settings, clients: Sequence[str], rounds: int, timeout: float = 600):
    """Runs `fedtext finetune` in a fresh process; seconds to each printed round and peak memory."""
    marks: dict[int, float] = {}
    rss_at: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "stderr", "w+") as err:
        cmd = [
            sys.executable,
            "-m",
            "fedtext",
            "finetune",
            "--clients",
            *clients,
            "--rounds",
            str(rounds),
            "--base",
            str(settings.base_dir),
            "--output",
            str(Path(tmp) / "out"),
        ]
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, start_new_session=True
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            with PeakRss(proc.pid) as peak:
                for line in proc.stdout:
                    if line.startswith("round"):
                        round_num = int(line.split()[1].rstrip(":"))
                        marks[round_num] = time.perf_counter() - start
                        rss_at[round_num] = tree_rss(proc.pid)
                code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
        if code != 0:
            err.seek(0)
            tail = err.read().strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"fedtext finetune exited {code}: {tail[0]}")
    return marks, rss_at, peak.peak, time.perf_counter() - start


def run_coldstart(settings: Settings, results: Results) -> None:
    from fedtext.cli import TUTORIAL_CLIENTS

    repeats = 1 if settings.quick else 3
    runs = [run_cli_rounds(settings, TUTORIAL_CLIENTS, 1) for _ in range(repeats)]
    first = median([marks[1] for marks, *_ in runs])
    base = median([marks[0] for marks, *_ in runs])
    results.add(
        Row(
            "coldstart.first_round_s",
            "3 cold start",
            "process start to first finished round (fedtext finetune, tutorial's setting)",
            first,
            "s",
            30.0,
            note=f"base model evaluated at {base:.1f} s; median of {len(runs)}",
        ),
        Row(
            "coldstart.process_s",
            "3 cold start",
            "whole command, 1 round",
            median([r[3] for r in runs]),
            "s",
        ),
    )


def run_memory(settings: Settings, results: Results) -> None:
    clients = largest_clients(4 if settings.quick else 8)
    _, rss_at, peak, _ = run_cli_rounds(settings, clients, 2)
    results.add(
        Row(
            "memory.cli_peak_mb",
            "5 memory",
            f"peak resident, engine + TFF worker, training {len(clients)} clients x 5 batches",
            peak / 2**20,
            "MB",
            4096.0,
            note="fedtext finetune, sampled every 50 ms",
        ),
        Row(
            "memory.cli_idle_mb",
            "5 memory",
            "resident, engine with model and data loaded, before TFF",
            rss_at[0] / 2**20,
            "MB",
        ),
    )


# ---------------------------------------------------------------- the page


def _page_usable(page) -> bool:
    """Streamlit has finished its first run: no running indicator, no spinner, a widget to use."""
    return bool(
        page.evaluate(
            """() => {
            const q = (s) => document.querySelector(s);
            const running = q('[data-testid="stStatusWidget"]');
            if (running && running.innerText.includes('Running')) return false;
            if (q('[data-testid="stSpinner"]') || q('[data-testid="stSkeleton"]')) return false;
            const widgets = document.querySelectorAll(
              '[data-testid="stMain"] button:not([disabled]), [data-testid="stMain"] input,'
              + ' [data-testid="stMain"] textarea');
            return widgets.length > 0;
        }"""
        )
    )


PAGE_TIMEOUT_S = 120.0  # a page not usable by then counts as failed
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
    times, idle, trained = [], [], None
    with sync_playwright() as pw:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        browser = pw.chromium.launch(executable_path=chromium)  # open before the clock starts
        for attempt in range(1 if settings.quick else 3):
            usable, rss, peak = _time_page(browser, app, train=attempt == 0)
            times += [usable] if usable is not None else []
            idle.append(rss)
            trained = peak if attempt == 0 else trained
        browser.close()
    rows["usable"].value = median(times) if times else None
    rows["usable"].note = (
        f"median of {len(times)}" if times else f"not usable within {PAGE_TIMEOUT_S:.0f} s"
    )
    rows["idle"].value = median(idle) / 2**20
    rows["idle"].note = "2 s after the page became usable"
    if trained is None:
        rows["train"].note = "no button labelled Train on the page: see memory.cli_peak_mb"
    else:
        rows["train"].value = trained / 2**20
        rows["train"].note = "sampled for 60 s after pressing the page's Train button"
    results.add(*rows.values())


def _time_page(browser, app: Path, train: bool) -> tuple[float | None, int, int | None]:
    """One cold start of the page: (seconds to usable, idle bytes, peak bytes while training)."""
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
    try:
        deadline = start + PAGE_TIMEOUT_S
        while time.perf_counter() < deadline:
            try:
                page.goto(f"http://localhost:{port}", timeout=2000)
                break
            except Exception:  # Playwright's error: the server is not listening yet
                time.sleep(0.1)
        while not _page_usable(page) and time.perf_counter() < deadline:
            time.sleep(0.05)
        usable = time.perf_counter() - start if time.perf_counter() < deadline else None
        time.sleep(2)  # the first run's garbage goes
        idle, peak = tree_rss(proc.pid), None
        button = page.get_by_role("button", name=re.compile(TRAIN_BUTTON, re.I)).first
        if train and usable is not None and button.count():
            with PeakRss(proc.pid) as sampler:
                button.click()
                time.sleep(60)
            peak = sampler.peak
        return usable, idle, peak
    finally:
        page.close()
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True and everything it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


# ---------------------------------------------------------------- generation and learning


def run_generation(settings: Settings, results: Results) -> None:
    from fedtext.generation import TUTORIAL_PROMPT, TextGenerator
    from fedtext.model import load_model

    model, config = load_model(settings.base_dir)
    generator = TextGenerator(model.get_weights(), config)
    start = time.perf_counter()
    generator.generate(TUTORIAL_PROMPT, 200, seed=0)
    first = time.perf_counter() - start
    times = []
    for seed in range(1, 4 if settings.quick else 21):
        start = time.perf_counter()
        generator.generate(TUTORIAL_PROMPT, 200, seed=seed)
        times.append(time.perf_counter() - start)
    latency = median(times)
    results.add(
        Row(
            "generation.latency_s",
            "4 generation",
            "200 characters, median latency",
            latency,
            "s",
            0.3,
            note=f"median of {len(times)}; first call (tracing) {first:.2f} s",
        ),
        Row(
            "generation.chars_per_s",
            "4 generation",
            "characters per second",
            200 / latency,
            "char/s",
        ),
    )


def learning_configs(rounds: int) -> dict:
    from fedtext.cli import TUTORIAL_CLIENTS
    from fedtext.config import FederatedConfig

    return {
        # The tutorial: SGD at 0.5 on each client, plain averaging on the server.
        "tutorial": FederatedConfig(
            client_ids=TUTORIAL_CLIENTS, rounds=rounds, client_learning_rate=0.5
        ),
        "defaults": FederatedConfig(client_ids=TUTORIAL_CLIENTS, rounds=rounds),
    }


def run_learning(ctx: dict, settings: Settings, results: Results) -> None:
    from fedtext.training import FederatedTrainer, TrainingDiverged

    rounds = 2 if settings.quick else settings.learning_rounds
    for name, config in learning_configs(rounds).items():
        trainer = FederatedTrainer(config, ctx["train"], ctx["test"], settings.base_dir)
        history, elapsed, note = [], 0.0, ""
        try:
            for r in trainer.rounds():
                elapsed += r.seconds if r.round_num else 0.0
                history.append(
                    {
                        "round": r.round_num,
                        "eval_loss": r.eval_loss,
                        "eval_accuracy": r.eval_accuracy,
                        "train_loss": r.train_loss,
                        "seconds": r.seconds,
                        "elapsed_s": elapsed,
                    }
                )
        except TrainingDiverged as error:
            note = str(error)
        results.learning[name] = history
        last = history[-1]
        gain = (last["eval_accuracy"] - history[0]["eval_accuracy"]) / max(elapsed / 60, 1e-9)
        label = f"{name} (lr {config.client_learning_rate})"
        results.add(
            Row(
                f"learning.{name}.accuracy",
                "6 learning",
                f"held-out accuracy after {last['round']} rounds, {label}",
                last["eval_accuracy"],
                "",
                note=note
                or f"from {history[0]['eval_accuracy']:.3f}; loss {history[0]['eval_loss']:.3f}"
                f" -> {last['eval_loss']:.3f}",
            ),
            Row(
                f"learning.{name}.gain_per_min",
                "6 learning",
                f"accuracy gained per minute of training, {label}",
                gain,
                "/min",
                note=f"{elapsed:.0f} s for {last['round']} rounds, evaluation included",
            ),
        )
    if settings.random_weights:
        results.notes.append("learning used an untrained base model: its figures mean nothing")


def learning_figure(learning: dict[str, list[dict]]):
    """Held-out accuracy against minutes of training, and loss against rounds."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("held-out accuracy per minute of training", "held-out loss per round"),
    )
    for name, history in learning.items():
        fig.add_trace(
            go.Scatter(
                x=[h["elapsed_s"] / 60 for h in history],
                y=[h["eval_accuracy"] for h in history],
                mode="lines+markers",
                name=f"{name}: accuracy",
                legendgroup=name,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[h["round"] for h in history],
                y=[h["eval_loss"] for h in history],
                mode="lines+markers",
                name=f"{name}: loss",
                legendgroup=name,
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="minutes", row=1, col=1)
    fig.update_xaxes(title_text="round", row=1, col=2)
    fig.update_layout(title="fedtext: learning per round (seeded, the tutorial's clients)")
    return fig


# ---------------------------------------------------------------- output


class ForeignLoad:
    """Cores used by processes outside this benchmark's own tree, sampled through the run:
    timings taken beside them are noisier than the machine's own."""

    def __init__(self, interval: float = 2.0):
        self.interval, self.samples = interval, []
        self.names: dict[str, float] = {}  # command line -> CPU seconds used during the run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _cpu(self) -> dict[int, tuple[str, float]]:
        me = psutil.Process()
        ours = {me.pid, *(c.pid for c in me.children(recursive=True))}
        seen = {}
        for proc in psutil.process_iter(["cmdline", "cpu_times"]):
            if proc.pid not in ours and proc.info["cpu_times"] is not None:
                times = proc.info["cpu_times"]
                name = " ".join(proc.info["cmdline"] or [])[:100]
                seen[proc.pid] = (name, times.user + times.system)
        return seen

    def _run(self) -> None:
        last, last_t = self._cpu(), time.monotonic()
        while not self._stop.wait(self.interval):
            now, now_t = self._cpu(), time.monotonic()
            used = 0.0
            for pid, (name, cpu) in now.items():
                delta = cpu - last.get(pid, (name, cpu))[1]
                used += delta
                if name and delta > 0:
                    self.names[name] = self.names.get(name, 0.0) + delta
            self.samples.append(used / (now_t - last_t))
            last, last_t = now, now_t

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        busy = sorted(self.names.items(), key=lambda item: -item[1])
        return {
            "foreign_cores_mean": float(np.mean(self.samples)) if self.samples else 0.0,
            "foreign_cores_max": float(np.max(self.samples)) if self.samples else 0.0,
            "competing_jobs": [f"{name} ({cpu:.0f} CPU s)" for name, cpu in busy if cpu > 10],
        }


def machine_meta(settings: Settings) -> dict:
    import tensorflow as tf
    import tensorflow_federated as tff

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "fedtext"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "commit": commit + ("+dirty" if dirty else ""),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tff": tff.__version__,
        "base_model": str(settings.base_dir),
        "random_weights": settings.random_weights,
        "quick": settings.quick,
    }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def summary_table(results: Results, meta: dict) -> str:
    others = meta["foreign_cores_mean"]
    load = (
        "nothing else running"
        if others <= 0.2
        else f"other processes using {others:.1f} of the cores on average, so noisier timings"
    )
    lines = [
        f"Measured {meta['time_utc']} UTC at commit {meta['commit']} on {meta['cpus']} CPUs, "
        f"{load}{', quick mode' if meta['quick'] else ''}.",
        "",
        "| | measure | value | previous | target | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in results.rows:
        mark = {True: "met", False: "**missed**", None: ""}[row.ok]
        target = f"<= {fmt(row.target_max, row.unit)} {mark}" if row.target_max else ""
        lines.append(
            f"| {row.section} | {row.measure} | {fmt(row.value, row.unit)} | "
            f"{fmt(row.previous, row.unit)} | {target} | {row.note} |"
        )
    lines += [f"\n{note}" for note in results.notes]
    return "\n".join(lines) + "\n"


def scaling_table(results: Results) -> str:
    lines = [
        "| clients | batches | TFF round | Keras floor | ratio | of which data | per batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in results.scaling:
        lines.append(
            f"| {p['clients']} | {p['batches']} | {p['round_s']:.2f} s | "
            f"{p['floor_s']:.2f} s | {p['ratio']:.2f} | {p['data_s']:.2f} s | "
            f"{p['round_s'] / (p['clients'] * p['batches']):.3f} s |"
        )
    return "\n".join(lines) + "\n"


def learning_table(results: Results) -> str:
    names = list(results.learning)
    lines = [
        "| round | " + " | ".join(f"{n}: accuracy | loss | minutes" for n in names) + " |",
        "|---" * (1 + 3 * len(names)) + "|",
    ]
    for i in range(max(len(h) for h in results.learning.values())):
        cells = []
        for h in results.learning.values():
            cells += (
                [
                    f"{h[i]['eval_accuracy']:.4f}",
                    f"{h[i]['eval_loss']:.4f}",
                    f"{h[i]['elapsed_s'] / 60:.2f}",
                ]
                if i < len(h)
                else ["", "", ""]
            )
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def previous_values(out: Path) -> dict[str, float | None]:
    """The figures of the run before this one, by key."""
    try:
        old = json.loads((out / "results.json").read_text())
        return {r["key"]: r["value"] for r in old.get("rows", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no earlier run, or an unreadable one: nothing to compare with


def write_outputs(
    results: Results, meta: dict, previous: dict, final: bool = True, update_readme: bool = False
) -> None:
    """results.json and results.md (after every section, so a stopped run keeps its figures),
    then learning.html and, if asked, the README's table."""
    out = results.settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for row in results.rows:
        row.previous = previous.get(row.key)
    document = {
        "meta": meta,
        "settings": {
            k: str(v) if isinstance(v, Path) else v for k, v in asdict(results.settings).items()
        },
        "rows": [{**asdict(r), "ok": r.ok} for r in results.rows],
        "scaling": results.scaling,
        "learning": results.learning,
        "notes": results.notes if final else [*results.notes, "Partial: the run goes on."],
    }
    (out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
    parts = [summary_table(results, meta)]
    if results.scaling:
        parts.append(
            "Round time as clients and batches grow (evaluation off):\n\n" + scaling_table(results)
        )
    readme_part = "\n".join(parts)
    if results.learning:
        parts.append(
            "Held-out accuracy and loss per round (chart: learning.html):\n\n"
            + learning_table(results)
        )
    (out / "results.md").write_text("# fedtext benchmark\n\n" + "\n".join(parts))
    if not final:
        return
    if results.learning:
        learning_figure(results.learning).write_html(out / "learning.html", include_plotlyjs="cdn")
    if update_readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        if README_START in text and README_END in text:
            head, rest = text.split(README_START, 1)
            tail = rest.split(README_END, 1)[1]
            readme.write_text(f"{head}{README_START}\n{readme_part}{README_END}{tail}")
    print("\n" + "\n".join(parts))
    print(f"wrote {out}/results.json, results.md" + (", learning.html" if results.learning else ""))


# ---------------------------------------------------------------- driver


def random_base_model(directory: Path) -> Path:
    """A freshly built full-size model: timings do not depend on trained weights."""
    import tensorflow as tf

    from fedtext.config import ModelConfig
    from fedtext.model import build_model, save_weights

    if not (directory / "weights.npz").exists():
        tf.keras.utils.set_random_seed(0)
        save_weights(build_model(ModelConfig()), ModelConfig(), directory)
    return directory


def run(settings: Settings, update_readme: bool = False) -> Results:
    from fedtext import data, runtime

    results, ctx = Results(settings), {}
    previous = previous_values(settings.out_dir)
    meta = machine_meta(settings)
    foreign = ForeignLoad()
    steps: list[tuple[set[str], Callable[[], None]]] = [
        ({"overhead", "scaling"}, lambda: run_overhead_and_scaling(ctx, settings, results)),
        ({"generation"}, lambda: run_generation(settings, results)),
        ({"learning"}, lambda: run_learning(ctx, settings, results)),
        ({"coldstart"}, lambda: run_coldstart(settings, results)),
        ({"memory"}, lambda: run_memory(settings, results)),
        ({"page"}, lambda: run_page(settings, results)),
    ]
    try:
        if {"overhead", "scaling", "learning"} & set(settings.sections):
            ctx["train"], ctx["test"] = data.load_client_data()
        for sections, step in steps:
            if sections & set(settings.sections):
                print(f"[{', '.join(sorted(sections))}]", flush=True)
                step()
                meta.update(foreign.summary(), load_avg_1m_end=os.getloadavg()[0])
                write_outputs(results, meta, previous, final=False)
    finally:
        runtime.shutdown()  # the in-process TFF worker; subprocesses stop their own
        foreign.stop()
    meta.update(foreign.summary(), load_avg_1m_end=os.getloadavg()[0])
    if meta["foreign_cores_mean"] > 0.2:
        print(
            f"warning: other processes used {meta['foreign_cores_mean']:.1f} cores on average "
            f"during this run: {meta['competing_jobs']}",
            flush=True,
        )
    write_outputs(results, meta, previous, update_readme=update_readme)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fedtext.bench", description=__doc__)
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repeat, short sweeps, 2 learning rounds: a smoke test",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per scaling point")
    parser.add_argument("--overhead-repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20, help="learning rounds")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="base model directory (default: the shipped Dickens model, or an "
        "untrained full-size one while that is missing)",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="also put the table between the README's bench markers",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fedtext import runtime
    from fedtext.model import BASE_MODEL_DIR, WEIGHTS_FILE

    args = build_parser().parse_args(argv)
    runtime.stop_on_sigterm()  # a killed benchmark stops its TFF worker too
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = (set(sections) | skip) - set(SECTIONS)
    if unknown:
        print(f"bench: unknown section(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    base, random_weights = args.base, False
    if base is None:
        base = BASE_MODEL_DIR
        if not (base / WEIGHTS_FILE).exists():
            base = random_base_model(ROOT / ".cache" / "bench-random-base")
            random_weights = True
            print(
                f"bench: no model at {BASE_MODEL_DIR}; timing an untrained full-size model",
                flush=True,
            )
    # Subprocesses (the command line, the page) must load the same base model.
    os.environ["FEDTEXT_BASE_MODEL"] = str(Path(base).resolve())
    quick = args.quick
    settings = Settings(
        base_dir=Path(base).resolve(),
        out_dir=args.out,
        sections=tuple(s for s in SECTIONS if s in sections and s not in skip),
        quick=quick,
        repeats=1 if quick else args.repeats,
        overhead_repeats=1 if quick else args.overhead_repeats,
        learning_rounds=args.rounds,
        random_weights=random_weights,
    )
    run(settings, update_readme=args.update_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
