"""glibc's allocator in the page's long-lived service process: fewer arenas, large blocks given
back as soon as they are freed, and what a training run freed handed back after it.

glibc gives each thread that allocates at once an arena of its own, up to 8 per core, and keeps
what a thread freed in its arena for that arena's next allocations; blocks past a threshold
(128 KB at first) are mapped on their own and unmapped when freed, but the threshold rises to
the largest such block freed, up to 32 MB. The page's service allocates from many threads
(Streamlit's, the engine's, gRPC's, TensorFlow's pools, the training queue), and every round
moves the 16 MB model and its 16 MB of optimizer state through gRPC messages and NumPy and
TensorFlow buffers: once the threshold has risen, those copies land in several arenas and stay
resident there. With both settings from its start, a process running the engine's steps and the
page's default run (2 clients) peaked at 1.09 GB instead of 1.27 GB over 10 rounds; the page's
service, which sets them when its engine starts, at 1.46 GB instead of 1.60 GB over 17 to 19
rounds. A round's CPU time moved within the noise (8.2 s against 7.9 to 8.6 s, page and worker).
Both functions do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

ARENAS = 2
MMAP_THRESHOLD = 1 << 20  # blocks of 1 MB and more: the model's arrays and messages, not the rest
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # mallopt's parameter numbers, from glibc's malloc.h


@functools.cache
def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def configure(arenas: int = ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Threads that need an arena from now on share at most `arenas` of them (arenas that exist
    already are kept), as MALLOC_ARENA_MAX would; blocks of `mmap_threshold` bytes and more are
    always mapped on their own, so freeing one returns it to the system at once, as
    MALLOC_MMAP_THRESHOLD_ would. Early in the process is best, before TensorFlow starts its
    thread pools. True where both took effect."""
    libc = _glibc()
    if libc is None:
        return False
    limited = libc.mallopt(_M_ARENA_MAX, arenas)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and limited)


def release_free_memory() -> None:
    """Hand memory that is free in every arena back to the system (glibc's malloc_trim): after
    a training run, 200 to 250 MB that the process would otherwise keep resident. It walks
    every arena once, holding each one's lock meanwhile, so it belongs between runs, not inside
    one."""
    libc = _glibc()
    if libc is None:
        return
    try:
        libc.malloc_trim(0)
    except Exception:  # never worth failing a caller for
        logging.getLogger(__name__).debug("malloc_trim failed", exc_info=True)
