"""A visitor's first paint: their first run leaves out what a visitor does not need first and
costs most to draw (the Plotly charts, the clients' table and lines, the copy probe and the
downloads), each behind a box of its height, and the browser asks for the rest once it has
drawn that run.

Chromium draws a Streamlit page in one piece as its elements arrive; on a small machine the
Plotly charts alone took it seconds, during which Train and the base model's text were not
there to use. The second run is an ordinary rerun of the page: a widget touched before it comes
does the same.

Every widget in sight is drawn in the first run all the same. A widget first drawn in a later
run took its value from the browser, and a rerun racing a visitor's click (under load the
browser's request for the second run can land in the middle of the run a click started) once
sent an empty prompt: values that set a run or a text stay with Streamlit's ordinary widget
state. Only the widgets of folded expanders wait (`folded`): each keeps its value under `kept`,
which also sends the browser that value when they are drawn, and they were a third of the first
run's widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime import Runtime

if TYPE_CHECKING:
    import plotly.graph_objects as go

PAINTED = "first_paint_done"  # session key: this visitor's page has had its light run


def deferred() -> bool:
    """Whether this run is a visitor's first, which leaves the heavy elements for the next."""
    return not st.session_state.get(PAINTED, False)


def folded(expanded: bool) -> bool:
    """Whether a folded expander's widgets wait for the next run: nobody sees them before they
    open it, and the values they set stay in the session meanwhile (ui/kept.py)."""
    return deferred() and not expanded


def placeholder(height: int, name: str) -> None:
    """An empty box of an element's height where it will be, so nothing moves when it comes."""
    st.container(height=height, border=False, key=f"later_{name}")


def plotly_chart(make_figure: Callable[[], go.Figure], height: int, key: str) -> None:
    """A Plotly chart the width of its column, or on a first run its placeholder (the figure is
    not even made: building and sending it is a good part of the server's run too)."""
    if deferred():
        placeholder(height, key)
        return
    st.plotly_chart(make_figure(), width="stretch", key=key, config={"displayModeBar": False})


def draw_rest_later() -> None:
    """At the end of a visitor's first run: a script in the browser asks for the next run once
    the elements above are mounted and painted (two animation frames after it mounts, itself
    last on the page). A timer would not do: firing between two slices of drawing, its rerun
    replaced widgets not yet mounted, which then showed their defaults, not the link's values."""
    if not deferred():
        return
    st.session_state[PAINTED] = True
    if type(Runtime.instance()) is Runtime:  # not AppTest's stand-in, which has no browser
        _painted(key="first_paint", on_painted_change=_nothing, height=0)


def _nothing() -> None:
    """The trigger's callback: its value is not read, the rerun it causes is what is wanted."""


_painted = st.components.v2.component(
    "first_paint",
    js="""
export default function ({ setTriggerValue }) {
  requestAnimationFrame(() => requestAnimationFrame(() => setTriggerValue("painted", true)));
}
""",
)
