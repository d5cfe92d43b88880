"""A page's poll of something live (its run, its class run), and the watchdog that restarts it.

A page follows a live run through a fragment that Streamlit reruns every EVERY_S (`run_every`). In
the class test, a student's page stopped polling for good (twice in two runs) at the moment the
teacher pressed Start, when every page reruns at once: the server logged that page's last poll and
never another, while the page went on showing the class before Start (Streamlit 1.52; its later
releases reworked these timers; the cause inside Streamlit was not found). So each poll leaves the
time in the browser, and a watchdog outside the fragment reruns the whole page when no poll has
come for STALE_S and no run is in progress: a full run registers the fragment and arms its timer
afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st
from streamlit.runtime import Runtime

EVERY_S = 1.0  # how often a page polls: the live figures, and the heartbeat of its follower
STALE_S = 15.0  # no poll for this long, and no run in progress: the poll has stopped


def follow(poll: Callable[..., None], *args) -> None:
    """Run `poll(*args)` now and every EVERY_S in a fragment, with the watchdog beside it."""
    if _in_browser():
        _watchdog(
            key="poll_watchdog",
            data={"stale_ms": int(STALE_S * 1000)},
            on_stale_change=_nothing,
            height=0,
        )
    st.fragment(_stamped, run_every=EVERY_S)(poll, *args)


def _stamped(poll: Callable[..., None], *args) -> None:
    if _in_browser():  # the browser notes the poll's time (the data differ at every poll)
        _stamp(key="poll_stamp", data={"at": time.monotonic()}, height=0)
    poll(*args)


def _in_browser() -> bool:
    return type(Runtime.instance()) is Runtime  # not AppTest's stand-in, which has no browser


def _nothing() -> None:
    """The trigger's callback: its value is not read, the rerun it causes is what is wanted."""


_stamp = st.components.v2.component(
    "poll_stamp",
    js="""
export default function () {
  window.fedtextPolled = Date.now();
}
""",
)

# One timer per mounted watchdog: Streamlit calls the function again when its arguments change,
# and calls only the last cleanup, when the element goes.
_watchdog = st.components.v2.component(
    "poll_watchdog",
    js="""
export default function ({ parentElement, data, setTriggerValue }) {
  parentElement.fedtextRerun = setTriggerValue;
  if (!parentElement.fedtextTimer) {
    window.fedtextPolled = Date.now();
    const running = '[data-testid="stStatusWidget"] [aria-label="Running..."]';
    parentElement.fedtextTimer = setInterval(() => {
      if (Date.now() - window.fedtextPolled > data.stale_ms && !document.querySelector(running)) {
        window.fedtextPolled = Date.now();
        parentElement.fedtextRerun("stale", true);
      }
    }, 1000);
  }
  return () => clearInterval(parentElement.fedtextTimer);
}
""",
)
