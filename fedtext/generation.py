"""Sampling text from a character model: the tutorial's loop, seeded, stateless and compiled."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from fedtext.config import ModelConfig
from fedtext.model import BUILD_LOCK
from fedtext.prompt import PromptError, check_request
from fedtext.vocab import PAD_ID, decode, encode
from fedtext.weights import CONFIG_FILE, WeightsError, load_config, load_weights_arrays


class TextGenerator:
    """Generates from fixed weights. Every call starts from a zero state, so concurrent
    callers share weights but never recurrent state: the same request gives the same text."""

    def __init__(self, weights: list[np.ndarray], config: ModelConfig = ModelConfig()):
        self.config = config
        ids = tf.keras.Input(shape=(None,), dtype=tf.int64)
        state_in = tf.keras.Input(shape=(config.rnn_units,))
        x = tf.keras.layers.Embedding(config.vocab_size, config.embedding_dim)(ids)
        x, state = tf.keras.layers.GRU(config.rnn_units, return_sequences=True, return_state=True)(
            x, initial_state=state_in
        )
        logits = tf.keras.layers.Dense(config.vocab_size)(x)
        self._stepper = tf.keras.Model([ids, state_in], [logits, state])
        self._stepper.set_weights(weights)
        self.parameter_count = self._stepper.count_params()
        self._pad_mask = tf.one_hot(PAD_ID, config.vocab_size, on_value=-1e9, off_value=0.0)
        self._lock = threading.Lock()  # guards the first trace only
        self._sample = tf.function(
            self._sample_loop,
            input_signature=[
                tf.TensorSpec([None], tf.int64),
                tf.TensorSpec([], tf.int32),
                tf.TensorSpec([], tf.float32),
                tf.TensorSpec([2], tf.int64),
            ],
        )

    def _sample_loop(self, prompt_ids, length, temperature, seed):
        state = tf.zeros([1, self.config.rnn_units])
        logits, state = self._stepper([prompt_ids[tf.newaxis, :], state])
        last = logits[:, -1, :]
        out = tf.TensorArray(tf.int64, size=length)
        for i in tf.range(length):
            scaled = last / temperature + self._pad_mask
            step_seed = seed + tf.stack([tf.constant(0, tf.int64), tf.cast(i, tf.int64)])
            next_id = tf.random.stateless_categorical(scaled, 1, seed=step_seed)[0, 0]
            out = out.write(i, next_id)
            logits, state = self._stepper([tf.reshape(next_id, [1, 1]), state])
            last = logits[:, -1, :]
        return out.stack()

    def generate(
        self, prompt: str, length: int = 200, temperature: float = 1.0, seed: int = 0
    ) -> str:
        """`prompt` followed by `length` sampled characters; same arguments, same text."""
        text = check_request(prompt, length, temperature)
        if not isinstance(seed, int) or seed < 0:
            raise PromptError(f"seed must be a whole number of at least 0, got {seed!r}")
        args = (
            tf.constant(encode(text)),
            tf.constant(length, tf.int32),
            tf.constant(temperature, tf.float32),
            tf.constant([seed, 0], tf.int64),
        )
        if self._sample.experimental_get_tracing_count() == 0:
            with self._lock:
                ids = self._sample(*args)
        else:
            ids = self._sample(*args)
        return text + decode(ids.numpy())


def ready_generator(weights: list[np.ndarray], config: ModelConfig) -> TextGenerator:
    """A generator whose sampling loop is traced now, under the engine's build lock."""
    with BUILD_LOCK:
        generator = TextGenerator(weights, config)
        generator.generate("a", 1)
    return generator


def load_generator(directory: str | Path) -> TextGenerator:
    """A ready generator for the model stored in `directory` (WeightsError if it cannot be read)."""
    config, arrays = load_config(directory), load_weights_arrays(directory)
    try:
        return ready_generator(arrays, config)
    except ValueError:  # Keras' set_weights: arrays that do not fit the layers
        message = f"weights in {directory} do not fit the model in {CONFIG_FILE}"
        raise WeightsError(message) from None
