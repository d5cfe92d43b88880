"""Building the style meter's judge (fedtext.text.style): count character n-grams of
Shakespeare's training lines against Dickens' novels, choose the n-gram orders on validation
text, and anchor the scale on held-out real text of both authors. Build time only: it reads the
plays' database and the novels, which the page never needs.

    python -m fedtext.text.style_build --build [--dickens DIR] ["text to score" ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtext.text import plays
from fedtext.text.corpus import read_corpus_file
from fedtext.text.style import (
    JUDGE_PATH,
    ROOT,
    Judge,
    StyleError,
    count_ngrams,
    load_judge,
    log_ratios,
    mean_ratio,
    save_judge,
    shakespeare_score,
    style_verdict,
)
from fedtext.text.vocab import encode

DICKENS_DIR = ROOT.parent / "shared" / "corpora" / "dickens"  # the novels, beside a checkout
CANDIDATE_ORDERS = ((1, 2, 3, 4), (2, 3, 4, 5))  # the build keeps whichever validates better
BUCKET_BITS = 18  # 2**18 float16 ratios, 0.5 MB; 2**19 lowered validation log loss by 0.001 only
ALPHA = 0.1  # Lidstone smoothing per bucket: a lower validation log loss than 0.5 or 1
HOLDOUT_FRACTION = 0.05  # each novel's tail is never trained on, like PretrainConfig's holdout
VALIDATION_EVERY = 10  # every 10th speech and Dickens block calibrates instead of counting
DICKENS_BLOCK = 1000  # characters per Dickens block, so validation text spreads over the books
CALIBRATION_CHARS = 200  # windows as long as the page's samples
ANCHOR_WINDOWS = 400  # held-out windows per author whose median is an anchor (spread evenly)


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedtext.text.style_build", description=__doc__)
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
