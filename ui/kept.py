"""Widget values that outlive a run cut short, and widgets first drawn in a later run.

Runs of one page overlap: a click, or the first paint's second run (ui/first_paint.py), stops the
run in progress and starts another, and a run ended by a rerun counts for Streamlit as finished,
so the state of widgets it had not reached is dropped as stale (`exec_code`: a RerunException is
not a premature stop). Each widget that sets a run or a text takes its key from `kept`, which
remembers its value under a plain session key and puts it back if it was dropped.

Streamlit sends a widget its value only when the key was set in the same run (`register_widget`:
`is_new_state_value`). A widget drawn first in a later run than its value was set (a folded
expander's, set from the link in the visitor's first run) showed its first choice instead, and
the browser sent that back with the next click: a page pressing Train after its settings were
drawn trained another run than one pressing before. So `kept` sets the value again in each run
that draws a widget until a run that drew it has ended (`settle`, the page's last line): a run cut
short by a rerun may not have sent its elements, as Streamlit drops what is still queued for the
browser when the next run starts. Only until then: a value set again in every run would undo text
a visitor is typing whenever the page reruns.
"""

from __future__ import annotations

import streamlit as st

SHADOW = "kept_"  # session keys of the values kept, one per widget key
DRAWN = "kept_drawn"  # session key: the widget keys drawn by a run of this page that ended
DRAWING = "kept_drawing"  # session key: the widget keys drawn by this run so far


def restore(key: str) -> None:
    """Puts back a widget's value that an interrupted run dropped; remembers it otherwise."""
    shadow = SHADOW + key
    if key in st.session_state:
        st.session_state[shadow] = st.session_state[key]
    elif shadow in st.session_state:
        st.session_state[key] = st.session_state[shadow]


def kept(key: str) -> str:
    """The key of a widget about to be drawn, its value restored, and set again until a run that
    drew it has ended, so the browser shows that value."""
    restore(key)
    if key not in st.session_state.get(DRAWN, ()) and key in st.session_state:
        st.session_state[key] = st.session_state[key]
    st.session_state.setdefault(DRAWING, set()).add(key)
    return key


def settle() -> None:
    """At the end of a page's run: the widgets it drew have their values in the browser."""
    st.session_state.setdefault(DRAWN, set()).update(st.session_state.pop(DRAWING, ()))
