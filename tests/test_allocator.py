"""glibc's allocator settings for the page's service process (fedtext.service.allocator): the
mmap threshold it sets is the one glibc then uses, read back through glibc's own mallinfo2.

Checked in a fresh interpreter, as the service sets it before TensorFlow loads: in a process
where TensorFlow has loaded (the rest of the suite), large blocks are no longer mapped apart."""

import ctypes
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedtext.service import allocator

_M_MMAP_THRESHOLD = -3


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33 and later), every field a size_t."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def mapped_bytes(libc) -> int:
    """Bytes glibc holds in blocks mapped on their own (mallinfo2's hblkhd)."""
    return libc.mallinfo2().hblkhd


def is_mapped_on_its_own(libc, size: int) -> bool:
    """Whether a malloc of `size` bytes gets a mapping of its own (as the threshold says)."""
    before = mapped_bytes(libc)
    block = libc.malloc(size)
    try:
        return mapped_bytes(libc) - before >= size
    finally:
        libc.free(block)


def test_the_threshold_it_sets_is_the_one_glibc_uses():
    libc = allocator._glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("not glibc 2.33 or later")
    here = Path(__file__).resolve().parent
    code = f"import sys; sys.path[:0] = [{str(here)!r}]; import test_allocator as t; t.check()"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=here.parent, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "checked"


def check() -> None:
    """The threshold's check, in this process (a fresh one: see the module's docstring)."""
    assert "tensorflow" not in sys.modules
    libc = allocator._glibc()
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # Another threshold first (4 MB), so only configure() can bring it to 1 MB.
    libc.mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    assert not is_mapped_on_its_own(libc, 2 << 20)
    assert allocator.configure() is True
    assert is_mapped_on_its_own(libc, 2 << 20)  # the model's arrays: given back when freed
    assert not is_mapped_on_its_own(libc, 600 << 10)  # below 1 MB: from the arenas
    allocator.release_free_memory()
    big = np.ones(4 << 20, np.uint8)
    assert int(big.sum()) == 4 << 20  # allocations still work after the trim
    print("checked")
