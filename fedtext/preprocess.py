"""The tutorial's client pipeline: snippets -> character ids -> (input, target) batches."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fedtext.vocab import PAD_ID, build_lookup_table, chunk_and_batch

_TABLE: tf.lookup.StaticHashTable | None = None


def _table() -> tf.lookup.StaticHashTable:
    global _TABLE
    if _TABLE is None:
        _TABLE = build_lookup_table()
    return _TABLE


def to_ids(snippets: tf.data.Dataset) -> tf.data.Dataset:
    """One id per character; each speech ends with a newline so speeches do not run together."""
    table = _table()

    @tf.autograph.experimental.do_not_convert  # no control flow: see vocab.split_input_target
    def speech_ids(element):
        chars = tf.strings.unicode_split(element["snippets"] + "\n", "UTF-8")
        return table.lookup(chars)

    ids = snippets.map(speech_ids).unbatch()
    # The data builder maps text into the vocabulary; anything else a user's data holds would
    # come out as PAD_ID, and is dropped rather than read as the character 'd' like the tutorial.
    return ids.filter(tf.autograph.experimental.do_not_convert(lambda i: tf.not_equal(i, PAD_ID)))


def preprocess(
    snippets: tf.data.Dataset,
    batch_size: int,
    seq_length: int,
    shuffle_buffer: int = 0,
    seed: int | None = None,
) -> tf.data.Dataset:
    return chunk_and_batch(to_ids(snippets), seq_length, batch_size, shuffle_buffer, seed)


def stack_batches(
    batches: tf.data.Dataset, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the first `limit` batches as two [rows, seq_length] arrays."""
    if limit is not None:
        batches = batches.take(limit)
    xs, ys = [], []
    for x, y in batches.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64)
    return np.concatenate(xs), np.concatenate(ys)
