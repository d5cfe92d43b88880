"""The memorisation probe: spans of a generated text copied verbatim from clients' training lines.

A suffix array over every client's training text (NumPy, no TensorFlow), built once per data
build and stored beside the client database; a query looks up each position of the generated
text in it by binary search, so a probe costs milliseconds however large the corpus."""

from __future__ import annotations

import html
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtext.config import ConfigError
from fedtext.text.plays import database_path, load_texts
from fedtext.text.vocab import CHARS

# A copy is at least this long (issue 14's default). Even 12 characters are often shared idiom:
# held-out Hamlet has 709 per 1,000 in copies from some play (docs/privacy.md), so read a count
# against the base model's own.
MIN_CHARS = 12
INDEX_VERSION = "1"  # bump when the index's layout changes, so stored ones rebuild

# Codes: 0 pads past the end, 1 separates two clients' texts (no copy crosses it), and the
# vocabulary's characters are 2..87, all below 128, so 9 of them pack into one uint64 key.
_END, _SEPARATOR, _UNKNOWN = 0, 1, 127  # _UNKNOWN: a query character no training text has
_CODE = {c: i + 2 for i, c in enumerate(CHARS)}
_PACKED = 9  # characters per packed key: 9 x 7 bits = 63 bits
_BITS = 7


@dataclass(frozen=True)
class Copy:
    """A piece of the generated text found verbatim in one client's training text."""

    start: int  # in the generated text; `end` is exclusive
    end: int
    client_id: str
    line: str  # the training line(s) it came from, whole
    offset: int  # where the copy starts in that client's training text


@dataclass(frozen=True)
class Span:
    """A stretch of the generated text to highlight: overlapping copies merged into one."""

    start: int
    end: int
    copies: tuple[Copy, ...]  # each at least min_chars long, the longest first

    @property
    def client_id(self) -> str:
        """The client of the longest copy in the span."""
        return self.copies[0].client_id

    @property
    def line(self) -> str:
        return self.copies[0].line


@dataclass(frozen=True)
class Probe:
    """What a generated text copied: non-overlapping spans, in order."""

    spans: tuple[Span, ...]
    generated_chars: int
    min_chars: int

    @property
    def copied_chars(self) -> int:
        return sum(s.end - s.start for s in self.spans)

    @property
    def per_thousand(self) -> float:
        """Copied characters per 1,000 generated."""
        return 1000 * self.copied_chars / self.generated_chars if self.generated_chars else 0.0


class CopyIndex:
    """Every client's training text and its suffix array."""

    def __init__(self, codes: np.ndarray, suffixes: np.ndarray, starts: np.ndarray, ids):
        self.codes = codes  # uint8: the clients' texts, one after another, separated
        self.text = codes.tobytes()  # the same, for fast slicing and comparison in Python
        self.suffixes = suffixes  # int32: text positions in the order of their suffixes
        self.keys = _packed_keys(codes)[suffixes]  # sorted: each suffix's first 9 characters
        self.starts = starts  # int64: where each client's text starts
        self.client_ids = [str(i) for i in ids]
        self._number = {cid: n for n, cid in enumerate(self.client_ids)}

    def client_numbers(self, client_ids: Iterable[str] | None) -> np.ndarray:
        """A mask over the clients: those named, or all; unknown ids are refused."""
        mask = np.zeros(len(self.client_ids), bool)
        if client_ids is None:
            mask[:] = True
            return mask
        for cid in client_ids:
            if cid not in self._number:
                raise ConfigError(f"unknown client id {cid!r} for the memorisation probe")
            mask[self._number[cid]] = True
        return mask

    def client_text(self, number: int) -> str:
        end = self.starts[number + 1] - 1 if number + 1 < len(self.starts) else len(self.codes)
        return decode(self.codes[self.starts[number] : end])


def encode(text: str) -> np.ndarray:
    """The probe's codes for a text; characters outside the vocabulary match nothing."""
    return np.fromiter((_CODE.get(c, _UNKNOWN) for c in text), np.uint8, len(text))


_CHAR_OF = np.array(["", "\x00", *CHARS] + ["\ufffd"] * (128 - len(CHARS) - 2))


def decode(codes: np.ndarray) -> str:
    return "".join(_CHAR_OF[codes])


def _packed_keys(codes: np.ndarray) -> np.ndarray:
    """Each position's next 9 characters as one integer, padded with 0 past the end: sorting
    these sorts the suffixes by their first 9 characters."""
    padded = np.concatenate([codes, np.zeros(_PACKED, np.uint8)]).astype(np.uint64)
    keys = np.zeros(len(codes), np.uint64)
    for j in range(_PACKED):
        keys = (keys << np.uint64(_BITS)) | padded[j : j + len(codes)]
    return keys


def suffix_array(codes: np.ndarray) -> np.ndarray:
    """Text positions sorted by their suffixes, by prefix doubling in NumPy (O(n log n)).

    Ranks start from the packed first 9 characters, so the doubling starts at 9, not 1.
    """
    n = len(codes)
    if n == 0:
        return np.zeros(0, np.int32)
    _, rank = np.unique(_packed_keys(codes), return_inverse=True)
    rank = rank.astype(np.int64) + 1  # 0 is reserved for "past the end"
    order = np.argsort(rank, kind="stable")
    span = _PACKED
    while rank.max() < n:  # some suffixes still tie
        following = np.zeros(n, np.int64)
        following[: n - span] = rank[span:]
        key = rank * (n + 1) + following
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        new_rank = np.empty(n, np.int64)
        new_rank[order] = np.concatenate([[1], 1 + np.cumsum(ordered[1:] != ordered[:-1])])
        rank = new_rank
        span *= 2
    return order.astype(np.int32)


def _read_clients(database: Path) -> tuple[list[str], list[str]]:
    """Each client's training speeches joined as training reads them: a newline after each."""
    texts = load_texts(path=database)
    return list(texts), list(texts.values())


def build_index(database: Path) -> CopyIndex:
    """The index of a client database's training split."""
    ids, texts = _read_clients(database)
    parts, starts, position = [], [], 0
    for text in texts:
        starts.append(position)
        parts.append(encode(text))
        parts.append(np.array([_SEPARATOR], np.uint8))
        position += len(text) + 1
    codes = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    return CopyIndex(codes, suffix_array(codes), np.array(starts, np.int64), np.array(ids))


def index_path(database: Path) -> Path:
    """Beside the database, named after it: a new data build gets a new index."""
    return database.with_name(f"{database.stem}.copies-v{INDEX_VERSION}.npz")


_LOCK = threading.Lock()
_LOADED: dict[Path, CopyIndex] = {}


def load_index(database: Path | None = None) -> CopyIndex:
    """The index for the data build, from memory, else from disk, else built and stored."""
    database = Path(database or database_path())
    path = index_path(database)
    with _LOCK:  # the page's visitors share one; building it twice would waste seconds
        if path in _LOADED:
            return _LOADED[path]
        index = None
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    index = CopyIndex(
                        stored["codes"], stored["suffixes"], stored["starts"], stored["ids"]
                    )
            except (OSError, ValueError, KeyError):  # damaged: build again
                index = None
        if index is None:
            index = build_index(database)
            _store(index, path)
        _LOADED.clear()  # one data build at a time
        _LOADED[path] = index
        return index


def _store(index: CopyIndex, path: Path) -> None:
    for stale in path.parent.glob("shakespeare-*.copies-v*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        codes=index.codes,
        suffixes=index.suffixes,
        starts=index.starts,
        ids=np.array(index.client_ids),
    )
    tmp.replace(path)  # readers see a whole index or none


def _longest_copies(index: CopyIndex, codes: np.ndarray, allowed: np.ndarray, min_chars: int):
    """For each position of the text: the longest copy starting there from an allowed client
    (length, text position), where at least `min_chars` long."""
    m = len(codes)
    lengths = np.zeros(m, np.int64)
    sources = np.full(m, -1, np.int64)
    if m < min_chars or not len(index.codes):
        return lengths, sources
    # Every position's interval of suffixes sharing its first min(min_chars, 9) characters, at
    # once: the packed keys are sorted like the suffixes.
    prefix = min(min_chars, _PACKED)
    shift = np.uint64(_BITS * (_PACKED - prefix))
    low = (_packed_keys(codes) >> shift) << shift
    high = low + ((np.uint64(1) << shift) - np.uint64(1))
    first = np.searchsorted(index.keys, low, side="left")
    last = np.searchsorted(index.keys, high, side="right")
    text, suffixes, corpus = index.text, index.suffixes, index.codes
    query = codes.tobytes()
    for i in np.flatnonzero(last > first):
        if i + min_chars > m:
            break
        # A copy of length L at i holds one of L - 1 at i + 1: start from there, so a long
        # copy costs a binary search per character rather than a walk along it.
        needed = max(min_chars, int(lengths[i - 1]) - 1 if i else 0)
        lo, hi = int(first[i]), int(last[i])
        if needed > prefix:  # narrow to the suffixes sharing all `needed` characters
            pattern = query[i : i + needed]

            def head(j, size=len(pattern)):
                p = int(suffixes[j])
                return text[p : p + size]

            lo = _bisect(head, pattern, lo, hi, left=True)
            hi = _bisect(head, pattern, lo, hi, left=False)
            if lo >= hi:
                continue
        positions = suffixes[lo:hi].astype(np.int64)
        owners = np.searchsorted(index.starts, positions, side="right") - 1
        positions = positions[allowed[owners]]
        if not len(positions):
            continue
        # Extend the allowed candidates a character at a time; the separator stops them at
        # the end of a client's text, and the padding at the end of the corpus.
        length = needed
        while i + length < m:
            ahead = np.minimum(positions + length, len(corpus) - 1)
            keep = corpus[ahead] == codes[i + length]
            if not keep.any():
                break
            positions = positions[keep]
            length += 1
        lengths[i], sources[i] = length, positions.min()
    return lengths, sources


def _bisect(head, pattern: bytes, lo: int, hi: int, left: bool) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        value = head(mid)
        if value < pattern or (not left and value == pattern):
            lo = mid + 1
        else:
            hi = mid
    return lo


def find_copies(
    text: str,
    client_ids: Iterable[str] | None = None,
    min_chars: int = MIN_CHARS,
    index: CopyIndex | None = None,
    database: Path | None = None,
) -> Probe:
    """The spans of `text` of at least `min_chars` characters found verbatim in the training
    lines of `client_ids` (None: every client), each with the client and its line. The
    index is the data build's (`database`, default the installed plays'), unless given.

    A copy is kept where it reaches past the copies before it; overlapping copies make one
    span, so the page colours each character once and names the longest copy's line.
    """
    if not isinstance(min_chars, int) or isinstance(min_chars, bool) or min_chars < 1:
        raise ConfigError(
            f"the shortest copy must be a whole number of at least 1, got {min_chars!r}"
        )
    index = index or load_index(database)
    allowed = index.client_numbers(client_ids)
    codes = encode(text)
    lengths, sources = _longest_copies(index, codes, allowed, min_chars)
    groups: list[list[Copy]] = []
    reach = 0  # the end of the copies so far
    for i in np.flatnonzero(lengths):
        end = int(i + lengths[i])
        if end <= reach:
            continue  # inside an earlier copy: adds nothing
        copy = _copy(index, int(i), end, int(sources[i]))
        if i < reach:
            groups[-1].append(copy)
        else:
            groups.append([copy])
        reach = end
    spans = tuple(
        Span(g[0].start, g[-1].end, tuple(sorted(g, key=lambda c: c.start - c.end))) for g in groups
    )
    return Probe(spans, len(text), min_chars)


def _copy(index: CopyIndex, start: int, end: int, position: int) -> Copy:
    number = int(np.searchsorted(index.starts, position, side="right") - 1)
    client_start = int(index.starts[number])
    text = index.text
    newline = _CODE["\n"].to_bytes(1, "little")
    line_start = text.rfind(newline, client_start, position) + 1 or client_start
    line_end = text.find(newline, position + (end - start) - 1)
    line = decode(index.codes[max(line_start, client_start) : line_end])
    return Copy(start, end, index.client_ids[number], line, position - client_start)


def timed_build(database: Path | None = None) -> tuple[CopyIndex, float]:
    """The index built afresh (not stored) and the seconds it took: for the benchmark."""
    start = time.perf_counter()
    index = build_index(Path(database or database_path()))
    return index, time.perf_counter() - start


def copies_html(text: str, probe: Probe, names: dict[str, str] | None = None) -> str:
    """`text` as HTML with each copied span marked; hovering one names the client and shows
    the training line it came from. `names` gives clients' display names (default: their ids)."""
    names = names or {}
    parts, done = [], 0
    for span in probe.spans:
        who = names.get(span.client_id, span.client_id)
        title = html.escape(f"{who}: {span.line.strip()}"[:400], quote=True)
        parts += [
            html.escape(text[done : span.start]),
            f'<mark title="{title}" style="background:#ffd54f;padding:0">'
            f"{html.escape(text[span.start : span.end])}</mark>",
        ]
        done = span.end
    parts.append(html.escape(text[done:]))
    return f'<div style="white-space:pre-wrap;font-family:monospace">{"".join(parts)}</div>'
