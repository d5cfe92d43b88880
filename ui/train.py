"""Section 3, training: the charts each round lands on, the progress line that follows a live
run (shared by everyone who asked for the same settings), a stored run shown at once, how a run
ended, and the centralised baseline beside it."""

from __future__ import annotations

import time

import streamlit as st

from fedtext.config import FederatedConfig
from fedtext.learning.records import RoundResult
from fedtext.service import backend, plots
from ui import first_paint, words
from ui.kept import kept
from ui.resources import load_preview, start_engine


def draw_charts(history: list[RoundResult], rounds: int, earlier: list) -> None:
    """The loss and accuracy charts, this run's rounds over earlier runs'."""
    # A radio, not a segmented control: Streamlit's AppTest cannot read the latter's state.
    x_axis = st.radio(
        "Along x",
        list(plots.X_AXES),
        format_func=plots.X_AXES.get,
        horizontal=True,
        key=kept("x_axis"),
        help="Rounds, what they sent (the model down to each client, the updates up), or the "
        "CPU time they took: FedSGD needs more rounds, compression fewer bytes",
    )
    for metric in ("loss", "accuracy"):
        first_paint.plotly_chart(
            lambda metric=metric: plots.figure(history, metric, rounds, earlier, x_axis or "round"),
            plots.HEIGHT,
            f"{metric}-chart",
        )


def events_ui(run: backend.RunView, names: dict[str, str]) -> None:
    """Under the charts: the attack's success each round, and who dropped out or lagged."""
    if run.config.attack_client:
        st.markdown(words.backdoor_caption(run, names))
    lines = words.round_events(run.history, names)
    if lines:
        with st.expander(f"Drop-outs and stragglers ({len(lines)} rounds)", expanded=False):
            st.markdown("\n".join(f"- {line}" for line in lines))


def follow_run(base_dir: str, data_root: str, rounds_shown: int) -> None:
    """The progress line of this visitor's pending or live run: a poll (ui/poll.py), each one
    the run's heartbeat, so it is kept cheap; when a round lands or the run ends it reruns the
    page, which redraws the charts and the texts."""
    status = st.empty()
    engine = start_engine(base_dir, data_root)
    if st.session_state.pending is not None:
        if not engine.ready.is_set():
            status.progress(0.0, text=f"Preparing the server (first start only): {engine.step}…")
            return
        config, st.session_state.pending = st.session_state.pending, None
        fresh, st.session_state.fresh = st.session_state.get("fresh", False), False
        got = backend.submit(engine, config, st.session_state.owner, page_open(), fresh)
        st.session_state.notice = got.why
        st.session_state.run_id = got.run_id or st.session_state.run_id
        st.session_state.stored_run = got.run_id if got.how == "stored" else ""
        st.rerun()
    run_id = st.session_state.run_id
    progress = backend.follow(engine, run_id, rounds_shown, st.session_state.owner, page_open())
    if progress is None:
        st.rerun()
    fraction, text = progress
    status.progress(fraction, text=text + company_text(engine, run_id))


def company_text(engine: backend.Engine, run_id: str) -> str:
    """Who else follows this run, and, while it waits, why: how many runs train at once here."""
    job = engine.job(run_id)
    if job is None:
        return ""
    others = len(job.followers) - 1
    text = f" · you and {others} other{'s' * (others != 1)} follow this run" if others else ""
    if job.state is backend.JobState.QUEUED:
        runs, groups, cores = engine.queue.parallelism
        at_once = "one run at a time" if runs == 1 else f"{runs} runs at once"
        why = (
            f"one per group of `fedtext worker`s ({groups})"
            if groups
            else f"on its {cores} cores" + (", a TFF worker per 2" if runs > 1 else "")
        )
        text += f" · this server trains {at_once}, {why}"
    return text


def start_run(engine: backend.Engine, config: FederatedConfig) -> None:
    """Train pressed: the stored run with these settings at once, if there is one (no need to
    wait for TensorFlow); else the run is pending until the engine takes it."""
    stored = backend.stored_run(engine, config)
    st.session_state.stored_run = stored.run_id if stored else ""
    st.session_state.run_id = stored.run_id if stored else ""
    st.session_state.pending = None if stored else config


def stop_run(engine: backend.Engine, run: backend.RunView, status) -> bool:
    """Stop pressed: this visitor stops following; the run stops once nobody follows it.
    Returns whether the page still shows the run (False: it goes on for the others)."""
    if backend.stop(engine, run.run_id, st.session_state.owner):
        return True
    st.session_state.run_id = ""
    status.info(
        "You stopped following the run: the others who asked for the same settings still "
        "follow it, so it goes on for them.",
        icon=":material/group:",
    )
    return False


def stored_run_ui(run: backend.RunView) -> None:
    """Says that the run shown was trained before (a visitor's Train found it stored), and
    offers to train it afresh."""
    if not run.created or st.session_state.get("stored_run") != run.run_id:
        return
    when = time.strftime("%d %b %Y at %H:%M UTC", time.gmtime(run.created))
    st.info(
        f"Stored run: these clients, settings and seed were trained on {when}, so it is "
        "shown at once.",
        icon=":material/inventory_2:",
    )
    st.button(
        "Train afresh",
        icon=":material/replay:",
        key="afresh",
        width="stretch",
        on_click=_train_afresh,
        args=(run.config,),
        help="Train these settings again and watch the rounds land; the same settings and "
        "seed give the same model",
    )


def _train_afresh(config: FederatedConfig) -> None:
    st.session_state.update(pending=config, fresh=True, run_id="", stored_run="")


def page_open():
    """A check that this visitor's page is still connected, where the server can tell."""
    try:
        from streamlit.runtime import Runtime
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        runtime, session_id = Runtime.instance(), get_script_run_ctx().session_id
    except Exception:
        return None
    if type(runtime) is not Runtime:  # AppTest's stand-in: the page's polls alone keep it alive
        return None
    return lambda: runtime.is_active_session(session_id)


def baseline_button_ui(engine: backend.Engine, run_id: str) -> None:
    st.button(
        "Centralised baseline",
        icon=":material/compare_arrows:",
        key="baseline",
        on_click=_request_baseline,
        args=(engine, run_id),
        help="Train the same base model on these characters' lines pooled in one place, for "
        "the CPU time the federated rounds took",
    )


def _request_baseline(engine: backend.Engine, run_id: str) -> None:
    st.session_state.notice = backend.request_baseline(engine, run_id, st.session_state.owner)


def baseline_ui(run: backend.RunView) -> None:
    """Federated against centralised at equal CPU time, and what the gap buys."""
    first_paint.plotly_chart(
        lambda: plots.baseline_figure(run.history, run.baseline), plots.HEIGHT, "baseline-chart"
    )
    st.caption(words.baseline_caption(run.history, run.baseline))


def resume_button_ui(engine: backend.Engine, run_id: str) -> None:
    st.button(
        "Resume",
        icon=":material/resume:",
        key="resume",
        width="stretch",
        on_click=_resume,
        args=(engine, run_id),
        help="Go on from the last finished round with a fresh TFF worker",
    )


def _resume(engine: backend.Engine, run_id: str) -> None:
    st.session_state.notice = backend.request_resume(engine, run_id)


def clients_panel_ui(run: backend.RunView, names: dict[str, str]) -> None:
    """Rounds x clients: who had a say, who moved, who agreed; and a client's own lines."""
    metric_col, client_col = st.columns([1.2, 1])
    metric = metric_col.selectbox(
        "Per client, per round",
        list(plots.CLIENT_METRICS),
        format_func=lambda m: plots.CLIENT_METRICS[m][0],
        key="client_metric",
    )
    names = {cid: names[cid] for cid in run.config.client_ids if cid in names}
    first_paint.plotly_chart(
        lambda: plots.clients_figure(run.clients, metric, names),
        plots.clients_figure_height(len(names)),
        "clients-chart",
    )
    weighting = (
        "weighted by their text: the bigger talkers get the bigger say"
        if run.config.weighting == "weighted"
        else "uniform: one vote each, however much they said"
    )
    st.caption(
        f"Averaging {weighting}. An update that agrees with the average (cosine near 1) pulled "
        "the model where the others did; a loss drop is what local training did to the "
        "character's own batches."
    )
    client_id = client_col.selectbox(
        "Read a client's lines", list(names), format_func=names.get, key="panel_client"
    )
    if client_id:
        with st.container(height=120, key="panel_lines"):
            for speech in load_preview(client_id):
                st.text(speech)
