"""A style meter: a character n-gram Naive Bayes judge of Shakespeare versus Dickens, NumPy only."""

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
FORMAT_VERSION = 1

CANDIDATE_ORDERS = ((1, 2, 3, 4), (2, 3, 4, 5))  # the build keeps whichever validates better
BUCKET_BITS = 18  # 2**18 float16 ratios, 0.5 MB; 2**19 lowered validation log loss by 0.001 only
ALPHA = 0.1  # Lidstone smoothing per bucket: a lower validation log loss than 0.5 or 1
HOLDOUT_FRACTION = 0.05  # each novel's tail is never trained on, like PretrainConfig's holdout
VALIDATION_EVERY = 10  # every 10th speech and Dickens block calibrates instead of counting
DICKENS_BLOCK = 1000  # characters per Dickens block, so validation text spreads over the books
CALIBRATION_CHARS = 200  # calibrate on texts as long as the page's samples
VERDICT_MARGIN = 0.2  # scores within 0.5 +- this read as "in between"

_BASE = 97  # above the 87 ids, so an n-gram's value is exact and no two orders share one
MAX_ORDER = 9  # 97**9 < 2**63: longer n-grams would overflow int64
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads those values over the buckets


class StyleError(ValueError):
    """A judge file that is missing or unreadable, with a one-line reason."""


@dataclass(frozen=True)
class Judge:
    """Per-bucket log-likelihood ratios and the calibration that turns their mean into a score."""

    llr: np.ndarray  # log P(bucket | Shakespeare) - log P(bucket | Dickens), float32
    orders: tuple[int, ...]  # n-gram lengths counted
    scale: float  # score = sigmoid(scale * mean ratio + bias), fitted on validation texts
    bias: float


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
    """The mean log ratio per n-gram: a rate that does not grow with the text's length."""
    per_position, count = _evidence(llr, orders, ids)
    return float(per_position.sum() / count) if count else 0.0


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


# --- building the judge --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingTexts:
    """Normalised texts of both classes: counted (`fit`), calibrated on, and never touched."""

    shakespeare_fit: list[str]
    shakespeare_validation: list[str]
    dickens_fit: list[str]
    dickens_validation: list[str]
    dickens_heldout: list[str]  # each novel's tail, for evaluation only


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

    Every VALIDATION_EVERY-th speech, and Dickens block, is kept for calibration; the
    Shakespeare test split is never read.
    """
    database = database or plays.database_path()
    speeches = [
        speech
        for client in plays.load_clients(database)
        for speech in plays.load_speeches(client.client_id, "train", database)
    ]
    blocks = []
    heldout = []
    for novel in dickens_texts(dickens_dir):
        train, tail = split_novel(novel)
        blocks += [train[i : i + DICKENS_BLOCK] for i in range(0, len(train), DICKENS_BLOCK)]
        heldout.append(tail)
    last = VALIDATION_EVERY - 1
    return TrainingTexts(
        shakespeare_fit=[s for i, s in enumerate(speeches) if i % VALIDATION_EVERY != last],
        shakespeare_validation=[s for i, s in enumerate(speeches) if i % VALIDATION_EVERY == last],
        dickens_fit=[b for i, b in enumerate(blocks) if i % VALIDATION_EVERY != last],
        dickens_validation=[b for i, b in enumerate(blocks) if i % VALIDATION_EVERY == last],
        dickens_heldout=heldout,
    )


def windows(text: str, length: int) -> list[str]:
    """The consecutive whole `length`-character windows of `text`."""
    return [text[i : i + length] for i in range(0, len(text) - length + 1, length)]


def balanced_windows(texts: TrainingTexts, length: int) -> tuple[list[str], np.ndarray]:
    """As many validation windows of each class, spread evenly; labels 1 for Shakespeare."""
    # Speeches are short, so windows run across them, as a generated sample may.
    shakespeare = windows("\n".join(texts.shakespeare_validation), length)
    dickens = [w for block in texts.dickens_validation for w in windows(block, length)]
    n = min(len(shakespeare), len(dickens))

    def spread(items: list[str]) -> list[str]:
        return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]

    return spread(shakespeare) + spread(dickens), np.repeat([1.0, 0.0], n)


def fit_calibration(means: np.ndarray, labels: np.ndarray, steps: int = 50) -> tuple[float, float]:
    """Logistic regression of the labels on the mean ratios, by Newton's method."""
    x = np.stack([means, np.ones_like(means)], axis=1)
    w = np.zeros(2)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        w -= np.linalg.solve(hessian, x.T @ (p - labels))
    return float(w[0]), float(w[1])


def evaluate(judge: Judge, samples: Sequence[str], labels: np.ndarray) -> dict[str, float]:
    """Accuracy and log loss of the judge's scores on labelled texts."""
    scores = np.array([shakespeare_score(s, judge) for s in samples])
    clipped = np.clip(scores, 1e-6, 1 - 1e-6)
    log_loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    return {"accuracy": float(np.mean((scores > 0.5) == labels)), "log_loss": float(log_loss)}


def train_judge(texts: TrainingTexts, orders: Sequence[int], bits: int, alpha: float) -> Judge:
    """Count the fit texts, then calibrate on the validation windows."""
    shakespeare = count_ngrams((encode(s) for s in texts.shakespeare_fit), orders, bits)
    dickens = count_ngrams((encode(b) for b in texts.dickens_fit), orders, bits)
    # Rounded as shipped, so the calibration fits the ratios the page will use.
    llr = log_ratios(shakespeare, dickens, alpha).astype(np.float16).astype(np.float32)
    samples, labels = balanced_windows(texts, CALIBRATION_CHARS)
    means = np.array([mean_ratio(llr, orders, encode(s)) for s in samples])
    scale, bias = fit_calibration(means, labels)
    return Judge(llr, tuple(orders), scale, bias)


def save_judge(judge: Judge, path: Path = JUDGE_PATH) -> Path:
    """Write the judge as float16 ratios and its settings (an npz, read without pickle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        llr=judge.llr.astype(np.float16),
        orders=np.array(judge.orders, dtype=np.int64),
        calibration=np.array([judge.scale, judge.bias], dtype=np.float64),
        version=np.array(FORMAT_VERSION),
    )
    tmp.replace(path)
    return path


def build_judge(
    dickens_dir: Path = DICKENS_DIR,
    output: Path = JUDGE_PATH,
    report: Callable[[str], None] = print,
) -> Judge:
    """Train a judge per candidate n-gram range, keep the one with the lower validation log loss,
    and save it. Needs ../shared (the Dickens novels) and the plays' database."""
    texts = load_training_texts(dickens_dir)
    report(
        f"Shakespeare: {len(texts.shakespeare_fit)} speeches counted, "
        f"{len(texts.shakespeare_validation)} for validation; Dickens: "
        f"{sum(map(len, texts.dickens_fit)):,} characters counted, "
        f"{sum(map(len, texts.dickens_validation)):,} for validation, "
        f"{sum(map(len, texts.dickens_heldout)):,} held out"
    )
    samples, labels = balanced_windows(texts, CALIBRATION_CHARS)
    best: tuple[float, Judge] | None = None
    for orders in CANDIDATE_ORDERS:
        judge = train_judge(texts, orders, BUCKET_BITS, ALPHA)
        metrics = evaluate(judge, samples, labels)
        report(
            f"orders {orders[0]}..{orders[-1]}: validation accuracy {metrics['accuracy']:.3f}, "
            f"log loss {metrics['log_loss']:.3f} on {len(samples)} windows of "
            f"{CALIBRATION_CHARS} characters (scale {judge.scale:.2f}, bias {judge.bias:+.2f})"
        )
        if best is None or metrics["log_loss"] < best[0]:
            best = (metrics["log_loss"], judge)
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
            scale, bias = (float(v) for v in stored["calibration"])
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
    if llr.ndim != 1 or size < 2 or size & (size - 1) or bad_orders:
        raise StyleError(f"style judge {path} is malformed")
    return Judge(llr, orders, scale, bias)


@functools.cache
def default_judge() -> Judge:
    """The shipped judge, read once per process."""
    return load_judge(JUDGE_PATH)


def shakespeare_score(text: str, judge: Judge | None = None) -> float:
    """Probability in [0, 1] that `text` reads as Shakespeare rather than Dickens.

    The mean log ratio per n-gram, calibrated on 200-character texts: a rate of style, so a
    longer text does not drift to 0 or 1 just by being longer. 0.5 for text with no n-grams.
    """
    judge = judge or default_judge()
    ids, _ = _ids_and_owners(text)
    per_position, count = _evidence(judge.llr, judge.orders, ids)
    if not count:
        return 0.5
    return _sigmoid(judge.scale * per_position.sum() / count + judge.bias)


def style_verdict(score: float) -> str:
    """A few words for a score: 'reads as Shakespeare', 'reads as Dickens' or 'in between'."""
    if score >= 0.5 + VERDICT_MARGIN:
        return "reads as Shakespeare"
    if score <= 0.5 - VERDICT_MARGIN:
        return "reads as Dickens"
    return "in between"


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
