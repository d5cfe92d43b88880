"""Widget values that outlive an interrupted run of the page.

A run that a newer request interrupts (a click during the first paint's second run, or during
another's, which happens often on a loaded machine) counts for Streamlit as a finished run: the
state of the widgets it had not reached yet is dropped as stale (`exec_code`: a RerunException is
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
