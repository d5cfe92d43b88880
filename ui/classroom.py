"""A class run's pages: the teacher's (who has joined; Start, Pause, Stop; the whole class's
figures) and each student's (join with a character or lines of their own; the global model live,
and their own client's figures). app.py routes `?class=` here; fedtext.service.classroom does
the work."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fedtext.config import ConfigError, FederatedConfig
from fedtext.service import classroom as service
from fedtext.service import plots
from fedtext.service.backend import Engine
from fedtext.service.class_run import ClassError, ClassRun, ClassState, Student
from fedtext.service.classroom import Classroom
from fedtext.text import plays
from fedtext.text.prompt import TUTORIAL_PROMPT
from ui import poll, words
from ui.resources import start_engine
from ui.train import page_open

ENGINE_WAIT_S = 120.0  # the most "Open a class run" waits for TensorFlow to load (seconds)
OWN_LINES, CHARACTER = "Lines of my own", "A Shakespeare character"


@st.cache_resource(show_spinner=False)
def load_classroom(base_dir: str, data_root: str) -> Classroom:
    """One classroom per server, over the engine's training queue (ready by now)."""
    return Classroom(start_engine(base_dir, data_root).queue)


def open_class_ui(engine: Engine, setup: dict, base_dir: str, data_root: str) -> None:
    """On the main page: open a class run with this page's settings, and become its teacher."""
    if not st.button(
        "Open a class run",
        icon=":material/groups:",
        key="open_class",
        disabled=bool(engine.error),
        help="A run where every student who opens its link is one client, with these settings"
        " (the chosen characters' held-out speeches measure the global model)",
    ):
        return
    with st.spinner(f"Preparing the server (first start only): {engine.step}…"):
        engine.ready.wait(ENGINE_WAIT_S)
    try:
        if engine.error or not engine.ready.is_set():
            raise ClassError(engine.error or "the server is still starting: try again soon")
        config = FederatedConfig(**{**setup, "client_ids": tuple(setup["client_ids"])})
        run = load_classroom(base_dir, data_root).open(config)
    except (ConfigError, ClassError) as error:
        st.error(f"Cannot open a class run: {error}")
        return
    st.query_params.from_dict(
        {service.CLASS_PARAM: run.class_id, service.TEACHER_PARAM: run.teacher_token}
    )
    st.rerun()


def class_page(engine: Engine, clients: dict[str, plays.ClientInfo], base_dir: str, data_root: str):
    """The teacher's or a student's page of the class run in the link."""
    if not engine.ready.is_set():
        st.info(f"Preparing the server (first start only): {engine.step}…")
        poll.follow(_wait_for_engine, engine)
        return
    if engine.error:
        st.error(engine.error)
        return
    classroom = load_classroom(base_dir, data_root)
    run = classroom.get(st.query_params.get(service.CLASS_PARAM, ""))
    if run is None:
        st.warning(
            "This class run is not open on this server (class runs live in its memory and "
            "end with it): ask your teacher for a new link."
        )
        return
    names = {cid: f"{c.character.title()} ({c.play})" for cid, c in clients.items()}
    token = st.query_params.get(service.TEACHER_PARAM, "")
    if token and classroom.is_teacher(run, token):
        teacher_ui(classroom, run, names)
    elif token:
        st.error("This teacher link is not valid: open the class's link without it to join.")
    else:
        student_ui(classroom, run, names)


def _wait_for_engine(engine: Engine) -> None:
    if engine.ready.is_set():
        st.rerun()


# ---------------------------------------------------------------- the teacher


def teacher_ui(classroom: Classroom, run: ClassRun, names: dict[str, str]) -> None:
    shown = _signature(classroom, run)  # before drawing: a change meanwhile redraws the page
    st.markdown(f"**Your class run** · {len(classroom.present(run))} students present")
    here = (st.context.url or "").split("?")[0]  # None under AppTest: the link alone
    link = f"{here}?{service.CLASS_PARAM}={run.class_id}"
    st.caption(":material/link: Hand out this link: each student who opens it joins as a client")
    with st.container(key="class_link"):
        st.code(link, language=None)
    roster_col, train_col = st.columns([1, 1.3], gap="medium")
    with train_col:
        controls_ui(classroom, run)
        if st.session_state.get("class_notice"):
            st.error(st.session_state.pop("class_notice"))
        status_box = st.container()
    with roster_col:
        roster_ui(classroom, run, names)
    # The status line is sent after the roster it speaks of: a browser that shows "round N done"
    # already shows round N's roster, and the slow parts (the text, the chart) come after both.
    with status_box:
        status_ui(classroom, run)
    with train_col:
        global_model_ui(classroom, run)
    with roster_col:
        if run.clients:
            metric = st.selectbox(
                "Per student, per round",
                list(plots.CLIENT_METRICS),
                format_func=lambda m: plots.CLIENT_METRICS[m][0],
                key="class_metric",
            )
            st.plotly_chart(
                plots.clients_figure(run.clients, metric, run.names()),
                width="stretch",
                key="class-clients-chart",
                config={"displayModeBar": False},
            )
    follow(classroom, run, None, shown)


def controls_ui(classroom: Classroom, run: ClassRun) -> None:
    """Start (or go on), Pause and Stop; how many students a round takes, and the pause
    between rounds for reading the new text."""
    token = st.query_params[service.TEACHER_PARAM]
    buttons = (
        ("Start", ":material/play_arrow:", classroom.start, run.state in _STARTABLE),
        ("Pause", ":material/pause:", classroom.pause, run.state is ClassState.RUNNING),
        ("Stop", ":material/stop:", classroom.stop, not run.state.over),
    )
    for column, (label, icon, action, enabled) in zip(st.columns(3), buttons, strict=True):
        column.button(
            label,
            icon=icon,
            key=f"class_{label.lower()}",
            disabled=not enabled,
            width="stretch",
            on_click=_act,
            args=(action, run.class_id, token),
            type="primary" if label == "Start" else "secondary",
        )
    st.session_state.setdefault("class_per_round", run.per_round)
    st.session_state.setdefault("class_seconds", int(run.seconds_between_rounds))
    per_round, seconds = st.columns(2)
    settings = dict(on_change=_configure, args=(classroom, run.class_id, token))
    per_round.number_input(
        "Students per round",
        0,
        classroom.limits.max_students,
        key="class_per_round",
        help="0: every student present trains every round; else a random sample of them",
        **settings,
    )
    seconds.number_input(
        "Seconds between rounds",
        0,
        int(classroom.limits.max_seconds_between_rounds),
        key="class_seconds",
        help="Time to read the new text before the next round starts",
        **settings,
    )


_STARTABLE = (ClassState.OPEN, ClassState.PAUSED)


def _act(action, class_id: str, token: str) -> None:
    st.session_state.class_notice = action(class_id, token)


def _configure(classroom: Classroom, class_id: str, token: str) -> None:
    per_round, seconds = st.session_state.class_per_round, st.session_state.class_seconds
    st.session_state.class_notice = classroom.configure(class_id, token, per_round, seconds)


def roster_ui(classroom: Classroom, run: ClassRun, names: dict[str, str]) -> None:
    """Who has joined, what they train on, and when they take part; never their lines."""
    present = {s.student_id for s in classroom.present(run)}
    rows = [
        {
            "Student": s.name,
            "Trains on": _source(s, names),
            "From round": s.first_round,
            "Rounds": words.round_spans(s.rounds),
            "Status": "left" if s.left else "here" if s.student_id in present else "away",
        }
        for s in run.students.values()
    ]
    if rows:  # a table, not a data grid: a few dozen rows, in the page's text
        with st.container(key="class_roster"):
            st.table(pd.DataFrame(rows).set_index("Student"))
    else:
        st.info("Nobody has joined yet: hand out the link above.", icon=":material/group_add:")


def _source(student: Student, names: dict[str, str]) -> str:
    if student.character:
        return names.get(student.character, student.character)
    return f"own lines ({student.text_chars - 1:,} characters)"


# ---------------------------------------------------------------- a student


def student_ui(classroom: Classroom, run: ClassRun, names: dict[str, str]) -> None:
    student = classroom.student(run, st.query_params.get(service.STUDENT_PARAM, ""))
    if student is None:
        join_ui(classroom, run, names)
        return
    classroom.touch(run.class_id, student.student_id, page_open())
    shown = _signature(classroom, run)  # before drawing: a change meanwhile redraws the page
    top = st.columns([3, 1], vertical_alignment="center")
    top[0].markdown(
        f"**{student.name}**, you are one client of this class's federation, training on "
        f"{_source(student, names) if student.character else 'your own lines'}."
    )
    top[1].button(
        "Leave",
        icon=":material/logout:",
        key="class_leave",
        width="stretch",
        on_click=_leave,
        args=(classroom, run.class_id, student.student_id),
    )
    status_box = st.container()
    mine_col, global_col = st.columns([1, 1.2], gap="medium")
    with mine_col:
        my_figures_ui(run, student)
    with status_box:  # after the figures it speaks of, as on the teacher's page
        status_ui(classroom, run, student)
    with global_col:
        global_model_ui(classroom, run)
    follow(classroom, run, student, shown)


def join_ui(classroom: Classroom, run: ClassRun, names: dict[str, str]) -> None:
    """Join the class as one client: a name, then a character's lines or lines of one's own."""
    st.markdown("**Join the class run**: your lines train the class's model with everyone's")
    if run.state.over:
        st.warning("This class run has ended: ask your teacher for a new link.")
        return
    name = st.text_input("Your name (or a nickname)", key="class_name", max_chars=40)
    kind = st.radio("Train on", (CHARACTER, OWN_LINES), key="class_kind", horizontal=True)
    character, lines = "", ""
    if kind == CHARACTER:
        character = st.selectbox(
            "Character", sorted(names, key=names.get), format_func=names.get, key="class_character"
        )
    else:
        limits = classroom.limits
        lines = st.text_area(
            "Your lines",
            key="class_lines",
            height=160,
            help=f"{limits.min_text_chars} to {limits.max_text_chars:,} characters. They stay "
            "in the server's memory for this class run only: never on disk, never on another "
            "student's page; only the model's update leaves your client.",
        )
    if st.button("Join", icon=":material/login:", type="primary", key="class_join"):
        try:
            student = classroom.join(run.class_id, name, character, lines, page_open())
        except ClassError as error:
            st.error(f"Cannot join: {error}")
            return
        st.query_params[service.STUDENT_PARAM] = student.student_id
        st.rerun()


def _leave(classroom: Classroom, class_id: str, student_id: str) -> None:
    classroom.leave(class_id, student_id)
    del st.query_params[service.STUDENT_PARAM]


def my_figures_ui(run: ClassRun, student: Student) -> None:
    """This student's client, round by round: what it weighed, how far it moved, how it agreed."""
    st.markdown("**Your client**")
    figures = run.figures_of(student)
    if not figures:
        st.info(
            f"Your first round is round {student.first_round}: your figures appear when it ends.",
            icon=":material/hourglass_top:",
        )
        return
    last = figures[-1]
    cells = st.columns(3)
    cells[0].metric(
        "Share of the average", f"{last.share:.0%}", help=plots.CLIENT_METRICS["share"][0]
    )
    cells[1].metric("Update size", f"{last.update_norm:.3g}", help="The L2 norm of your update")
    cells[2].metric(
        "Agreement", f"{last.cosine:+.2f}", help="Cosine between your update and the average"
    )
    rows = [
        {
            "Round": f.round_num,
            "Share": f"{f.share:.1%}",
            "Update size": f"{f.update_norm:.3g}",
            "Agreement": f"{f.cosine:+.2f}",
            "Own loss before → after": f"{f.loss_before:.3f} → {f.loss_after:.3f}",
        }
        for f in reversed(figures)
    ]
    with st.container(key="class_mine"):
        st.table(pd.DataFrame(rows).set_index("Round"))
    if student.own_lines:
        with st.expander("Your lines (only you see them)"):
            st.text(student.own_lines)


# ---------------------------------------------------------------- both


def status_ui(classroom: Classroom, run: ClassRun, student: Student | None = None) -> None:
    """Where the class run is, for the teacher or for one student."""
    total, done = run.config.rounds, run.rounds_done
    waiting = len(classroom.present(run))
    if run.state is ClassState.OPEN:
        line = f"Waiting for the teacher to start: {waiting} students here"
    elif run.state is ClassState.PAUSED:
        line = f"Paused after round {done} of {total}" + (f" ({run.message})" * bool(run.message))
    elif run.state.over:
        line = {
            ClassState.DONE: f"Trained {total} rounds with the class",
            ClassState.STOPPED: f"Ended after round {done} of {total}: the model so far is kept",
        }.get(run.state, run.message)
    elif run.waiting:
        line = f"Round {done + 1} of {total} waits for a student to join"
    elif run.in_flight:
        line = f"Round {done + 1} of {total} running with {len(run.in_flight)} students"
        if student is not None:
            mine = student.client_id in run.in_flight
            line += ": yours is training" if mine else f": you join at round {student.first_round}"
    else:
        line = f"Round {done} of {total} done; round {done + 1} is next"
    show = {
        ClassState.DONE: st.success,
        ClassState.STOPPED: st.warning,
        ClassState.FAILED: st.error,
    }
    show.get(run.state, st.info)(line, icon=":material/school:")
    if total:
        st.progress(min(1.0, done / total))


def global_model_ui(classroom: Classroom, run: ClassRun) -> None:
    """The class's global model: its held-out accuracy so far, and what it writes now."""
    st.markdown(f"**The class's model** after round {run.rounds_done}")
    with st.container(key="class_text"):
        st.code(classroom.text(run, TUTORIAL_PROMPT), language=None, wrap_lines=True)
    st.plotly_chart(
        plots.figure(run.history, "accuracy", run.config.rounds),
        width="stretch",
        key="class-accuracy-chart",
        config={"displayModeBar": False},
    )


def follow(classroom: Classroom, run: ClassRun, student: Student | None, shown: tuple) -> None:
    """Poll while the class run may change; redraw the page when it has changed from `shown`,
    what it was when this run began to draw it."""
    args = (classroom, run.class_id, student.student_id if student else "", shown)
    if run.state.over:
        _poll(*args)
    else:
        poll.follow(_poll, *args)


def _poll(classroom: Classroom, class_id: str, student_id: str, shown: tuple) -> None:
    run = classroom.get(class_id)
    if run is None:
        st.rerun()
    if student_id:
        classroom.touch(class_id, student_id, page_open())
    if _signature(classroom, run) != shown:
        st.rerun()


def _signature(classroom: Classroom, run: ClassRun) -> tuple:
    """What the pages show changes with."""
    present = tuple(s.student_id for s in classroom.present(run))
    return run.state, run.rounds_done, run.in_flight, run.waiting, len(run.students), present
