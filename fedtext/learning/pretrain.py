"""Centralised pre-training of the base character model on any text files."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from fedtext.config import PretrainConfig
from fedtext.model.keras_model import (
    MaskedAccuracy,
    MaskedLoss,
    MaskedMeanLoss,
    build_model,
    load_model,
    save_weights,
)
from fedtext.text.corpus import read_corpus_file
from fedtext.text.vocab import encode


@dataclass(frozen=True)
class PretrainResult:
    output_dir: Path
    epochs: int
    train_chars: int
    heldout_chars: int
    heldout_loss: float
    heldout_accuracy: float
    seconds: float


def split_corpus(texts: Sequence[str], holdout_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the training text and of the held-out tail of every text."""
    train, heldout = [], []
    for text in texts:
        cut = int(len(text) * (1 - holdout_fraction))
        train.append(encode(text[:cut]))
        heldout.append(encode(text[cut:]))
    return np.concatenate(train), np.concatenate(heldout)


def sequence_dataset(ids: np.ndarray, config: PretrainConfig, shuffle: bool) -> tf.data.Dataset:
    """Full (input, target) batches of seq_length characters, like the tutorial's Dickens recipe."""
    window = config.seq_length + 1
    usable = len(ids) // window * window
    chunks = tf.data.Dataset.from_tensor_slices(ids[:usable].reshape(-1, window))
    if shuffle:
        chunks = chunks.shuffle(len(chunks), seed=config.seed, reshuffle_each_iteration=True)
    return (
        chunks.batch(config.batch_size)
        .map(lambda c: (c[:, :-1], c[:, 1:]), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )


class _Progress(tf.keras.callbacks.Callback):
    def __init__(self, steps_per_epoch: int, report: Callable[[str], None], every: int = 25):
        super().__init__()
        self.steps_per_epoch, self.report, self.every = steps_per_epoch, report, every
        self.start = time.perf_counter()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every == 0:
            elapsed = time.perf_counter() - self.start
            self.report(
                f"epoch {self.epoch + 1} step {batch + 1}/{self.steps_per_epoch} "
                f"loss {logs['loss']:.3f} accuracy {logs['accuracy']:.3f} ({elapsed:.0f} s)"
            )

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.start
        self.report(
            f"epoch {epoch + 1} done: train loss {logs['loss']:.3f} accuracy {logs['accuracy']:.3f}"
            f" | held-out loss {logs['val_masked_loss']:.3f}"
            f" accuracy {logs['val_accuracy']:.3f} ({elapsed:.0f} s)"
        )


def pretrain(
    files: Sequence[str | Path],
    output_dir: str | Path,
    config: PretrainConfig = PretrainConfig(),
    init_dir: str | Path | None = None,
    report: Callable[[str], None] = print,
) -> PretrainResult:
    """Train the model on `files` and save it to `output_dir`; files are checked before any work."""
    corpora = [read_corpus_file(f) for f in files]
    for corpus in corpora:
        note = (
            f", dropped {sum(corpus.dropped.values())} unmappable chars" if corpus.dropped else ""
        )
        report(f"read {corpus.path.name}: {len(corpus.text):,} chars ({corpus.encoding}{note})")
    train_ids, heldout_ids = split_corpus([c.text for c in corpora], config.holdout_fraction)
    tf.keras.utils.set_random_seed(config.seed)
    train = sequence_dataset(train_ids, config, shuffle=True)
    heldout = sequence_dataset(heldout_ids, config, shuffle=False)
    steps = int(train.cardinality())
    if init_dir is not None:
        model, _ = load_model(init_dir)
    else:
        model = build_model(config.model)
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        config.learning_rate, steps * config.epochs
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(schedule),
        loss=MaskedLoss(),
        metrics=[MaskedMeanLoss(name="masked_loss"), MaskedAccuracy()],
    )
    report(
        f"training on {len(train_ids):,} chars, holding out {len(heldout_ids):,}; "
        f"{steps} steps per epoch, {config.epochs} epochs"
    )
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=config.epochs,
        validation_data=heldout,
        verbose=0,
        callbacks=[_Progress(steps, report), tf.keras.callbacks.TerminateOnNaN()],
    )
    seconds = time.perf_counter() - start
    if not np.isfinite(history.history["loss"][-1]):
        raise FloatingPointError("pre-training diverged (loss is NaN); nothing was saved")
    save_weights(model, config.model, output_dir)
    result = PretrainResult(
        output_dir=Path(output_dir),
        epochs=len(history.history["loss"]),
        train_chars=len(train_ids),
        heldout_chars=len(heldout_ids),
        heldout_loss=float(history.history["val_masked_loss"][-1]),
        heldout_accuracy=float(history.history["val_accuracy"][-1]),
        seconds=seconds,
    )
    report(
        f"saved {result.output_dir}: held-out loss {result.heldout_loss:.3f} "
        f"accuracy {result.heldout_accuracy:.3f} after {seconds / 60:.1f} min"
    )
    return result
