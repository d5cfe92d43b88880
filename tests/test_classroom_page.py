"""A class run's pages through Streamlit's AppTest: the teacher opens it from the page, two
students join (a character, their own lines), the teacher starts it, real TFF rounds on the tiny
model, and each student's page shows its own client's figures and the global model's text."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.classroom

APP = Path(__file__).resolve().parent.parent / "app.py"
EVALUATE_ON = ["KING_LEAR_FOOL"]
OWN_LINES = (
    "Beneath the orchard wall we kept a lantern and a drum,\n"
    "and counted every swallow that came home before the sun.\n"
)


def page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, at.exception
    return at


def rerun_until(at: AppTest, done, timeout: float = 300, what: str = "", others=()) -> AppTest:
    """Rerun the page (and `others`: the students' heartbeats), as their polling would, until
    `done(at)`."""
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s"
        time.sleep(0.3)
        for page_ in (at, *others):
            page_.run()
            assert not page_.exception, page_.exception
    return at


def texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "info", "success", "error", "code", "text")
        for e in at.get(kind)
    ]
    parts += [frame.value.to_string() for frame in at.table]
    return "\n".join(map(str, parts))


def test_teacher_opens_a_class_run_students_join_and_follow_it(page_env, monkeypatch):
    teacher = page()
    teacher.multiselect(key="client_ids").set_value(EVALUATE_ON)
    teacher.number_input(key="rounds").set_value(2)
    teacher.number_input(key="batches_per_client").set_value(1)
    teacher.button(key="open_class").click().run(timeout=240)  # waits for the engine
    assert not teacher.exception, teacher.exception
    class_id = teacher.query_params["class"][0]
    assert teacher.query_params["teacher"][0]
    assert any("Nobody has joined yet" in i.value for i in teacher.info)
    assert teacher.button(key="class_pause").disabled

    ada = page({"class": class_id})
    ada.text_input(key="class_name").input("Ada")
    ada.selectbox(key="class_character").set_value("KING_LEAR_KENT")
    ada.button(key="class_join").click().run()
    assert "student" in ada.query_params, [e.value for e in ada.error]
    assert "you are one client" in texts(ada)

    ben = page({"class": class_id})
    ben.text_input(key="class_name").input("Ben")
    ben.radio(key="class_kind").set_value("Lines of my own")
    ben.run()
    ben.text_area(key="class_lines").input("Too short.")
    ben.button(key="class_join").click().run()
    assert [e.value for e in ben.error] == [
        "Cannot join: paste at least 101 characters (a few lines); these are 10"
    ]
    ben.text_area(key="class_lines").input(OWN_LINES)
    ben.button(key="class_join").click().run()
    assert "student" in ben.query_params, [e.value for e in ben.error]

    # A wrong teacher token is no teacher.
    stranger = page({"class": class_id, "teacher": "x" * 22})
    assert "not valid" in stranger.error[0].value

    teacher.run()
    [roster] = teacher.table
    assert list(roster.value.index) == ["Ada", "Ben"]
    assert list(roster.value["Trains on"]) == ["Kent (King Lear)", "own lines (111 characters)"]
    assert list(roster.value["Status"]) == ["here", "here"]
    assert OWN_LINES.split()[0] not in texts(teacher)  # the teacher sees no student's lines
    teacher.button(key="class_start").click().run()
    rerun_until(
        teacher,
        lambda at: any("Trained 2 rounds" in s.value for s in at.success),
        what="the class's rounds",
        others=(ada, ben),
    )
    [roster] = teacher.table
    assert list(roster.value["Rounds"]) == ["1-2", "1-2"]
    for student in (ada, ben):
        student.run()
        assert not student.exception, student.exception
        assert [m.label for m in student.metric] == [
            "Share of the average",
            "Update size",
            "Agreement",
        ]
        [mine] = student.table
        assert list(mine.value.index) == [2, 1]
        assert student.code[0].value.startswith("What of TensorFlow Federated")
    assert ada.code[0].value == ben.code[0].value  # one global model
    assert "Beneath the orchard wall" in texts(ben)  # her own lines, on her own page only
    assert "Beneath the orchard wall" not in texts(ada)
    shares = [float(s.metric[0].value.rstrip("%")) for s in (ada, ben)]
    assert sum(shares) == pytest.approx(100, abs=1.5)  # rounded to whole percents

    # Streamlit sends a run's elements in the order it draws them: each page draws its status
    # line after the roster (teacher) or the figures (student) it speaks of, so a browser that
    # shows "round N done" shows round N's; the slow text comes last.
    drawn = []
    for name in ("status_ui", "roster_ui", "my_figures_ui", "global_model_ui"):
        monkeypatch.setattr(ui.classroom, name, recorded(getattr(ui.classroom, name), drawn))
    teacher.run()
    assert drawn == ["roster_ui", "status_ui", "global_model_ui"]
    drawn.clear()
    ada.run()
    assert drawn == ["my_figures_ui", "status_ui", "global_model_ui"]


def recorded(draw, drawn: list[str]):
    """`draw`, noting its name in `drawn` each time it is called."""

    def drawing(*args, **kwargs):
        drawn.append(draw.__name__)
        return draw(*args, **kwargs)

    return drawing
