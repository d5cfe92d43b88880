"""Pre-training on a small slice of real Dickens, and its error messages."""

import pytest

from fedtext.config import ModelConfig, PretrainConfig
from fedtext.learning.pretrain import pretrain
from fedtext.model.keras_model import load_model
from fedtext.text.corpus import CorpusError
from tests.conftest import ROOT

DICKENS = ROOT.parent / "shared" / "corpora" / "dickens" / "a_christmas_carol.txt"


def test_pretraining_a_small_model_learns_and_saves(tmp_path):
    if not DICKENS.exists():
        pytest.skip("../shared is not beside this checkout")
    sample = tmp_path / "carol.txt"
    sample.write_bytes(DICKENS.read_bytes()[:60_000])  # cp1252 bytes, Gutenberg header included
    lines = []
    config = PretrainConfig(
        epochs=3,
        batch_size=16,
        learning_rate=1e-2,
        model=ModelConfig(embedding_dim=16, rnn_units=64),
    )
    result = pretrain([sample], tmp_path / "model", config, report=lines.append)
    assert result.heldout_accuracy > 0.2  # random guessing: 1/86
    assert any(line.startswith("epoch 3 done") for line in lines)
    _, saved = load_model(tmp_path / "model")
    assert saved == config.model


def test_unusable_corpus_fails_before_training(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("Marley was dead: to begin with. " * 100)
    with pytest.raises(CorpusError, match="not found"):
        pretrain([good, tmp_path / "missing.txt"], tmp_path / "out", report=lambda _: None)
    assert not (tmp_path / "out").exists()
