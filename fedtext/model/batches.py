"""The tutorial's client pipeline: snippets -> character ids -> (input, target) batches."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.random_seed import DEFAULT_GRAPH_SEED

from fedtext.text.vocab import CHARS, PAD_ID

_TABLE: tf.lookup.StaticHashTable | None = None


def _table() -> tf.lookup.StaticHashTable:
    global _TABLE
    if _TABLE is None:
        _TABLE = build_lookup_table()
    return _TABLE


def to_ids(snippets: tf.data.Dataset) -> tf.data.Dataset:
    """One id per character; each speech ends with a newline so speeches do not run together."""
    table = _table()

    @tf.autograph.experimental.do_not_convert  # no control flow: see split_input_target
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


def build_lookup_table() -> tf.lookup.StaticHashTable:
    """Character -> id table for tf.data; unknown characters get PAD_ID and are then removed."""
    keys = tf.constant(list(CHARS))
    values = tf.constant(list(range(1, len(CHARS) + 1)), dtype=tf.int64)
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, values), default_value=PAD_ID
    )


# tf.data functions here have no Python control flow, so AutoGraph is skipped: converting one
# parses its source with `ast`, which on Python 3.11.7 can fail while another thread (a
# Streamlit rerun) parses too, and costs time on every round's pipeline.
@tf.autograph.experimental.do_not_convert
def split_input_target(chunk: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The tutorial's split: predict each next character."""
    return chunk[..., :-1], chunk[..., 1:]


@tf.autograph.experimental.do_not_convert
def _not_empty(chunk: tf.Tensor) -> tf.Tensor:
    return tf.size(chunk) > 1


def chunk_and_batch(
    ids: tf.data.Dataset, seq_length: int, batch_size: int, shuffle_buffer: int, seed: int | None
) -> tf.data.Dataset:
    """Scalar ids -> (input, target) batches of seq_length, padding the last chunk and batch.

    The tutorial dropped every remainder, so a client with less than one full batch
    (8 x 101 characters) took no part; padding with PAD_ID keeps all text, and the
    masked loss and accuracy ignore the padding.
    """
    chunks = ids.batch(seq_length + 1).filter(_not_empty)
    if shuffle_buffer > 1:
        chunks = chunks.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    batches = chunks.padded_batch(
        batch_size, padded_shapes=[seq_length + 1], padding_values=tf.constant(PAD_ID, tf.int64)
    )
    return batches.map(split_input_target, num_parallel_calls=tf.data.AUTOTUNE)


def first_rows(
    ids: np.ndarray,
    seq_length: int,
    batch_size: int,
    shuffle_buffer: int,
    seed: int,
    limit: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `chunk_and_batch(ids, ...)`'s first `limit` batches, as `stack_batches`
    gives them, from a function traced once per setting.

    Built eagerly, the pipeline traces its map and filter functions again for every client
    of every round, which costs more than running it. The shuffle's seeds are those of an
    eager pipeline in a process with no global seed, whatever the global seed is: a run's
    batches depend on its settings alone.
    """
    if len(ids) < 2:  # no chunk holds an input and a target
        return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64)
    rows = _first_rows_fn(seq_length, batch_size, shuffle_buffer, limit)
    x, y = rows(tf.constant(ids, tf.int64), tf.constant(seed, tf.int64))
    return x.numpy(), y.numpy()


@functools.lru_cache(maxsize=16)
def _first_rows_fn(seq_length: int, batch_size: int, shuffle_buffer: int, limit: int):
    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64)],
        autograph=False,
    )
    def rows(ids, seed):
        # Sets the seed of this function's graph only, as eager code without a global seed.
        tf.random.set_seed(DEFAULT_GRAPH_SEED)
        batches = chunk_and_batch(
            tf.data.Dataset.from_tensor_slices(ids), seq_length, batch_size, shuffle_buffer, seed
        ).take(limit)
        return batches.unbatch().batch(limit * batch_size).get_single_element()

    return rows
