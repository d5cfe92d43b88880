"""Identical runs are one run: a run's identity (its settings, clients and seed) and the visitors
who follow one job, each with a heartbeat of their own. The queue's lock guards a job's followers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from fedtext.config import FederatedConfig


def run_key(config: FederatedConfig) -> str:
    """A run's identity: every field of its config that it uses (settings, clients, seed),
    hashed. Two requests with the same key train the same rounds to the same weights, so one
    run serves both. Computed, never stored: a field added later makes older runs differ, never
    match wrongly."""
    text = json.dumps(asdict(config.as_run()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Follower:
    """One visitor's page on a job."""

    owner: str
    # Whether the page is still connected, where the server can tell: a browser throttles a
    # hidden tab's polling, and that must not look like a closed page.
    page_open: Callable[[], bool] | None = None
    last_seen: float = field(default_factory=time.monotonic)


class Followers:
    """The visitors following one job, by owner, in the order they came."""

    def __init__(self, owner: str = "", page_open: Callable[[], bool] | None = None):
        self._by_owner: dict[str, Follower] = {}
        if owner:
            self.add(owner, page_open)

    def add(self, owner: str, page_open: Callable[[], bool] | None = None) -> None:
        """A visitor joins (or, already following, gets a fresh heartbeat)."""
        follower = self._by_owner.setdefault(owner, Follower(owner, page_open))
        follower.page_open = page_open or follower.page_open
        follower.last_seen = time.monotonic()

    def touch(self, owner: str, page_open: Callable[[], bool] | None = None) -> None:
        """A page's heartbeat; a page that polls a live run it did not ask for follows it."""
        self.add(owner, page_open)

    def touch_all(self) -> None:
        now = time.monotonic()
        for follower in self._by_owner.values():
            follower.last_seen = now

    def remove(self, owner: str) -> None:
        self._by_owner.pop(owner, None)

    def prune(self, timeout: float) -> None:
        """Drop the followers whose page has gone: closed where the server can tell, else
        silent for longer than `timeout`."""
        now = time.monotonic()
        for owner, follower in list(self._by_owner.items()):
            if follower.page_open is not None and follower.page_open():
                follower.last_seen = now
            elif now - follower.last_seen > timeout:
                del self._by_owner[owner]

    def reset(self, owner: str, page_open: Callable[[], bool] | None = None) -> None:
        """Only `owner` follows from now on (an extra a finished run's visitor asked for;
        the others follow again once their page polls)."""
        self._by_owner.clear()
        self.add(owner, page_open)

    @property
    def owners(self) -> tuple[str, ...]:
        return tuple(self._by_owner)

    def __contains__(self, owner: object) -> bool:
        return owner in self._by_owner

    def __len__(self) -> int:
        return len(self._by_owner)
