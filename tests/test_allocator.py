"""glibc's allocator settings for the page's server process (fedtext.service.allocator)."""

import numpy as np

from fedtext.service import allocator


def test_settings_and_trim_leave_allocations_working():
    allocator.configure()  # True under glibc; a no-op elsewhere
    big = np.ones(4 << 20, np.uint8)  # above the mmap threshold: mapped on its own
    small = [bytes(1000) for _ in range(1000)]
    del small
    allocator.release_free_memory()
    assert int(big.sum()) == 4 << 20
