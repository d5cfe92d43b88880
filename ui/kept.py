"""Widget values that outlive a run cut short.

Runs of one page overlap: a click, or the first paint's second run (ui/first_paint.py), stops the
run in progress and starts another, and a run ended by a rerun counts for Streamlit as finished,
so the state of widgets it had not reached is dropped as stale (`exec_code`: a RerunException is
not a premature stop). Each widget that sets a run or a text takes its key from `kept`, which
remembers its value under a plain session key and puts it back if it was dropped.
"""

from __future__ import annotations

import streamlit as st

SHADOW = "kept_"  # session keys of the values kept, one per widget key


def kept(key: str) -> str:
    """The widget key, with its value put back first if an interrupted run dropped it."""
    shadow = SHADOW + key
    if key in st.session_state:
        st.session_state[shadow] = st.session_state[key]
    elif shadow in st.session_state:
        st.session_state[key] = st.session_state[shadow]
    return key
