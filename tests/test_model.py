"""The model, its masked loss and accuracy, and its weight files."""

import numpy as np
import pytest
import tensorflow as tf

from fedtext.config import ModelConfig
from fedtext.model.keras_model import (
    MaskedAccuracy,
    MaskedLoss,
    build_model,
    load_model,
    save_weights,
)
from fedtext.model.weights import WeightsError
from fedtext.text.vocab import PAD_ID, encode


def test_full_size_model_has_the_tutorials_parameter_count():
    assert abs(build_model(ModelConfig()).count_params() - 4.05e6) < 0.01e6


def test_padding_changes_neither_loss_nor_accuracy():
    tf.keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(embedding_dim=8, rnn_units=16))
    model.layers[-1].bias.assign(tf.one_hot(PAD_ID, 87, on_value=-5.0))  # padding is unlikely
    ids = encode("Blow, winds, and crack your cheeks!")
    x, y = ids[None, :-1], ids[None, 1:]
    padded_x = np.concatenate([x, np.full((1, 40), PAD_ID)], axis=1)
    padded_y = np.concatenate([y, np.full((1, 40), PAD_ID)], axis=1)
    loss, accuracy = MaskedLoss(), MaskedAccuracy()
    plain_loss = float(loss(y, model(x)))
    accuracy.update_state(y, model(x))
    plain_accuracy = float(accuracy.result())
    accuracy.reset_state()
    accuracy.update_state(padded_y, model(padded_x))
    assert float(loss(padded_y, model(padded_x))) == pytest.approx(plain_loss, rel=1e-5)
    assert float(accuracy.result()) == pytest.approx(plain_accuracy)
    # and an unmasked loss would have changed: the mask is doing the work
    unmasked = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert float(unmasked(padded_y, model(padded_x))) != pytest.approx(plain_loss, rel=1e-3)


def test_weights_round_trip_through_float16_files(tmp_path):
    config = ModelConfig(embedding_dim=8, rnn_units=16)
    model = build_model(config)
    save_weights(model, config, tmp_path)
    loaded, loaded_config = load_model(tmp_path)
    assert loaded_config == config
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-3)


def test_broken_weight_files_give_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="no model config"):
        load_model(tmp_path)
    config = ModelConfig(embedding_dim=8, rnn_units=16)
    save_weights(build_model(config), config, tmp_path)
    (tmp_path / "weights.npz").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="unreadable weights"):
        load_model(tmp_path)
    save_weights(build_model(ModelConfig(embedding_dim=8, rnn_units=8)), config, tmp_path)
    with pytest.raises(WeightsError, match="do not fit"):
        load_model(tmp_path)


def test_shipped_base_model_is_small_enough_for_a_space():
    from fedtext.model.weights import ASSETS_DIR

    weights = ASSETS_DIR / "dickens" / "weights.npz"
    assert weights.exists(), "assets/dickens/weights.npz is missing"
    assert weights.stat().st_size < 10 * 1024 * 1024
    _, config = load_model(ASSETS_DIR / "dickens")
    assert config == ModelConfig()
