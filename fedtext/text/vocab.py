"""The tutorial's 86-character vocabulary and text normalisation, in plain Python and NumPy
(the page imports this before TensorFlow has loaded)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

# TFF's "Federated Learning for Text Generation" vocabulary, in its order.
CHARS = "dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\naeimquyAEIMQUY]!%)-159\r"
PAD_ID = 0  # id 0 is padding; character i of CHARS has id i + 1
VOCAB_SIZE = len(CHARS) + 1  # 87 ids: 86 characters and the padding id

# Typographic characters with an obvious ASCII twin; accents are stripped by NFKD below.
ASCII_TWINS = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2013": "-",
    "\u2014": "--",
    "\u2015": "--",
    "\u2012": "-",
    "\u2010": "-",
    "\u2011": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u2009": " ",
    "\u200a": " ",
    "\u2002": " ",
    "\u2003": " ",
    "\u00ad": "",
    "\ufeff": "",
    "\u200b": "",
    "\t": " ",
    "\u00e6": "ae",
    "\u00c6": "AE",
    "\u0153": "oe",
    "\u0152": "OE",
    "\u00df": "ss",
    "\u00a3": "L",
    "\u00b4": "'",
    "`": "'",
    "\u00b7": ".",
}

_CHAR_TO_ID = {c: i + 1 for i, c in enumerate(CHARS)}
_ID_TO_CHAR = np.array(["", *CHARS])


@dataclass(frozen=True)
class Normalised:
    """Text mapped into the vocabulary, with what could not be mapped."""

    text: str
    dropped: dict[str, int]  # characters with no ASCII twin, removed, and how often


def normalise(text: str) -> Normalised:
    """Map typographic punctuation and accented letters to ASCII; drop and count the rest."""
    text = text.replace("\r\n", "\n")
    kept: list[str] = []
    dropped: dict[str, int] = {}
    for char in text:
        if char in _CHAR_TO_ID:
            kept.append(char)
            continue
        twin = ASCII_TWINS.get(char)
        if twin is None:
            twin = "".join(c for c in unicodedata.normalize("NFKD", char) if c in _CHAR_TO_ID)
            if not twin:
                dropped[char] = dropped.get(char, 0) + 1
                continue
        kept.append(twin)
    return Normalised("".join(kept), dropped)


def unknown_chars(text: str) -> list[str]:
    """Characters of `text` that neither are in the vocabulary nor have an ASCII twin."""
    return sorted(normalise(text).dropped)


def describe_chars(chars: list[str]) -> str:
    """A readable list of characters, with code points for the invisible ones."""
    return ", ".join(repr(c) if c.isprintable() else f"U+{ord(c):04X}" for c in chars)


def encode(text: str) -> np.ndarray:
    """Ids of an already normalised text (characters outside the vocabulary raise KeyError)."""
    return np.fromiter((_CHAR_TO_ID[c] for c in text), dtype=np.int64, count=len(text))


def decode(ids) -> str:
    """Text of a sequence of ids; padding ids vanish."""
    return "".join(_ID_TO_CHAR[np.asarray(ids, dtype=np.int64)])
