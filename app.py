"""The fedtext page: pick Shakespeare characters as clients, fine-tune the Dickens model on them
with Federated Averaging, watch each round land on the charts, and compare what both models write.

`streamlit run app.py`. Everything it computes comes from the `fedtext` engine; this file only
draws widgets, reads their values and shows results.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

# Nothing imported here loads TensorFlow (8 s on a small machine): the engine's thread does, while
# the first page draws.
from fedtext import data, plots, runs, runtime, sharing, style
from fedtext.config import (
    CLIENT_OPTIMIZERS,
    SERVER_OPTIMIZERS,
    TUTORIAL_CLIENTS,
    ConfigError,
    FederatedConfig,
    ModelConfig,
)
from fedtext.jobs import Job, JobState, QueueFull, TrainingQueue
from fedtext.prompt import TUTORIAL_PROMPT, PromptError
from fedtext.runs import RoundResult, history_csv
from fedtext.weights import WeightsError, base_model_dir

if TYPE_CHECKING:
    from fedtext.generation import TextGenerator

st.set_page_config(
    page_title="fedtext: federated learning on Shakespeare", page_icon="🎭", layout="wide"
)
st.markdown(
    "#### :material/theater_comedy: fedtext · a Dickens model learns Shakespeare "
    "by Federated Averaging"
)

PREVIEW_SPEECHES = 3
MAX_EARLIER = 3  # earlier runs kept on the charts for comparison
FOLLOW_EVERY_S = 1.0  # how often a page polls its live run (also the run's heartbeat)
FIRST_DRAW_WAIT_S = 5.0  # the longest the engine waits for the first page to finish drawing


# ---------------------------------------------------------------- loaded once per server


@st.cache_resource(show_spinner=False)
def load_clients() -> dict[str, data.ClientInfo]:
    """Every Shakespeare client, by id."""
    return {c.client_id: c for c in data.load_clients(data.database_path())}


class Engine:
    """The TensorFlow side of the page, loaded once per server in a background thread so that
    the rest of the page draws meanwhile: the base model's generator first, then TFF, the
    clients' data and the compiled round, then the training queue that every visitor shares."""

    def __init__(self, base_dir: Path, data_root: Path):
        self.step = "starting TensorFlow"
        self.error = ""  # why the engine could not start, for the page to show
        self.base: TextGenerator | None = None
        self.queue: TrainingQueue | None = None
        self.base_ready = threading.Event()  # set once `base` or `error` is
        self.ready = threading.Event()  # set once `queue` or `error` is
        self.page_drawn = threading.Event()  # set by the first page run that showed base text
        threading.Thread(
            target=self._prepare, args=(base_dir, data_root), name="fedtext-engine", daemon=True
        ).start()

    def _prepare(self, base_dir: Path, data_root: Path) -> None:
        try:
            runtime.import_tensorflow()  # seconds
            from fedtext.generation import load_generator

            self.step = "loading the Dickens base model"
            self.base = load_generator(base_dir)
        except WeightsError as error:
            self.error = (
                f"The base model cannot be loaded: {error}. Set FEDTEXT_BASE_MODEL to a "
                "model directory, or pre-train one: `python -m fedtext pretrain "
                "BOOKS.txt --output DIR`."
            )
        except Exception as error:  # shown on the page; restarting the server is the remedy
            self.error = f"TensorFlow could not start: {type(error).__name__}: {error}"
        finally:
            self.base_ready.set()
        if self.error:
            self.ready.set()
            return
        # TFF's imports hold the GIL for seconds: let the waiting first visitors' page finish
        # drawing (a fraction of a second) before they start.
        self.page_drawn.wait(timeout=FIRST_DRAW_WAIT_S)
        try:
            from fedtext.training import build_process

            self.step = "loading TensorFlow Federated and the clients' data"
            train, test = data.load_client_data()
            default, *others = sharing.PREBUILT_PROCESSES
            self.step = "compiling the federated round"
            build_process(self.base.config, *default)
            self.queue = TrainingQueue(
                train, test, base_dir, store=runs.RunStore(data_root), limits=sharing.LIMITS
            )
        except Exception as error:  # shown on the page; restarting the server is the remedy
            self.error = f"TensorFlow Federated could not start: {type(error).__name__}: {error}"
            return
        finally:
            self.ready.set()
        for kinds in others:  # now, rather than in the first job that asks for them
            try:
                build_process(self.base.config, *kinds)
            except Exception:  # a job that asks for it tries again and fails with the reason
                logging.getLogger(__name__).exception("building the %s round failed", kinds)


@st.cache_resource(show_spinner=False)
def start_engine(base_dir: str, data_root: str) -> Engine:
    return Engine(Path(base_dir), Path(data_root))


@st.cache_data(show_spinner=False, max_entries=512)
def load_letters(client_id: str) -> dict[str, float]:
    return plots.letter_shares(data.load_speeches(client_id, "train"))


@st.cache_data(show_spinner=False, max_entries=512)
def load_preview(client_id: str) -> list[str]:
    speeches = data.load_speeches(client_id, "train")
    lines = [s for s in speeches if len(s) >= 40] or speeches  # a few words say little
    return lines[:PREVIEW_SPEECHES]


@st.cache_resource(show_spinner=False, max_entries=8)
def load_tuned(run_key: str, _weights: list, _config: ModelConfig) -> TextGenerator:
    from fedtext.generation import ready_generator  # the engine has imported it already

    return ready_generator(_weights, _config)


@st.cache_data(show_spinner=False, max_entries=256)
def generate(
    model_key: str,
    _generator: TextGenerator,
    prompt: str,
    length: int,
    temperature: float,
    seed: int,
) -> str:
    return _generator.generate(prompt, length, temperature, seed)


# ---------------------------------------------------------------- this visitor's state


def init_session(clients: dict[str, data.ClientInfo]) -> None:
    """Once per visitor: the link's setup (or the defaults) into the widgets, and an owner id."""
    if "owner" in st.session_state:
        return
    setup, problems = sharing.setup_from_params(st.query_params.to_dict(), clients)
    for field, value in setup.items():
        st.session_state[field] = value
    st.session_state.update(
        owner=secrets.token_urlsafe(12),
        problems=problems,
        earlier=[],
        pending=None,
        notice="",
        run_id=st.query_params.get(sharing.RUN_PARAM, ""),
        prompt=TUTORIAL_PROMPT,
        length=200,
        temperature=1.0,
        gen_seed=0,
        preset="defaults",
    )


@dataclass(frozen=True)
class RunView:
    """What the page shows of a run: live from the training queue, or finished and on disk."""

    run_id: str
    config: FederatedConfig
    history: list[RoundResult]
    weights: list | None = None
    message: str = ""
    failed: bool = False
    resumable: bool = False  # failed because TFF's worker died: it can go on from its last round
    job: Job | None = None  # while it is queued or running
    baseline: list[RoundResult] = dataclasses.field(default_factory=list)  # centralised

    @property
    def live(self) -> bool:
        return self.job is not None and not self.job.finished

    @property
    def trained(self) -> bool:
        rounds_done = not self.live or self.job.in_baseline
        return rounds_done and self.weights is not None and len(self.history) > 1


@st.cache_resource(show_spinner=False, max_entries=16)
def load_saved(data_root: str, run_id: str, stamp: int) -> runs.SavedRun:
    """A stored run; `stamp` (its file's mtime) keys the cache, as a resumed run is saved again."""
    return runs.RunStore(Path(data_root)).load(run_id)


def saved_stamp(data_root: str, run_id: str) -> int:
    try:
        return (runs.RunStore(Path(data_root)).path(run_id) / "run.json").stat().st_mtime_ns
    except OSError:
        return 0


def current_run(base_dir: str, data_root: str) -> RunView | None:
    """This visitor's run, from the link: live in the queue, else as stored (the same weights
    before and after a server restart), else None with a message."""
    run_id = st.session_state.run_id
    if not run_id:
        return None
    queue = start_engine(base_dir, data_root).queue
    job = queue.get(run_id) if queue else None
    if job is not None and not job.finished:
        return RunView(
            run_id, job.config, list(job.history), job.weights, job=job, baseline=list(job.baseline)
        )
    failed = job is not None and job.state is JobState.FAILED
    resumable = job is not None and job.resumable
    try:
        saved = load_saved(data_root, run_id, saved_stamp(data_root, run_id))
        return RunView(
            run_id,
            saved.config,
            saved.history,
            saved.weights,
            saved.message,
            failed,
            resumable,
            baseline=saved.baseline,
        )
    except KeyError:
        if job is not None:  # ended before a round finished: nothing worth storing
            return RunView(
                run_id, job.config, list(job.history), job.weights, job.message, failed, resumable
            )
        st.warning(
            "The run in this link is not stored here (runs are kept for "
            f"{runs.MAX_AGE_DAYS:.0f} days): train a new one."
        )
    except WeightsError as error:
        st.warning(f"The run in this link cannot be read: {error}")
    st.session_state.run_id = ""
    return None


def choose(ids: list[str]) -> None:
    st.session_state.client_ids = ids


def run_baseline(base_dir: str, data_root: str, run_id: str) -> None:
    """Queue the centralised baseline of this visitor's finished run."""
    try:
        stored = load_saved(data_root, run_id, saved_stamp(data_root, run_id))
    except (KeyError, WeightsError):
        stored = None
    why = start_engine(base_dir, data_root).queue.run_baseline(
        run_id, st.session_state.owner, stored
    )
    if why:
        st.session_state.notice = f"Cannot run the baseline: {why}"


def baseline_ui(run: RunView) -> None:
    """Federated against centralised at equal CPU time, and what the gap buys."""
    st.plotly_chart(
        plots.baseline_figure(run.history, run.baseline),
        width="stretch",
        key="baseline-chart",
        config={"displayModeBar": False},
    )
    comparison = runs.compare(run.history, run.baseline)
    gap = comparison.centralised_gain - comparison.federated_gain
    if gap > 0:
        why = (
            f"Pooling every character's lines in one place learned {gap:.1f} points more for "
            "the same compute: each step sees all of them mixed, and no update is averaged "
            "against another. Federated Averaging pays that price so that no line ever "
            "leaves its owner: only weight updates travel."
        )
    else:
        why = (
            "Federated Averaging kept up with pooled training here, and no line left its "
            "owner: only weight updates travelled."
        )
    st.caption(f"{comparison.summary()}. {why}")


def resume_run(base_dir: str, data_root: str, run_id: str) -> None:
    """Queue a run whose TFF worker died again; it goes on from its last finished round."""
    if not start_engine(base_dir, data_root).queue.resume(run_id):
        st.session_state.notice = "This run cannot be resumed any more: train it again."


# ---------------------------------------------------------------- widgets, returning values


def explain_ui(setup: dict, shares: dict[str, float]) -> None:
    """What one round does, with this setup's numbers."""
    k = setup["clients_per_round"] or len(setup["client_ids"])
    top = max(shares.values(), default=0.0)
    steps = (
        (
            ":material/cloud_download: 1. The server sends the model",
            f"Its current weights go to {k} of the chosen characters.",
        ),
        (
            ":material/edit_note: 2. Each character trains on its own lines",
            f"{setup['batches_per_client']} steps on batches of {setup['batch_size']} lines of 100 "
            f"characters, {setup['client_optimizer']} at {setup['client_learning_rate']:g}; the "
            "lines never leave the character.",
        ),
        (
            ":material/cloud_upload: 3. Only weight updates come back",
            "The server sees how each model changed, not the text that changed it.",
        ),
        (
            ":material/balance: 4. The server averages them, weighted by data",
            f"More text, more say (up to {top:.0%} here); {setup['server_optimizer']} at "
            f"{setup['server_learning_rate']:g} applies the average. Then the next round.",
        ),
    )
    for column, (title, text) in zip(st.columns(4), steps, strict=True):
        with column.container(border=True):
            st.markdown(f"**{title}**  \n<small>{text}</small>", unsafe_allow_html=True)


def clients_ui(clients: dict[str, data.ClientInfo]) -> list[str]:
    """Quick picks and a searchable list; returns the chosen client ids."""
    n = st.session_state.get("pick_n", 10)
    everyone = list(clients.values())
    picks = st.columns([1.2, 0.9, 0.9, 0.8], vertical_alignment="bottom")
    picks[0].button(
        "Tutorial's 2",
        on_click=choose,
        args=(list(TUTORIAL_CLIENTS),),
        help="The two characters TFF's tutorial trained on",
        width="stretch",
    )
    picks[1].button(
        "Random",
        on_click=choose,
        args=(sharing.pick_random(everyone, n),),
        help=f"{n} characters drawn at random",
        width="stretch",
    )
    picks[2].button(
        "Top N",
        on_click=choose,
        args=(sharing.pick_biggest(everyone, n),),
        help=f"The {n} characters with the most lines",
        width="stretch",
    )
    picks[3].number_input(
        "N",
        1,
        sharing.LIMITS.max_clients,
        10,
        key="pick_n",
        help="How many characters Random and Top N pick",
    )
    plays = sorted({c.play for c in everyone})
    play_col, button_col = st.columns([3, 1.1], vertical_alignment="bottom")
    play = play_col.selectbox(
        "Play",
        plays,
        label_visibility="collapsed",
        index=plays.index("Hamlet") if "Hamlet" in plays else 0,
    )
    button_col.button(
        "Whole play",
        on_click=choose,
        args=(sharing.pick_play(everyone, play),),
        help="Every character of this play",
        width="stretch",
    )
    return st.multiselect(
        "Clients: type a character or a play",
        list(clients),
        key="client_ids",
        format_func=lambda cid: _client_label(clients[cid]),
        max_selections=sharing.LIMITS.max_clients,
        placeholder="Search: hamlet, lear, juliet…",
        help="Each Shakespeare character is one client holding its own lines. "
        "Numbers: speeches, and characters of training text.",
    )


def _client_label(client: data.ClientInfo) -> str:
    speeches = client.train_speeches + client.test_speeches
    return (
        f"{client.character.title()} · {client.play} · {speeches} speeches · "
        f"{client.train_chars / 1000:.1f}k chars"
    )


def chosen_table_ui(chosen: list[data.ClientInfo], shares: dict[str, float]) -> None:
    table = pd.DataFrame(
        {  # the play last: the column most worth cutting short
            "character": [c.character.title() for c in chosen],
            "text": [c.train_chars for c in chosen],
            "weight": [shares[c.client_id] for c in chosen],
            "tutorial": ["dropped" if c.tutorial_would_drop else "kept" for c in chosen],
            "play": [c.play for c in chosen],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        height=min(38 + 35 * len(chosen), 220),
        width="stretch",
        column_config={
            "character": st.column_config.TextColumn("character", width="small"),
            "text": st.column_config.NumberColumn(
                "text", help="Characters of training text", format="compact", width="small"
            ),
            "weight": st.column_config.ProgressColumn(
                "weight",
                format="percent",
                min_value=0.0,
                max_value=1.0,
                width="small",
                help="Share of the server's weighted average when every chosen client takes "
                "part: sequences trained per round, capped by batches per client",
            ),
            "tutorial": st.column_config.TextColumn(
                "tutorial",
                width="small",
                help="'dropped': the tutorial's pipeline gave this client no batch (less than "
                "8 x 101 characters); fedtext pads its text and keeps it",
            ),
            "play": st.column_config.TextColumn("play"),
        },
    )


def preview_ui(chosen: list[data.ClientInfo]) -> None:
    ids = [c.client_id for c in chosen]
    names = {c.client_id: f"{c.character.title()} ({c.play})" for c in chosen}
    client_id = st.selectbox(
        "A few of their real lines", ids, format_func=names.get, key="preview_id"
    )
    with st.container(height=150, key="preview"):
        for speech in load_preview(client_id or ids[0]):
            st.text(speech)


PRESET_LABELS = {
    "defaults": "fedtext's defaults",
    "tutorial": "TFF's tutorial",
    "fedavg": "FedAvg (Reddi et al.)",
    "fedavgm": "FedAvgM (Reddi et al.)",
    "fedadam": "FedAdam (Reddi et al.)",
}


def apply_preset() -> None:
    """Set the widgets to the chosen preset; the tutorial's brings its two clients too."""
    setup = sharing.preset_setup(st.session_state.preset)
    if st.session_state.preset != "tutorial":
        setup.pop("client_ids")
    st.session_state.update(setup)


def settings_ui() -> dict:
    """The training settings, each with its bounds and a one-line help."""
    bounds = sharing.BOUNDS
    st.selectbox(
        "Start from",
        list(PRESET_LABELS),
        format_func=PRESET_LABELS.get,
        key="preset",
        on_change=apply_preset,
        help="Named settings: the measured defaults, TFF's tutorial as published (its "
        "client rate of 0.5 wrecks this model), or Reddi et al. 2021's Shakespeare "
        "settings, made for an LSTM trained from scratch",
    )
    left, right = st.columns(2)
    values = {
        "rounds": left.number_input(
            "Rounds",
            bounds["rounds"].low,
            bounds["rounds"].high,
            key="rounds",
            help="Each round: send the model out, train on each client, average the updates",
        ),
        "clients_per_round": right.number_input(
            "Clients per round",
            bounds["clients_per_round"].low,
            bounds["clients_per_round"].high,
            key="clients_per_round",
            help="Sample this many of the chosen characters each round (0: all of them), "
            "as phone keyboards do with millions of users",
        ),
        "batches_per_client": left.number_input(
            "Local steps",
            bounds["batches_per_client"].low,
            bounds["batches_per_client"].high,
            key="batches_per_client",
            help="Batches each client trains on per round (the tutorial took 5)",
        ),
        "batch_size": right.select_slider(
            "Batch size",
            sharing.BATCH_SIZES,
            key="batch_size",
            help="Sequences of 100 characters per local step (the tutorial's: 8)",
        ),
        "client_optimizer": left.radio(
            "Client optimizer",
            CLIENT_OPTIMIZERS,
            key="client_optimizer",
            horizontal=True,
            help="Each client's local training; it starts afresh every round",
        ),
        "clip_norm": right.select_slider(
            "Gradient clipping",
            sharing.CLIP_NORMS,
            key="clip_norm",
            format_func=lambda v: "off" if v == 0 else f"{v:g}",
            help="Each local gradient is scaled down to at most this norm, so one bad batch "
            "cannot wreck the model",
        ),
        "client_learning_rate": st.select_slider(
            "Client learning rate",
            sharing.RATES,
            key="client_learning_rate",
            help="Step size of each character's local training; too high and it diverges",
        ),
        "server_optimizer": st.radio(
            "Server optimizer",
            SERVER_OPTIMIZERS,
            key="server_optimizer",
            horizontal=True,
            help="How the server applies the averaged update: sgd at rate 1 is plain Federated "
            "Averaging; momentum (FedAvgM) and adam (FedAdam) remember earlier rounds",
        ),
        "server_learning_rate": st.select_slider(
            "Server learning rate",
            sharing.RATES,
            key="server_learning_rate",
            help="Scales the averaged update: 1 with sgd replaces the model by the average; "
            "adam wants about 0.01",
        ),
        "seed": st.number_input(
            "Seed",
            bounds["seed"].low,
            bounds["seed"].high,
            key="seed",
            help="Fixes the sampling of clients and the shuffling of their lines",
        ),
    }
    return values


def compare_ui() -> tuple[str, int, float, int]:
    """Prompt, length, temperature and seed for the two generations."""
    prompt_col, length_col, temperature_col, seed_col, again_col = st.columns(
        [3.2, 0.9, 1.4, 0.8, 0.9], vertical_alignment="bottom"
    )
    prompt = prompt_col.text_input("Prompt", key="prompt", max_chars=1000)
    length = length_col.number_input(
        "Length",
        10,
        sharing.LIMITS.max_generate_chars,
        step=50,
        key="length",
        help="Characters to generate",
    )
    temperature = temperature_col.slider(
        "Temperature",
        0.1,
        2.0,
        step=0.1,
        key="temperature",
        help="Low: safe, repetitive; high: adventurous, misspelt",
    )
    seed = seed_col.number_input(
        "Seed", 0, 9999, key="gen_seed", help="Same seed, same random draws for both models"
    )
    again_col.button(
        "Again",
        icon=":material/casino:",
        on_click=_next_seed,
        width="stretch",
        help="Another sample: the next seed",
    )
    return prompt, int(length), float(temperature), int(seed)


def style_ui(box, text: str) -> None:
    """The style meter under a generated text: the independent judge's score, and with the
    toggle on, each character coloured by how it sways the judge."""
    try:
        score = style.shakespeare_score(text)
    except style.StyleError as error:
        box.caption(f"Style meter unavailable: {error}")
        return
    box.progress(
        score,
        text=f"Style meter: {score:.0%} Shakespeare, {1 - score:.0%} Dickens "
        f"· {style.style_verdict(score)}",
    )
    if st.session_state.get("colour_style"):
        box.html(
            style.highlight_html(
                text, style.char_contributions(text), legend=("Dickens", "Shakespeare")
            )
        )


def _next_seed() -> None:
    st.session_state.gen_seed = (st.session_state.gen_seed + 1) % 10000


# ---------------------------------------------------------------- results


def draw_charts(boxes: tuple, history: list, rounds: int, earlier: list) -> None:
    """Draw the loss and accuracy charts into their two placeholders."""
    for box, metric in zip(boxes, ("loss", "accuracy"), strict=True):
        box.plotly_chart(
            plots.figure(history, metric, rounds, earlier),
            width="stretch",
            key=f"{metric}-chart",
            config={"displayModeBar": False},
        )


def describe(run: RunView) -> tuple[str, str]:
    """(st method, text) for how a finished run ended."""
    history = run.history
    total = run.config.rounds
    gain = (
        f"; held-out accuracy {history[0].eval_accuracy:.1%} → {history[-1].eval_accuracy:.1%}"
        if len(history) > 1
        else ""
    )
    if run.failed:
        return "error", f"{run.message}{gain}"
    if len(history) <= 1:
        return "warning", f"No round finished ({run.message or 'stopped'})"
    if len(history) <= total:
        why = "" if run.message.startswith("stopped") else f" ({run.message})"
        return "warning", (
            f"Ended after round {len(history) - 1} of {total}{why}; the model so far is kept{gain}"
        )
    seconds = sum(r.seconds for r in history)
    kept = f" ({run.message})" if run.message else ""  # e.g. the disk was full
    return "success", f"Trained {total} round{'s' * (total != 1)} in {seconds:.0f} s{gain}{kept}"


def progress_text(job: Job, queue: TrainingQueue) -> tuple[float, str]:
    history = list(job.history)
    total = job.config.rounds
    done = max(0, len(history) - 1)
    eta = queue.eta_seconds(job.job_id)
    left = f"about {eta:.0f} s left" if eta < 120 else f"about {eta / 60:.0f} min left"
    if job.stop_requested:
        return done / total, f"Stopping after the current round ({done} of {total} done)…"
    if job.state is JobState.QUEUED:
        ahead = queue.position(job.job_id)
        return 0.0, f"Waiting for the server: {ahead} run(s) ahead, {left}"
    if job.in_baseline:
        budget = sum(r.cpu_seconds for r in history[1:]) or 1.0
        spent = sum(r.cpu_seconds for r in job.baseline[1:])
        return min(1.0, spent / budget), (
            f"Centralised baseline: {spent:.0f} of {budget:.0f} CPU seconds · {left}"
        )
    if not history:
        return 0.0, f"Round 0: evaluating the base model · {left}"
    return done / total, f"Round {done + 1} of {total} running · {left}"


def follow_run(base_dir: str, data_root: str, rounds_shown: int) -> None:
    """The progress line of this visitor's pending or live run. A fragment that Streamlit reruns
    every FOLLOW_EVERY_S (each poll is the run's heartbeat), so it is kept cheap; when a round
    lands or the run ends it reruns the page, which redraws the charts and the texts."""
    status = st.empty()
    engine = start_engine(base_dir, data_root)
    if st.session_state.pending is not None:
        if not engine.ready.is_set():
            status.progress(0.0, text=f"Preparing the server (first start only): {engine.step}…")
            return
        submit_pending(engine)
    queue = engine.queue
    job = queue.get(st.session_state.run_id) if queue else None
    if job is None or job.finished:
        wait_until_saved(job)
        st.rerun()
    queue.touch(job.job_id)
    if len(job.history) != rounds_shown:
        st.rerun()
    status.progress(*progress_text(job, queue))


def wait_until_saved(job: Job | None) -> None:
    """The queue stores a run right after it finishes (then sets `ended`); the page reloads it
    from there."""
    deadline = time.monotonic() + 30
    while job is not None and job.ended is None and time.monotonic() < deadline:
        time.sleep(0.1)


def submit_pending(engine: Engine) -> None:
    """Queue the visitor's waiting run, then rerun the page with it (or with why it could not)."""
    config, st.session_state.pending = st.session_state.pending, None
    if engine.error:
        st.session_state.notice = engine.error
    else:
        try:
            job = engine.queue.submit(config, st.session_state.owner, page_open())
            st.session_state.run_id = job.job_id
        except (ConfigError, QueueFull) as error:
            st.session_state.notice = f"Cannot start training: {error}"
    st.rerun()


def page_open():
    """A check that this visitor's page is still connected, where the server can tell."""
    try:
        from streamlit.runtime import Runtime
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        server, session_id = Runtime.instance(), get_script_run_ctx().session_id
    except Exception:
        return None
    if type(server) is not Runtime:  # AppTest's stand-in: the page's polls alone keep it alive
        return None
    return lambda: server.is_active_session(session_id)


def compare_panel(run: RunView | None, base_dir: str, engine: Engine) -> None:
    """The two models side by side. A fragment: a new prompt or seed reruns only this."""
    prompt, length, temperature, gen_seed = compare_ui()
    prompt_notice = st.empty()
    st.toggle(
        "Colour by style",
        key="colour_style",
        help="The style meter is a character n-gram judge trained on Dickens' novels "
        "against Shakespeare's training lines, independent of both models: red "
        "characters sway it towards Dickens, blue towards Shakespeare",
    )
    base_col, tuned_col = st.columns(2)
    base_header = base_col.empty()
    base_box = base_col.container(key="base_text")
    tuned_header = tuned_col.empty()
    tuned_box = tuned_col.container(key="tuned_text")
    # One slot for the loading note, the error and the text: a second element in the box would
    # outlive this run as a stale copy of the text while the next run draws.
    base_slot = base_box.empty()
    trained = run is not None and run.trained
    if not engine.base_ready.is_set():
        # Only the first visitors after a server start wait here, with everything above drawn.
        # Waiting in this run, rather than polling from a fragment, keeps the widgets' values:
        # a poll that lands while a browser is still drawing the page sends their defaults.
        base_header.markdown("**Dickens base model**")
        base_slot.info(
            f"Loading ({engine.step}): once per server start.", icon=":material/hourglass_top:"
        )
        engine.base_ready.wait()
        base_slot.empty()
    base = engine.base
    if base is None:
        base_header.markdown("**Dickens base model**")
        base_slot.error(engine.error)
        return
    base_header.markdown(
        f"**Dickens base model** <small>({base.parameter_count:,} parameters)</small>",
        unsafe_allow_html=True,
    )
    try:
        base_text = generate(f"base:{base_dir}", base, prompt, length, temperature, gen_seed)
        base_slot.code(base_text, language=None, wrap_lines=True)
        style_ui(base_box, base_text)
        if trained:
            rounds_done = len(run.history) - 1
            tuned_header.markdown(
                f"**Fine-tuned on Shakespeare** <small>({rounds_done} round"
                f"{'s' * (rounds_done != 1)} of Federated Averaging)</small>",
                unsafe_allow_html=True,
            )
            run_key = f"{run.run_id}:{len(run.history)}"
            tuned = load_tuned(run_key, run.weights, base.config)
            tuned_text = generate(run_key, tuned, prompt, length, temperature, gen_seed)
            tuned_box.code(tuned_text, language=None, wrap_lines=True)
            style_ui(tuned_box, tuned_text)
    except PromptError as error:
        prompt_notice.warning(f"Cannot generate: {error}", icon=":material/edit_off:")
    if not trained:
        busy = (run is not None and run.live) or st.session_state.pending is not None
        tuned_header.markdown("**Fine-tuned on Shakespeare**")
        tuned_box.info(
            "Training: the fine-tuned model writes here when it ends."
            if busy
            else "Not trained yet: press Train, and the fine-tuned model writes here.",
            icon=":material/hourglass_top:" if busy else ":material/arrow_back:",
        )


# ---------------------------------------------------------------- the page, top to bottom

base_dir, data_root = str(base_model_dir()), str(runs.data_dir())
loading = st.empty()  # the first start after an install builds the plays' database: seconds
try:
    loading.info("Reading Shakespeare's plays…", icon=":material/hourglass_top:")
    clients = load_clients()
except data.DataError as error:
    loading.error(f"The page cannot start: {error}.")
    st.stop()
loading.empty()
engine = start_engine(base_dir, data_root)  # TensorFlow loads while the page draws
init_session(clients)
notices = st.container()  # messages about the link; one element whatever they are
with notices:
    for problem in st.session_state.problems:
        st.warning(problem)
    run = current_run(base_dir, data_root)
live = run is not None and run.live

explain_box = st.container()
clients_col, settings_col, results_col = st.columns([1.15, 0.8, 1.35], gap="medium")

with settings_col:
    st.markdown("**2 · Settings**")
    settings = settings_ui()
    train_col, stop_col = st.columns(2)
    train = train_col.button(
        "Train",
        icon=":material/play_arrow:",
        type="primary",
        disabled=live,
        width="stretch",
        key="train",
        help="Fine-tune the base model with these settings",
    )
    stop = stop_col.button(
        "Stop",
        icon=":material/stop:",
        disabled=not live,
        width="stretch",
        key="stop",
        help="End after the current round, keeping the model so far",
    )
    progress = st.empty()
    if run is not None and run.resumable:
        st.button(
            "Resume",
            icon=":material/resume:",
            key="resume",
            width="stretch",
            on_click=resume_run,
            args=(base_dir, data_root, run.run_id),
            help="Go on from the last finished round with a fresh TFF worker",
        )

with clients_col:
    st.markdown("**1 · Clients**: Shakespeare's characters, each with its own lines")
    client_ids = clients_ui(clients)
    chosen = [clients[cid] for cid in client_ids]
    setup = {"client_ids": client_ids, **settings}
    shares = sharing.averaging_shares(
        chosen, settings["batches_per_client"], settings["batch_size"]
    )
    if not chosen:
        st.warning("No client chosen: pick at least one character, or a quick pick above.")
    else:
        chosen_table_ui(chosen, shares)
        st.plotly_chart(
            plots.data_figure(
                chosen, shares, {c.client_id: load_letters(c.client_id) for c in chosen[:40]}
            ),
            width="stretch",
            config={"displayModeBar": False},
            key="data-figure",
        )
        st.caption(
            "Non-IID data: characters hold very different amounts of text and use "
            "letters differently (red: more often than the chosen ones together, "
            "blue: less). Bars: averaging weight."
        )
        preview_ui(chosen)

with explain_box:
    explain_ui(setup, shares)

if train:
    try:
        config = FederatedConfig(**{**setup, "client_ids": tuple(client_ids)})
        sharing.LIMITS.check(config)
    except ConfigError as error:
        progress.error(f"Cannot start training: {error}")
    else:
        if run is not None and len(run.history) > 1:
            label = f"run {len(st.session_state.earlier) + 1}"
            st.session_state.earlier = [*st.session_state.earlier, (label, list(run.history))][
                -MAX_EARLIER:
            ]
        st.session_state.pending, st.session_state.problems = config, []
        st.session_state.run_id, run, live = "", None, False
if stop and live:
    engine.queue.stop(run.run_id)
if st.session_state.notice:
    progress.error(st.session_state.notice)
    st.session_state.notice = ""

with results_col:
    st.markdown("**3 · Train**: held-out accuracy on the chosen characters' unseen speeches")
    show_earlier = st.toggle(
        "Keep earlier runs on the charts",
        value=True,
        key="show_earlier",
        disabled=not st.session_state.earlier,
    )
    earlier = st.session_state.earlier if show_earlier else []
    follow_box = st.container()  # filled last: following may rerun the page, after every widget
    pending = st.session_state.pending
    history = run.history if run else []
    draw_charts(
        (st.empty(), st.empty()),
        history,
        run.config.rounds if run else pending.rounds if pending else settings["rounds"],
        earlier,
    )
    if run is not None and not live:
        kind, text = describe(run)
        getattr(progress, kind)(text)
    if run is not None and run.trained and not run.baseline:
        st.button(
            "Centralised baseline",
            icon=":material/compare_arrows:",
            key="baseline",
            on_click=run_baseline,
            args=(base_dir, data_root, run.run_id),
            help="Train the same base model on these characters' lines pooled in one "
            "place, for the CPU time the federated rounds took",
        )
    if run is not None and len(run.baseline) > 1:
        baseline_ui(run)

st.markdown("**4 · Compare**: the same prompt and seed through both models")
st.fragment(compare_panel)(run, base_dir, engine)
trained = run is not None and run.trained

st.markdown("**5 · Keep**: results and the setup")
keep = st.columns([1, 1, 2.5], vertical_alignment="center")
if trained:
    store_dir = runs.RunStore(Path(data_root)).path(run.run_id)
    keep[0].download_button(
        "Fine-tuned model (.zip)",
        lambda: sharing.model_archive(store_dir),
        icon=":material/download:",
        file_name="fedtext-model.zip",
        mime="application/zip",
        disabled=not store_dir.exists(),
        width="stretch",
        help="weights.npz and model.json: `fedtext generate --model DIR`",
    )
    keep[1].download_button(
        "Metrics per round (.csv)",
        history_csv(run.history),
        icon=":material/download:",
        file_name="fedtext-metrics.csv",
        mime="text/csv",
        width="stretch",
    )
else:
    for column, label in zip(
        keep, ("Fine-tuned model (.zip)", "Metrics per round (.csv)"), strict=False
    ):
        column.button(
            label, icon=":material/download:", disabled=True, width="stretch", help="Train first"
        )
keep[2].caption(
    ":material/link: The address bar holds these clients and settings"
    + (" and this run" if st.session_state.run_id else "")
    + ": copy it to hand out the same setup, or to find this run again after a "
    "reload."
)

params = sharing.setup_to_params(setup)
if st.session_state.run_id:
    params[sharing.RUN_PARAM] = st.session_state.run_id
if params != st.query_params.to_dict():
    st.query_params.from_dict(params)

if live or st.session_state.pending is not None:
    with follow_box:
        st.fragment(follow_run, run_every=FOLLOW_EVERY_S)(base_dir, data_root, len(history))

if engine.base is not None:
    engine.page_drawn.set()
