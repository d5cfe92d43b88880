"""A style meter: a character n-gram Naive Bayes judge of Shakespeare versus Dickens, NumPy only.

Its reading is a position, not a probability: the text's mean log-likelihood ratio per character,
placed between the medians of held-out real Dickens (0) and held-out real Shakespeare (1). A
whole-text posterior saturates (a sample still naming Mr. Lorry read as "99% Shakespeare" once a
few lines had Shakespeare's layout); a position says how far the text has moved.
"""

from __future__ import annotations

import argparse
import functools
import html
import math
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtext.text import plays
from fedtext.text.corpus import read_corpus_file
from fedtext.text.vocab import encode, normalise

ROOT = Path(__file__).resolve().parents[2]
JUDGE_PATH = ROOT / "assets" / "style" / "judge.npz"
DICKENS_DIR = ROOT.parent / "shared" / "corpora" / "dickens"  # needed to build only
FORMAT_VERSION = 2  # 2: the anchors (held-out medians) replaced the logistic calibration

CANDIDATE_ORDERS = ((1, 2, 3, 4), (2, 3, 4, 5))  # the build keeps whichever validates better
BUCKET_BITS = 18  # 2**18 float16 ratios, 0.5 MB; 2**19 lowered validation log loss by 0.001 only
ALPHA = 0.1  # Lidstone smoothing per bucket: a lower validation log loss than 0.5 or 1
HOLDOUT_FRACTION = 0.05  # each novel's tail is never trained on, like PretrainConfig's holdout
VALIDATION_EVERY = 10  # every 10th speech and Dickens block calibrates instead of counting
DICKENS_BLOCK = 1000  # characters per Dickens block, so validation text spreads over the books
CALIBRATION_CHARS = 200  # windows as long as the page's samples
ANCHOR_WINDOWS = 400  # held-out windows per author whose median is an anchor (spread evenly)
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


# --- building the judge --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingTexts:
    """Normalised texts of both classes: counted (`fit`), for choosing the n-gram orders
    (`validation`), and held out (never counted: the anchors and the tests read them)."""

    shakespeare_fit: list[str]
    shakespeare_validation: list[str]
    dickens_fit: list[str]
    dickens_validation: list[str]
    dickens_heldout: list[str]  # each novel's tail
    shakespeare_heldout: list[str]  # every client's test-split speeches


def split_novel(text: str) -> tuple[str, str]:
    """A novel's training text and its held-out tail (the last HOLDOUT_FRACTION)."""
    cut = int(len(text) * (1 - HOLDOUT_FRACTION))
    return text[:cut], text[cut:]


def dickens_texts(directory: Path = DICKENS_DIR) -> list[str]:
    """The Dickens novels, Gutenberg boilerplate stripped, decoded and normalised."""
    files = sorted(Path(directory).glob("*.txt"))
    if not files:
        raise StyleError(f"no Dickens novels (*.txt) in {directory}")
    return [read_corpus_file(f).text for f in files]


def load_training_texts(
    dickens_dir: Path = DICKENS_DIR, database: Path | None = None
) -> TrainingTexts:
    """Shakespeare's training split of every client against Dickens minus each novel's tail.

    Every VALIDATION_EVERY-th speech, and Dickens block, is kept for validation; the
    Shakespeare test split and the novels' tails are held out.
    """
    database = database or plays.database_path()
    clients = plays.load_clients(database)

    def speeches(split: str) -> list[str]:
        return [s for c in clients for s in plays.load_speeches(c.client_id, split, database)]

    train = speeches("train")
    blocks = []
    heldout = []
    for novel in dickens_texts(dickens_dir):
        fit, tail = split_novel(novel)
        blocks += [fit[i : i + DICKENS_BLOCK] for i in range(0, len(fit), DICKENS_BLOCK)]
        heldout.append(tail)
    last = VALIDATION_EVERY - 1
    return TrainingTexts(
        shakespeare_fit=[s for i, s in enumerate(train) if i % VALIDATION_EVERY != last],
        shakespeare_validation=[s for i, s in enumerate(train) if i % VALIDATION_EVERY == last],
        dickens_fit=[b for i, b in enumerate(blocks) if i % VALIDATION_EVERY != last],
        dickens_validation=[b for i, b in enumerate(blocks) if i % VALIDATION_EVERY == last],
        dickens_heldout=heldout,
        shakespeare_heldout=speeches("test"),
    )


def windows(text: str, length: int) -> list[str]:
    """The consecutive whole `length`-character windows of `text`."""
    return [text[i : i + length] for i in range(0, len(text) - length + 1, length)]


def _spread(items: list[str], n: int) -> list[str]:
    """At most `n` of `items`, evenly spaced through them."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def author_windows(
    shakespeare: Sequence[str], dickens: Sequence[str], length: int = CALIBRATION_CHARS
) -> tuple[list[str], list[str]]:
    """Up to ANCHOR_WINDOWS `length`-character windows of each author, spread evenly: the
    speeches run together (they are short, and a generated sample runs across them too), each
    Dickens text cut on its own."""
    return (
        _spread(windows("\n".join(shakespeare), length), ANCHOR_WINDOWS),
        _spread([w for text in dickens for w in windows(text, length)], ANCHOR_WINDOWS),
    )


def median_ratios(
    llr: np.ndarray, orders: Sequence[int], shakespeare: list[str], dickens: list[str]
) -> tuple[float, float]:
    """The median mean ratio per character of each author's windows: (Dickens, Shakespeare)."""
    return (
        float(np.median([mean_ratio(llr, orders, encode(w)) for w in dickens])),
        float(np.median([mean_ratio(llr, orders, encode(w)) for w in shakespeare])),
    )


def separation(judge: Judge, shakespeare: list[str], dickens: list[str]) -> dict[str, float]:
    """How well the judge tells the authors' windows apart: the share on the right side of the
    halfway mark, and the gap between the medians over the spread (the two interquartile
    ranges added)."""
    s = np.array([shakespeare_score(w, judge, clip=False) for w in shakespeare])
    d = np.array([shakespeare_score(w, judge, clip=False) for w in dickens])
    spread = np.subtract(*np.quantile(s, [0.75, 0.25])) + np.subtract(*np.quantile(d, [0.75, 0.25]))
    return {
        "accuracy": float((np.sum(s > 0.5) + np.sum(d < 0.5)) / (len(s) + len(d))),
        "gap": float((np.median(s) - np.median(d)) / spread) if spread > 0 else math.inf,
    }


def train_judge(texts: TrainingTexts, orders: Sequence[int], bits: int, alpha: float) -> Judge:
    """Count the fit texts, then anchor the scale on the held-out texts of both authors."""
    shakespeare = count_ngrams((encode(s) for s in texts.shakespeare_fit), orders, bits)
    dickens = count_ngrams((encode(b) for b in texts.dickens_fit), orders, bits)
    # Rounded as shipped, so the anchors are those of the ratios the page will use.
    llr = log_ratios(shakespeare, dickens, alpha).astype(np.float16).astype(np.float32)
    anchors = median_ratios(
        llr, orders, *author_windows(texts.shakespeare_heldout, texts.dickens_heldout)
    )
    return Judge(llr, tuple(orders), *anchors)


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


def build_judge(
    dickens_dir: Path = DICKENS_DIR,
    output: Path = JUDGE_PATH,
    report: Callable[[str], None] = print,
) -> Judge:
    """Train a judge per candidate n-gram range, keep the one that separates the validation
    windows best, and save it. Needs ../shared (the Dickens novels) and the plays' database."""
    texts = load_training_texts(dickens_dir)
    report(
        f"Shakespeare: {len(texts.shakespeare_fit)} speeches counted, "
        f"{len(texts.shakespeare_validation)} for validation, "
        f"{len(texts.shakespeare_heldout)} held out; Dickens: "
        f"{sum(map(len, texts.dickens_fit)):,} characters counted, "
        f"{sum(map(len, texts.dickens_validation)):,} for validation, "
        f"{sum(map(len, texts.dickens_heldout)):,} held out"
    )
    validation = author_windows(texts.shakespeare_validation, texts.dickens_validation)
    best: tuple[float, Judge] | None = None
    for orders in CANDIDATE_ORDERS:
        judge = train_judge(texts, orders, BUCKET_BITS, ALPHA)
        metrics = separation(judge, *validation)
        report(
            f"orders {orders[0]}..{orders[-1]}: validation accuracy {metrics['accuracy']:.3f}, "
            f"median gap {metrics['gap']:.2f} interquartile ranges, on "
            f"{sum(map(len, validation))} windows of {CALIBRATION_CHARS} characters; anchors "
            f"(mean ratio per character of held-out text) Dickens {judge.dickens_anchor:+.3f}, "
            f"Shakespeare {judge.shakespeare_anchor:+.3f}"
        )
        if best is None or metrics["gap"] > best[0]:
            best = (metrics["gap"], judge)
    assert best is not None
    path = save_judge(best[1], output)
    report(f"kept orders {best[1].orders}; wrote {path} ({path.stat().st_size:,} bytes)")
    return best[1]


# --- runtime -------------------------------------------------------------------------------------


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
            f"style judge not found: {path}; build it with 'python -m fedtext.text.style --build'"
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedtext.text.style", description=__doc__)
    parser.add_argument("--build", action="store_true", help="train the judge and write it")
    parser.add_argument("--dickens", type=Path, default=DICKENS_DIR, help="the novels' folder")
    parser.add_argument("--output", type=Path, default=JUDGE_PATH)
    parser.add_argument("text", nargs="*", help="texts to score with the shipped judge")
    args = parser.parse_args(argv)
    try:
        if args.build:
            start = time.perf_counter()
            build_judge(args.dickens, args.output)
            print(f"built in {time.perf_counter() - start:.1f} s")
        judge = load_judge(args.output)
        for text in args.text:
            score = shakespeare_score(text, judge)
            print(f"{score:.3f} {style_verdict(score)}: {text[:60]!r}")
    except (ValueError, OSError) as error:  # StyleError, and the corpus' and data's errors
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
