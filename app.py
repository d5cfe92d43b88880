"""The fedtext page: pick Shakespeare characters as clients, fine-tune the Dickens model on them
with Federated Averaging, watch each round land on the charts, and compare what both models write.

`streamlit run app.py`. This file lays the page out top to bottom; its sections are drawn by
`ui/`, and everything they compute comes from `fedtext` (`fedtext.service.backend`).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import streamlit as st

from fedtext.config import ConfigError, FederatedConfig
from fedtext.learning.records import history_csv
from fedtext.model.weights import base_model_dir
from fedtext.service import backend, links, store

# Nothing imported here loads TensorFlow (8 s on a small machine): the engine's thread does, while
# the first page draws.
from fedtext.text import memorisation, plays
from fedtext.text.prompt import TUTORIAL_PROMPT
from ui import first_paint, kept, poll, words
from ui.classroom import class_page, open_class_ui
from ui.clients import chosen_ui, clients_ui
from ui.compare import compare_panel
from ui.lessons import lesson_buttons_ui, races_ui, server_view_ui, trigger_ui
from ui.resources import load_clients, load_saved, start_engine
from ui.settings import explain_ui, privacy_ui, settings_ui
from ui.train import (
    baseline_button_ui,
    baseline_ui,
    clients_panel_ui,
    draw_charts,
    events_ui,
    follow_run,
    resume_button_ui,
    start_run,
    stop_run,
    stored_run_ui,
)

st.set_page_config(
    page_title="fedtext: federated learning on Shakespeare", page_icon="🎭", layout="wide"
)
st.markdown(
    "#### :material/theater_comedy: fedtext · a Dickens model learns Shakespeare "
    "by Federated Averaging"
)

MAX_EARLIER = 3  # earlier runs kept on the charts for comparison
KEEP_HEIGHT = 60  # pixels: the row of downloads


def init_session(clients: dict[str, plays.ClientInfo]) -> None:
    """Once per visitor: the link's setup (or the defaults) into the widgets, and an owner id."""
    if "owner" in st.session_state:
        return
    params = st.query_params.to_dict()
    setup, problems = links.setup_from_params(params, clients)
    preset, unknown = links.preset_from_params(params)
    for field, value in setup.items():
        st.session_state[field] = value
    st.session_state.update(
        owner=secrets.token_urlsafe(12),
        problems=problems + unknown,
        earlier=[],  # (label, history) of this visitor's earlier runs, for the charts
        earlier_runs=[],  # (label, run id) of the same runs, for the Compare panel
        pending=None,
        pressed="",  # Train or Stop, until acted on
        notice="",
        run_id=st.query_params.get(links.RUN_PARAM, ""),
        prompt=TUTORIAL_PROMPT,
        length=200,
        temperature=1.0,
        gen_seed=0,
        copy_chars=memorisation.MIN_CHARS,
        client_figures=False,
        preset=preset,
    )


def press(button: str) -> None:
    """Train's or Stop's click, kept until a run of the page has acted on it. A button's own
    value lasts one run, and a rerun that interrupts that run (the first paint's, or another
    click's) would lose it; a callback runs before any run starts."""
    st.session_state.pressed = button


def current_run(engine: backend.Engine, data_root: str) -> backend.RunView | None:
    """This visitor's run, from the link; a warning and a cleared link when it cannot be had."""
    run_id = st.session_state.run_id
    if not run_id:
        return None
    job = engine.job(run_id)
    backend.wait_until_saved(job)  # the stamp below is the stored copy's
    stamp = backend.saved_stamp(engine.store, run_id)
    run, why = backend.find_run(run_id, job, lambda rid: load_saved(data_root, rid, stamp))
    if run is None:
        st.warning(why)
        st.session_state.run_id = ""
        # Kept with the link's other problems, which every run shows until Train: the run after
        # a visitor's first (ui/first_paint.py) would otherwise take the warning away.
        st.session_state.problems = [*st.session_state.problems, why]
    return run


def keep_ui(run: backend.RunView | None, data_root: str) -> None:
    """Downloads of a trained run, and the link that holds the setup."""
    if first_paint.deferred():  # the page's last row: it can wait for the next run
        first_paint.placeholder(KEEP_HEIGHT, "keep")
        return
    keep = st.columns([1, 1, 2.5], vertical_alignment="center")
    if run is not None and run.trained:
        store_dir = store.RunStore(Path(data_root)).path(run.run_id)
        keep[0].download_button(
            "Fine-tuned model (.zip)",
            lambda: links.model_archive(store_dir),
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
        for column in keep[:2]:
            label = "Fine-tuned model (.zip)" if column is keep[0] else "Metrics per round (.csv)"
            column.button(
                label,
                icon=":material/download:",
                disabled=True,
                width="stretch",
                help="Train first",
            )
    keep[2].caption(
        ":material/link: The address bar holds these clients and settings"
        + (" and this run" if st.session_state.run_id else "")
        + ": copy it to hand out the same setup, or to find this run again after a reload."
    )


# ---------------------------------------------------------------- the page, top to bottom

base_dir, data_root = str(base_model_dir()), str(store.data_dir())
loading = st.empty()  # the first start after an install builds the plays' database: seconds
try:
    loading.info("Reading Shakespeare's plays…", icon=":material/hourglass_top:")
    clients = load_clients()
except plays.DataError as error:
    loading.error(f"The page cannot start: {error}.")
    st.stop()
loading.empty()
engine = start_engine(base_dir, data_root)  # TensorFlow loads while the page draws
if "class" in st.query_params:  # a class run's link: the teacher's or a student's page
    class_page(engine, clients, base_dir, data_root)
    st.stop()
init_session(clients)
names = {cid: f"{c.character.title()} ({c.play})" for cid, c in clients.items()}
with st.container():  # messages about the link; one element whatever they are
    for problem in st.session_state.problems:
        st.warning(problem)
    run = current_run(engine, data_root)
live = run is not None and run.live

explain_box = st.container()
clients_col, settings_col, results_col = st.columns([1.15, 0.8, 1.35], gap="medium")
# Filled before the clients' table and the charts (which come in a visitor's second run:
# ui/first_paint.py): the base model's text is part of a usable page.
compare_box = st.container()

with settings_col:
    st.markdown("**2 · Settings**")
    settings = settings_ui(names)
    privacy_box = st.container()  # the run's privacy cost, once the clients are known
    train_col, stop_col = st.columns(2)
    train_col.button(
        "Train",
        icon=":material/play_arrow:",
        type="primary",
        disabled=live,
        width="stretch",
        key="train",
        on_click=press,
        args=("train",),
        help="Fine-tune the base model with these settings",
    )
    stop_col.button(
        "Stop",
        icon=":material/stop:",
        disabled=not live,
        width="stretch",
        key="stop",
        on_click=press,
        args=("stop",),
        help="End after the current round, keeping the model so far (a run that others "
        "with the same settings follow goes on for them)",
    )
    progress = st.empty()
    stored_box = st.container()  # a stored run's label, once the run is known
    if run is not None and run.resumable:
        resume_button_ui(engine, run.run_id)

with clients_col:
    st.markdown("**1 · Clients**: Shakespeare's characters, each with its own lines")
    client_ids = clients_ui(clients)
    chosen = [clients[cid] for cid in client_ids]
    setup = {"client_ids": client_ids, **settings}
    shares = links.averaging_shares(
        chosen,
        settings["batches_per_client"],
        settings["batch_size"],
        settings["weighting"],
        settings["noise_multiplier"],
    )

if st.session_state.pressed == "train":
    try:
        config = FederatedConfig(**{**setup, "client_ids": tuple(client_ids)})
        links.LIMITS.check(config)
    except ConfigError as error:
        progress.error(f"Cannot start training: {error}")
    else:
        if run is not None and len(run.history) > 1:
            label = words.run_label(len(st.session_state.earlier) + 1, run.config)
            st.session_state.earlier = [*st.session_state.earlier, (label, list(run.history))][
                -MAX_EARLIER:
            ]
            runs_kept = [*st.session_state.earlier_runs, (label, run.run_id)]
            st.session_state.earlier_runs = runs_kept[-MAX_EARLIER:]
        st.session_state.problems = []
        start_run(engine, config)  # the stored run with these settings, or a pending one
        run = current_run(engine, data_root)
        live = run is not None and run.live
if st.session_state.pressed == "stop" and live and not stop_run(engine, run, progress):
    run, live = None, False  # the run goes on for others who follow it
st.session_state.pressed = ""
if st.session_state.notice:
    progress.error(st.session_state.notice)
    st.session_state.notice = ""

with compare_box:
    st.markdown("**4 · Compare**: the same prompt and seed through both models")
    st.fragment(compare_panel)(run, base_dir, engine, tuple(client_ids), data_root, names)

with clients_col:
    chosen_ui(chosen, shares)
with explain_box:
    explain_ui(setup, shares)
privacy_ui(privacy_box, setup)

with results_col:
    st.markdown("**3 · Train**: held-out accuracy on the chosen characters' unseen speeches")
    show_earlier = st.toggle(
        "Keep earlier runs on the charts",
        value=True,
        key="show_earlier",
        disabled=not st.session_state.earlier,
    )
    follow_box = st.container()  # filled last: following may rerun the page, after every widget
    pending = st.session_state.pending
    history = run.history if run else []
    if run is not None and not live:  # before the charts, which take the run longest to send
        kind, text = words.describe(run)
        getattr(progress, kind)(text)
        with stored_box:
            stored_run_ui(run)
    draw_charts(
        history,
        run.config.rounds if run else pending.rounds if pending else settings["rounds"],
        st.session_state.earlier if show_earlier else [],
    )
    if run is not None:
        events_ui(run, names)
    if run is not None and run.trained and run.config.attack_client:
        trigger_ui(run)
    if run is not None and run.trained and not run.baseline:
        baseline_button_ui(engine, run.run_id)
    if run is not None and len(run.baseline) > 1:
        baseline_ui(run)
    if run is not None and run.trained:
        lesson_buttons_ui(engine, run)
    if run is not None and run.races:
        races_ui(run)
    if run is not None and run.trained:
        server_view_ui(engine, run, names)
    if run is not None and run.clients:
        clients_panel_ui(run, names)

st.markdown("**5 · Keep**: results and the setup")
keep_ui(run, data_root)
open_class_ui(engine, setup, base_dir, data_root)

params = links.setup_to_params(setup, st.session_state.get("preset", "defaults"))
if st.session_state.run_id:
    params[links.RUN_PARAM] = st.session_state.run_id
if params != st.query_params.to_dict():
    st.query_params.from_dict(params)

if live or st.session_state.pending is not None:
    with follow_box:
        poll.follow(follow_run, base_dir, data_root, len(history))

first_paint.draw_rest_later()  # a visitor's first run left the charts and tables for the next
kept.settle()

if engine.base is not None:
    engine.page_drawn.set()
