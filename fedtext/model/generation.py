"""Sampling text from a character model in NumPy alone: the GRU's forward pass from the stored
weights, seeded and stateless, so the page and the command line generate before TensorFlow loads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedtext.config import ModelConfig
from fedtext.model.weights import CONFIG_FILE, WeightsError, load_config, load_weights_arrays
from fedtext.text.prompt import PromptError, check_request
from fedtext.text.vocab import PAD_ID, decode, encode

# States after the latest prompts, least recently used dropped first (17 KB each at full size):
# "Again" and a classroom's many samples repeat a prompt, whose characters cost as much as
# sampled ones (a sixth of a 200-character request of the tutorial's prompt).
PROMPTS_KEPT = 32


def weight_shapes(config: ModelConfig) -> list[tuple[int, ...]]:
    """Shapes of Keras' `get_weights()` for `build_model(config)`, in its order."""
    vocab, embed, units = config.vocab_size, config.embedding_dim, config.rnn_units
    return [
        (vocab, embed),  # embedding
        (embed, 3 * units),  # GRU input kernel, gates z, r, h
        (units, 3 * units),  # GRU recurrent kernel
        (2, 3 * units),  # GRU biases: input, recurrent (reset_after=True, Keras' default)
        (units, vocab),  # dense kernel
        (vocab,),  # dense bias
    ]


def check_weights(weights: list[np.ndarray], config: ModelConfig) -> None:
    """WeightsError, in one line, unless `weights` fit the model `config` describes."""
    expected = weight_shapes(config)
    if len(weights) != len(expected):
        raise WeightsError(f"{len(weights)} weight arrays; the model needs {len(expected)}")
    for i, (array, shape) in enumerate(zip(weights, expected, strict=True)):
        if np.shape(array) != shape:
            raise WeightsError(f"weight array {i} is {np.shape(array)}; the model needs {shape}")
        if not np.isfinite(array).all():  # logits would be NaN, and no draw could be made
            raise WeightsError(f"weight array {i} holds values that are not finite numbers")


def _frozen(array: np.ndarray) -> np.ndarray:
    """A float32, C-ordered, read-only copy: every caller reads it, none may write it."""
    array = np.array(array, dtype=np.float32, order="C")
    array.flags.writeable = False
    return array


class TextGenerator:
    """Generates from fixed weights. Every call starts from a zero state in buffers of its own
    (or a copy of the state a prompt left, kept read-only), so concurrent callers share weights
    but never state: the same request gives the same text."""

    def __init__(self, weights: list[np.ndarray], config: ModelConfig = ModelConfig()):
        check_weights(weights, config)
        self.config = config
        self.parameter_count = int(sum(np.size(w) for w in weights))
        embedding, kernel, recurrent_kernel, bias, dense_kernel, dense_bias = (
            np.asarray(w, dtype=np.float32) for w in weights
        )
        units = config.rnn_units
        # The input side of a step depends on the character alone: one row per id, computed now.
        inputs = embedding @ kernel + bias[0]
        self._inputs_zr = _frozen(inputs[:, : 2 * units])
        self._inputs_h = _frozen(inputs[:, 2 * units :])
        # One matrix-vector product per character gives both the next step's recurrent side and
        # the logits of the current state; reading these 12.9 MB is most of a step's time.
        # Stored transposed: OpenBLAS then splits the product by output rows, so every thread
        # count adds in the same order and a request gives the same bits on 1 core or 2.
        self._step_kernel = _frozen(np.concatenate([recurrent_kernel, dense_kernel], axis=1).T)
        self._step_bias = _frozen(np.concatenate([bias[1], dense_bias]))
        self._prompts: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._prompts_lock = threading.Lock()

    def _stepper(self, state: np.ndarray, out: np.ndarray) -> Callable[[int], None]:
        """A function feeding one character id: it advances `state` and rewrites `out`, the
        step product of the state (recurrent side, then logits), in place."""
        units = self.config.rnn_units
        kernel, step_bias = self._step_kernel, self._step_bias
        inputs_zr, inputs_h = self._inputs_zr, self._inputs_h
        # Buffers of this call's own, allocated once: a step allocates nothing.
        gates = np.empty(2 * units, np.float32)
        candidate = np.empty(units, np.float32)
        out_zr, out_h = out[: 2 * units], out[2 * units : 3 * units]
        update, reset = gates[:units], gates[units:]

        def step(char_id: int) -> None:
            # Keras' GRUCell, reset_after=True: z, r = sigmoid(x W + b_in + h U + b_rec) for
            # their thirds, h' = z h + (1 - z) tanh(x W_h + b_in,h + r (h U_h + b_rec,h)).
            np.add(inputs_zr[char_id], out_zr, out=gates)
            # sigmoid(a) = (1 + tanh(a / 2)) / 2: no overflow warning where exp(-a) would give one
            np.multiply(gates, 0.5, out=gates)
            np.tanh(gates, out=gates)
            np.multiply(gates, 0.5, out=gates)
            np.add(gates, 0.5, out=gates)
            np.multiply(reset, out_h, out=candidate)
            np.add(candidate, inputs_h[char_id], out=candidate)
            np.tanh(candidate, out=candidate)
            # z h + (1 - z) c written as c + z (h - c), in place
            np.subtract(state, candidate, out=state)
            np.multiply(state, update, out=state)
            np.add(state, candidate, out=state)
            np.dot(kernel, state, out=out)
            np.add(out, step_bias, out=out)

        return step

    def _after(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Copies, this caller's own, of the state after `text` from a zero state and of its
        step product."""
        with self._prompts_lock:
            known = self._prompts.get(text)
            if known is not None:
                self._prompts.move_to_end(text)
        if known is None:
            state = np.zeros(self.config.rnn_units, np.float32)
            out = self._step_bias.copy()  # the step product of the zero state
            step = self._stepper(state, out)
            for char_id in encode(text):
                step(char_id)
            known = _frozen(state), _frozen(out)
            with self._prompts_lock:
                self._prompts[text] = known
                if len(self._prompts) > PROMPTS_KEPT:
                    self._prompts.popitem(last=False)
        return known[0].copy(), known[1].copy()

    def generate(
        self, prompt: str, length: int = 200, temperature: float = 1.0, seed: int = 0
    ) -> str:
        """`prompt` followed by `length` sampled characters; same arguments, same text."""
        text = check_request(prompt, length, temperature)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise PromptError(f"seed must be a whole number of at least 0, got {seed!r}")
        # One uniform draw per character, all from this seed alone, inverting the cumulative
        # distribution as TensorFlow's sampler does. (The Gumbel-max trick samples as exactly,
        # but its draws hardly move when weights change a little: the same seed then showed
        # no difference between a base and a fine-tuned model where this one does.)
        uniform = np.random.default_rng(seed).random(length)
        state, out = self._after(text)
        step = self._stepper(state, out)
        logits = out[3 * self.config.rnn_units :]
        odds = np.empty(self.config.vocab_size, np.float64)  # probabilities, unnormalised
        cumulative = np.empty(self.config.vocab_size, np.float64)
        sampled = np.empty(length, np.int64)
        for i in range(length):
            np.divide(logits, temperature, out=odds)
            odds[PAD_ID] = -np.inf  # padding is never a character
            np.subtract(odds, odds.max(), out=odds)
            np.exp(odds, out=odds)
            np.cumsum(odds, out=cumulative)
            # The first id whose cumulative weight passes the draw: never one of weight 0
            sampled[i] = cumulative.searchsorted(uniform[i] * cumulative[-1], side="right")
            if i + 1 < length:  # the last character's successor is never asked for
                step(sampled[i])
        return text + decode(sampled)

    def next_char_probabilities(self, prompt: str, temperature: float = 1.0) -> np.ndarray:
        """The distribution `generate` draws the character after `prompt` from, indexed by id
        (padding has probability 0)."""
        text = check_request(prompt, 1, temperature)
        _, out = self._after(text)
        scaled = out[3 * self.config.rnn_units :].astype(np.float64) / temperature
        scaled[PAD_ID] = -np.inf
        probabilities = np.exp(scaled - scaled.max())
        return probabilities / probabilities.sum()


def ready_generator(weights: list[np.ndarray], config: ModelConfig) -> TextGenerator:
    """A generator ready for its first request (NumPy traces nothing; kept for call sites)."""
    return TextGenerator(weights, config)


def load_generator(directory: str | Path) -> TextGenerator:
    """A ready generator for the model stored in `directory` (WeightsError if it cannot be read)."""
    config, arrays = load_config(directory), load_weights_arrays(directory)
    try:
        return TextGenerator(arrays, config)
    except WeightsError as error:
        raise WeightsError(
            f"unusable weights in {directory} for its {CONFIG_FILE}: {error}"
        ) from None
