"""A model per character: the global model fine-tuned briefly on one character's training lines
and scored on its held-out speeches against the global model (Keras), and the same for every
client of a run with TFF's personalization evaluation.

The two share their batches and their update (plain SGD with the global-norm clip of the
federated clients), so a character's figures are the same whichever computed them."""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedtext.config import (
    SEQ_LENGTH,
    SHUFFLE_BUFFER,
    ConfigError,
    FederatedConfig,
    ModelConfig,
    at_least,
    positive_finite,
)
from fedtext.distribution import runtime
from fedtext.learning.records import PersonalGain
from fedtext.learning.tff_model import model_fn, restore_eager_keras
from fedtext.model.batches import preprocess, stack_batches
from fedtext.model.evaluation import evaluate_batches
from fedtext.model.keras_model import (
    BUILD_LOCK,
    MaskedLoss,
    build_model,
    compile_for_evaluation,
    load_model,
    masked_cross_entropy,
)
from fedtext.model.weights import save_arrays
from fedtext.text import plays

# A client's fingerprint, computed in TF and NumPy alike: a polynomial hash of its rows modulo
# a prime small enough that hash x multiplier stays inside int64.
_HASH_PRIME = 2_147_483_647
_HASH_BASE = 1_000_003


_CLIENTS = {f.name: f.default for f in dataclasses.fields(FederatedConfig)}


@dataclass(frozen=True)
class PersonaliseConfig:
    """How one character's model is cut from the global one."""

    # SGD steps on the character's lines, at the federated clients' default rate and clip. On
    # the shipped base model and Hamlet (2 shared cores): 20 steps, 14 s, held-out loss 2.013 ->
    # 1.971 and accuracy +0.0 points; 60 steps, 34 s, 1.943 and +0.5 points. At 0.1 the loss
    # fell but accuracy lost 1.5 points; at 0.3 and 1.0 it lost 5 and 23.
    steps: int = 60
    # The federated clients' rate, clip (each step's gradient clipped to this global norm, 0:
    # off, so a rate that suits small gradients cannot wreck the model on a large one), batch
    # and evaluation batch.
    learning_rate: float = _CLIENTS["client_learning_rate"]
    clip_norm: float = _CLIENTS["clip_norm"]
    batch_size: int = _CLIENTS["batch_size"]
    seq_length: int = SEQ_LENGTH
    shuffle_buffer: int = SHUFFLE_BUFFER
    eval_batch_size: int = _CLIENTS["eval_batch_size"]
    seed: int = 0  # the shuffle of the character's lines

    def __post_init__(self):
        for name in ("steps", "batch_size", "seq_length", "eval_batch_size"):
            at_least(name.replace("_", " "), getattr(self, name), 1)
        positive_finite("learning rate", self.learning_rate)
        if not self.clip_norm >= 0:
            raise ConfigError(f"clip norm must be 0 (off) or more, got {self.clip_norm!r}")


@dataclass(frozen=True)
class PersonalisationResult:
    """One character's model against the global model on its held-out speeches."""

    client_id: str
    steps: int
    global_loss: float  # nats per character
    global_accuracy: float
    personal_loss: float
    personal_accuracy: float
    weights: list[np.ndarray] = field(repr=False, compare=False)  # the personalised model

    @property
    def gain(self) -> float:
        """Held-out accuracy gained over the global model, in points."""
        return 100 * (self.personal_accuracy - self.global_accuracy)


ClientGain = PersonalGain  # one client's row of TFF's personalization evaluation


def training_rows(train_data, client_id: str, config: PersonaliseConfig):
    """The character's training lines as steps x batch_size (input, target) rows, cut by the
    tutorial's pipeline as a federated round's first batches are; repeated when the text is
    shorter. Empty when the character has no training text."""
    x, y = stack_batches(
        preprocess(
            train_data.create_tf_dataset_for_client(client_id),
            config.batch_size,
            config.seq_length,
            config.shuffle_buffer,
            config.seed,
        ),
        limit=config.steps,
    )
    if not len(x):
        return x, y
    take = np.arange(config.steps * config.batch_size) % len(x)
    return x[take], y[take]


def test_rows(test_data, client_id: str, config: PersonaliseConfig):
    """All of the character's held-out speeches as (input, target) rows."""
    return stack_batches(
        preprocess(
            test_data.create_tf_dataset_for_client(client_id),
            config.eval_batch_size,
            config.seq_length,
        )
    )


def _sgd_step(variables, gradients, learning_rate: float, clip_norm: float) -> None:
    """w -= lr x g, g clipped to a global norm: the same update in Keras and inside TFF."""
    # The embedding's gradient comes as IndexedSlices, which global_norm cannot take.
    gradients = [tf.convert_to_tensor(g) for g in gradients]
    if clip_norm > 0:
        gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
    for variable, gradient in zip(variables, gradients, strict=True):
        variable.assign_sub(learning_rate * gradient)


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def fine_tune(
    weights: Sequence[np.ndarray],
    model_config: ModelConfig,
    client_id: str,
    train_data,
    test_data,
    config: PersonaliseConfig = PersonaliseConfig(),
) -> PersonalisationResult:
    """Fine-tune `weights` on one character's training lines; score both on its held-out."""
    x, y = training_rows(train_data, client_id, config)
    tx, ty = test_rows(test_data, client_id, config)
    held_out = _batches(tx, ty, config.eval_batch_size)
    loss_fn = MaskedLoss()
    # BUILD_LOCK around every use of the Keras model, as its classes may be mid-swap while TFF
    # traces in another thread; taken step by step, so a page's generator waits one step at
    # most, not the whole fine-tuning.
    with BUILD_LOCK:
        model = compile_for_evaluation(build_model(model_config))
        model.set_weights(list(weights))
        global_loss, global_accuracy = evaluate_batches(model, held_out)

    @tf.function
    def step(bx, by):
        with tf.GradientTape() as tape:
            loss = loss_fn(by, model(bx, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        _sgd_step(model.trainable_variables, gradients, config.learning_rate, config.clip_norm)

    for bx, by in _batches(x, y, config.batch_size):
        with BUILD_LOCK:
            step(bx, by)
    with BUILD_LOCK:
        personal_loss, personal_accuracy = evaluate_batches(model, held_out)
        personal = model.get_weights()
    return PersonalisationResult(
        client_id,
        config.steps if len(x) else 0,
        global_loss,
        global_accuracy,
        personal_loss,
        personal_accuracy,
        personal,
    )


def personalise(
    model_dir: str | Path | None,
    client_id: str,
    output_dir: str | Path | None = None,
    steps: int | None = None,
    config: PersonaliseConfig = PersonaliseConfig(),
    client_data=None,
) -> PersonalisationResult:
    """The model in `model_dir` (default: the base model) fine-tuned on one character; written
    to `output_dir` (weights.npz and model.json, which `fedtext generate --model` reads) if
    given. `client_data` is (train, test) ClientData, loaded when not given."""
    if steps is not None:
        config = dataclasses.replace(config, steps=steps)
    train, test = client_data if client_data is not None else plays.load_client_data()
    (client_id,) = plays.check_client_ids([client_id], train.client_ids)
    with BUILD_LOCK:
        model, model_config = load_model(model_dir)
    result = fine_tune(model.get_weights(), model_config, client_id, train, test, config)
    if output_dir is not None:
        save_arrays(result.weights, model_config, output_dir)
    return result


def evaluate_personalisation(
    weights: Sequence[np.ndarray],
    model_config: ModelConfig,
    client_ids: Sequence[str],
    train_data,
    test_data,
    config: PersonaliseConfig = PersonaliseConfig(),
) -> list[ClientGain]:
    """Every client's global and personalised held-out figures, from TFF's
    `build_personalization_eval_computation`, in the order of `client_ids`.

    TFF collects the clients' metrics through a reservoir sample, in an order of its own; each
    client also reports a fingerprint of its rows, which names it again here."""
    if not client_ids:
        return []
    inputs, prints = [], []
    for cid in client_ids:
        x, y = training_rows(train_data, cid, config)
        tx, ty = test_rows(test_data, cid, config)
        prints.append(_fingerprint_np(x, tx))
        inputs.append(
            collections.OrderedDict(
                train_data=tf.data.Dataset.from_tensor_slices((x, y)),
                test_data=tf.data.Dataset.from_tensor_slices((tx, ty)),
            )
        )
    # TFF collects at most max_num_clients rows; rounded up to a power of two, so a handful of
    # compiled computations serve every number of clients.
    computation = _build_evaluation(model_config, config, 1 << (len(client_ids) - 1).bit_length())
    runtime.install()
    n_trainable = len(build_model(model_config).trainable_weights)
    global_weights = tff.learning.models.ModelWeights(
        trainable=list(weights[:n_trainable]), non_trainable=list(weights[n_trainable:])
    )
    metrics = computation(global_weights, inputs)
    baseline, personal = metrics["baseline_metrics"], metrics["personalised"]
    by_print: dict[int, list[int]] = collections.defaultdict(list)
    for position, value in enumerate(personal["fingerprint"]):
        by_print[int(value)].append(position)
    gains = []
    for cid, fingerprint in zip(client_ids, prints, strict=True):
        # Clients with the same fingerprint have the same rows, hence the same figures.
        i = by_print[fingerprint].pop()
        gains.append(
            ClientGain(
                cid,
                float(baseline["loss"][i]),
                float(baseline["accuracy"][i]),
                float(personal["loss"][i]),
                float(personal["accuracy"][i]),
                config.steps,
            )
        )
    return gains


def _fingerprint_np(x: np.ndarray, tx: np.ndarray) -> int:
    value = 0
    for row in (*x, *tx):
        value = (value * _HASH_BASE + int(np.dot(row, np.arange(1, len(row) + 1)))) % _HASH_PRIME
    return value


def _fingerprint_tf(train: tf.data.Dataset, test: tf.data.Dataset) -> tf.Tensor:
    def add(value, element):
        x = element[0]
        row = tf.reduce_sum(x * tf.range(1, tf.size(x, tf.int64) + 1, dtype=tf.int64))
        return (value * _HASH_BASE + row) % _HASH_PRIME

    start = tf.constant(0, tf.int64)
    return test.reduce(train.reduce(start, add), add)


def _masked_sums(model, dataset: tf.data.Dataset, batch_size: int):
    """(loss per character, accuracy) of a TFF model on (input, target) rows, padding masked,
    as fedtext.model.keras_model's MaskedMeanLoss and MaskedAccuracy count them."""

    def add(sums, batch):
        x, y = batch
        logits = model.predict_on_batch(x, training=False)
        per_char, mask = masked_cross_entropy(y, logits)
        right = tf.cast(tf.equal(tf.argmax(logits, -1), y), tf.float32)
        return (
            sums[0] + tf.reduce_sum(per_char * mask),
            sums[1] + tf.reduce_sum(right * mask),
            sums[2] + tf.reduce_sum(mask),
        )

    zero = tf.constant(0.0)
    loss, right, count = dataset.batch(batch_size).reduce((zero, zero, zero), add)
    return collections.OrderedDict(
        loss=tf.math.divide_no_nan(loss, count), accuracy=tf.math.divide_no_nan(right, count)
    )


@functools.lru_cache(maxsize=4)
def _build_evaluation(model_config: ModelConfig, config: PersonaliseConfig, max_clients: int):
    def build_personalise_fn():
        # Called by TFF inside its graph, once, before its tf.function: nothing to create here,
        # as the update has no optimizer state.
        @tf.function
        def personalise_fn(model, train_data, test_data):
            for batch in train_data.batch(config.batch_size):
                with tf.GradientTape() as tape:
                    loss = model.forward_pass(batch, training=True).loss
                variables = model.trainable_variables
                gradients = tape.gradient(loss, variables)
                _sgd_step(variables, gradients, config.learning_rate, config.clip_norm)
            metrics = _masked_sums(model, test_data, config.eval_batch_size)
            metrics["fingerprint"] = _fingerprint_tf(train_data, test_data)
            return metrics

        return personalise_fn

    @tf.function
    def baseline_fn(model, test_data):
        return _masked_sums(model, test_data, config.eval_batch_size)

    with BUILD_LOCK:
        runtime.install()
        computation = tff.learning.algorithms.build_personalization_eval_computation(
            model_fn(model_config),
            collections.OrderedDict(personalised=build_personalise_fn),
            baseline_fn,
            max_num_clients=max_clients,
        )
        restore_eager_keras(model_config)
    return computation
