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
drawn trained another run than one pressing before. So `kept` sets the value again the first
time it draws a widget.
"""

from __future__ import annotations

import streamlit as st

SHADOW = "kept_"  # session keys of the values kept, one per widget key
DRAWN = "kept_drawn"  # session key: the widget keys drawn at least once on this page


def restore(key: str) -> None:
    """Puts back a widget's value that an interrupted run dropped; remembers it otherwise."""
    shadow = SHADOW + key
    if key in st.session_state:
        st.session_state[shadow] = st.session_state[key]
    elif shadow in st.session_state:
        st.session_state[key] = st.session_state[shadow]


def kept(key: str) -> str:
    """The key of a widget about to be drawn, its value restored, and set again in the run that
    first draws it, so the browser shows that value."""
    restore(key)
    drawn = st.session_state.setdefault(DRAWN, set())
    if key not in drawn and key in st.session_state:
        st.session_state[key] = st.session_state[key]
    drawn.add(key)
    return key
