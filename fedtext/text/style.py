"""A style meter: a character n-gram Naive Bayes judge of Shakespeare versus Dickens, NumPy only.

Its reading is a position, not a probability: the text's mean log-likelihood ratio per character,
placed between the medians of held-out real Dickens (0) and held-out real Shakespeare (1). A
whole-text posterior saturates (a sample still naming Mr. Lorry read as "99% Shakespeare" once a
few lines had Shakespeare's layout); a position says how far the text has moved.
"""

from __future__ import annotations

import functools
import html
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtext.text.vocab import encode, normalise

ROOT = Path(__file__).resolve().parents[2]
JUDGE_PATH = ROOT / "assets" / "style" / "judge.npz"
FORMAT_VERSION = 2  # 2: the anchors (held-out medians) replaced the logistic calibration

CLOSE_TO_AUTHOR = 0.1  # a position within this of an end reads "like" that author's own text

_BASE = 97  # above the 87 ids, so an n-gram's value is exact and no two orders share one
MAX_ORDER = 9  # 97**9 < 2**63: longer n-grams would overflow int64
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads those values over the buckets


class StyleError(ValueError):
    """A judge file that is missing or unreadable, with a one-line reason."""


@dataclass(frozen=True)
class Judge:
    """Per-bucket log-likelihood ratios, and the two anchors that place a text between authors."""

    llr: np.ndarray  # log P(bucket | Shakespeare) - log P(bucket | Dickens), float32
    orders: tuple[int, ...]  # n-gram lengths counted
    # The median mean ratio per character of held-out 200-character windows of each author:
    # real Dickens (a novel's tail) reads 0, real Shakespeare (the test split) reads 1.
    dickens_anchor: float
    shakespeare_anchor: float


# --- n-grams -------------------------------------------------------------------------------------


def text_ids(text: str) -> np.ndarray:
    """Ids of `text` as the model sees it (typographic characters mapped, unknown ones dropped)."""
    return encode(normalise(text).text)


@functools.cache
def _char_ids(char: str) -> tuple[int, ...]:
    return tuple(int(i) for i in encode(normalise(char).text))


def _ids_and_owners(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids as `text_ids` gives them, and for each id the index of the character it came from."""
    ids: list[int] = []
    owners: list[int] = []
    for index, char in enumerate(text):
        if char == "\r" and text[index + 1 : index + 2] == "\n":
            continue  # normalise() reads "\r\n" as "\n"
        for i in _char_ids(char):
            ids.append(i)
            owners.append(index)
    return np.array(ids, dtype=np.int64), np.array(owners, dtype=np.int64)


def ngram_buckets(ids: np.ndarray, order: int, bits: int) -> np.ndarray:
    """Bucket of each n-gram of length `order`, one per end position from `order - 1` on."""
    value = ids[order - 1 :].astype(np.int64)
    for k in range(1, order):
        value = value + ids[order - 1 - k : len(ids) - k] * _BASE**k
    return ((value.astype(np.uint64) * _MIX) >> np.uint64(64 - bits)).astype(np.int64)


def count_ngrams(segments: Iterable[np.ndarray], orders: Sequence[int], bits: int) -> np.ndarray:
    """Bucket counts of the n-grams inside each segment (none spans two segments)."""
    counts = np.zeros(2**bits, dtype=np.float64)
    for ids in segments:
        for order in orders:
            if len(ids) >= order:
                counts += np.bincount(ngram_buckets(ids, order, bits), minlength=counts.size)
    return counts


def log_ratios(shakespeare: np.ndarray, dickens: np.ndarray, alpha: float) -> np.ndarray:
    """Lidstone-smoothed log P(bucket | Shakespeare) - log P(bucket | Dickens).

    Each class is normalised by its own total, so the larger corpus does not tilt the judge;
    the priors are equal, so no prior term is added.
    """
    p_s = (shakespeare + alpha) / (shakespeare.sum() + alpha * shakespeare.size)
    p_d = (dickens + alpha) / (dickens.sum() + alpha * dickens.size)
    return (np.log(p_s) - np.log(p_d)).astype(np.float32)


def _evidence(llr: np.ndarray, orders: Sequence[int], ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Per position, the summed ratios of the n-grams ending there; and how many n-grams."""
    bits = int(llr.size).bit_length() - 1
    per_position = np.zeros(len(ids), dtype=np.float64)
    count = 0
    for order in orders:
        if len(ids) >= order:
            per_position[order - 1 :] += llr[ngram_buckets(ids, order, bits)]
            count += len(ids) - order + 1
    return per_position, count


def mean_ratio(llr: np.ndarray, orders: Sequence[int], ids: np.ndarray) -> float:
    """The mean log ratio per character (the summed ratios of the n-grams ending at each): a
    rate that does not grow with the text's length; 0 for text with no characters."""
    per_position, _ = _evidence(llr, orders, ids)
    return float(per_position.sum() / len(ids)) if len(ids) else 0.0


# --- runtime -------------------------------------------------------------------------------------


def save_judge(judge: Judge, path: Path = JUDGE_PATH) -> Path:
    """Write the judge as float16 ratios and its settings (an npz, read without pickle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        llr=judge.llr.astype(np.float16),
        orders=np.array(judge.orders, dtype=np.int64),
        anchors=np.array([judge.dickens_anchor, judge.shakespeare_anchor], dtype=np.float64),
        version=np.array(FORMAT_VERSION),
    )
    tmp.replace(path)
    return path


def load_judge(path: str | Path = JUDGE_PATH) -> Judge:
    """Read a judge file, or raise StyleError saying why not."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            llr = stored["llr"].astype(np.float32)
            orders = tuple(int(n) for n in stored["orders"])
            dickens_anchor, shakespeare_anchor = (float(v) for v in stored["anchors"])
            version = int(stored["version"])
    except FileNotFoundError:
        raise StyleError(
            f"style judge not found: {path}; "
            "build it with 'python -m fedtext.text.style_build --build'"
        ) from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise StyleError(f"style judge {path} is unreadable ({type(error).__name__})") from None
    size = llr.size
    if version != FORMAT_VERSION:
        raise StyleError(f"style judge {path} has format {version}, expected {FORMAT_VERSION}")
    bad_orders = not orders or min(orders) < 1 or max(orders) > MAX_ORDER
    bad_anchors = not shakespeare_anchor > dickens_anchor  # NaN too
    if llr.ndim != 1 or size < 2 or size & (size - 1) or bad_orders or bad_anchors:
        raise StyleError(f"style judge {path} is malformed")
    return Judge(llr, orders, dickens_anchor, shakespeare_anchor)


@functools.cache
def default_judge() -> Judge:
    """The shipped judge, read once per process."""
    return load_judge(JUDGE_PATH)


def shakespeare_score(text: str, judge: Judge | None = None, clip: bool = True) -> float:
    """How far `text` has moved from Dickens to Shakespeare: 0 reads like the median held-out
    window of real Dickens, 1 like the median held-out window of real Shakespeare, by the mean
    log ratio per character (a rate: a longer text does not drift to an end by being longer).

    A position on a line, not a probability: half of real Shakespeare's lines read above 1 and
    are shown as 1 (`clip`). 0.5, halfway, for text with no characters the vocabulary keeps.
    """
    judge = judge or default_judge()
    ids, _ = _ids_and_owners(text)
    if not len(ids):
        return 0.5
    ratio = mean_ratio(judge.llr, judge.orders, ids)
    position = (ratio - judge.dickens_anchor) / (judge.shakespeare_anchor - judge.dickens_anchor)
    return min(max(position, 0.0), 1.0) if clip else position


def style_verdict(score: float) -> str:
    """A few words for a position: like either author's own text near an end, else which one
    it is closer to."""
    if score >= 1 - CLOSE_TO_AUTHOR:
        return "reads like Shakespeare's own lines"
    if score <= CLOSE_TO_AUTHOR:
        return "reads like Dickens' own prose"
    return "closer to Shakespeare" if score > 0.5 else "closer to Dickens"


def char_contributions(text: str, judge: Judge | None = None) -> np.ndarray:
    """One value per character of `text`: the summed log ratios of the n-grams ending there
    (positive leans Shakespeare); 0 for characters the vocabulary drops."""
    judge = judge or default_judge()
    ids, owners = _ids_and_owners(text)
    per_position, _ = _evidence(judge.llr, judge.orders, ids)
    return np.bincount(owners, weights=per_position, minlength=len(text))


# Diverging colours (RGB): Dickens-ward red, Shakespeare-ward blue, both readable under text.
_NEGATIVE = (214, 39, 40)
_POSITIVE = (31, 119, 180)
_LEVELS = 8  # shades per side: equal shades merge into one span, keeping the HTML small


def _background(level: int) -> str:
    if level == 0:
        return ""
    r, g, b = _POSITIVE if level > 0 else _NEGATIVE
    return f"background:rgba({r},{g},{b},{abs(level) / _LEVELS * 0.6:.2f})"


def highlight_html(
    text: str,
    values: Sequence[float],
    limit: float = 3.0,
    legend: tuple[str, str] | None = None,
) -> str:
    """`text` as HTML, each character's background shaded by its value clipped to +-`limit`:
    red for negative, blue for positive. Runs of equal shade share one span; newlines are kept.
    `legend` names the negative and positive ends, e.g. ("Dickens", "Shakespeare")."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(text),):
        raise ValueError(f"need one value per character: {len(text)}, got {values.shape}")
    if not limit > 0:
        raise ValueError(f"limit must be positive, got {limit!r}")
    levels = np.round(np.clip(np.nan_to_num(values) / limit, -1, 1) * _LEVELS).astype(int)
    spans = []
    start = 0
    for end in range(1, len(text) + 1):
        if end == len(text) or levels[end] != levels[start]:
            style = _background(int(levels[start]))
            spans.append(f'<span style="{style}">{html.escape(text[start:end])}</span>')
            start = end
    body = f'<div style="white-space:pre-wrap;font-family:monospace">{"".join(spans)}</div>'
    if legend is None:
        return body
    swatches = "".join(
        f'<span style="{_background(level)};padding:0 0.35em">&nbsp;</span>'
        for level in range(-_LEVELS, _LEVELS + 1, 2)
    )
    negative, positive = (html.escape(label) for label in legend)
    return (
        f'{body}<div style="font-size:0.8em;margin-top:0.3em">{negative} '
        f"(-{limit:g}) {swatches} {positive} (+{limit:g})</div>"
    )
