"""Reading user-supplied text files: encodings, Gutenberg boilerplate, normalisation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fedtext.text.vocab import normalise

_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_MIN_CHARS = 1000  # below this a file cannot give even ten training sequences


class CorpusError(ValueError):
    """A corpus file that cannot be used, with a one-line reason."""


@dataclass(frozen=True)
class CorpusText:
    path: Path
    text: str  # normalised, inside the vocabulary
    encoding: str
    dropped: dict[str, int]


def decode_bytes(raw: bytes) -> tuple[str, str]:
    """Decode UTF-8 (with or without BOM), else Windows-1252, else Latin-1."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:  # bytes cp1252 leaves undefined (0x81, 0x8d, ...)
        return raw.decode("latin-1"), "latin-1"


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's START and END lines, or all of it if absent."""
    start = _GUTENBERG_START.search(text)
    end = _GUTENBERG_END.search(text)
    begin = start.end() if start else 0
    finish = end.start() if end and end.start() > begin else len(text)
    return text[begin:finish].strip("\r\n") + "\n"


def read_corpus_file(path: str | Path) -> CorpusText:
    """Read one text file for pre-training, or raise CorpusError saying why not."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"corpus file not found: {path}")
    if not path.is_file():
        raise CorpusError(f"not a file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"cannot read {path}: {error.strerror}") from None
    if not raw.strip():
        raise CorpusError(f"corpus file is empty: {path}")
    if b"\x00" in raw[:8192]:
        raise CorpusError(f"{path} looks binary (it has NUL bytes), not text")
    text, encoding = decode_bytes(raw)
    result = normalise(strip_gutenberg(text))
    if len(result.text) < _MIN_CHARS:
        raise CorpusError(
            f"{path} holds only {len(result.text)} characters of text; need {_MIN_CHARS}"
        )
    return CorpusText(path, result.text, encoding, result.dropped)
