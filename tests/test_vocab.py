"""The vocabulary, normalisation and the padded client pipeline."""

import numpy as np
import tensorflow as tf

from fedtext.model.batches import preprocess
from fedtext.text import vocab

TUTORIAL_VOCAB = (
    "dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\naeimquyAEIMQUY]!%)-159\r"
)


def test_vocabulary_is_the_tutorials_in_its_order():
    assert vocab.CHARS == TUTORIAL_VOCAB
    assert len(vocab.CHARS) == 86
    assert vocab.VOCAB_SIZE == 87  # plus padding
    assert vocab.decode(vocab.encode("Kent.\n")) == "Kent.\n"
    assert vocab.encode("d")[0] != vocab.PAD_ID


def test_normalise_maps_typographic_characters_to_ascii_twins():
    result = vocab.normalise("\u201cNa\u00efve caf\u00e9\u201d \u2014 it\u2019s \u00c6sop\u2026")
    assert result.text == '"Naive cafe" -- it\'s AEsop...'
    assert result.dropped == {}


def test_normalise_drops_and_counts_what_has_no_twin():
    result = vocab.normalise("a\u4e2d\u4e2db\u2603")
    assert result.text == "ab"
    assert result.dropped == {"\u4e2d": 2, "\u2603": 1}
    assert vocab.unknown_chars("ok \u2603") == ["\u2603"]


def _snippets(*texts):
    return tf.data.Dataset.from_tensor_slices({"snippets": tf.constant(list(texts))})


def test_a_client_with_less_than_one_batch_still_yields_a_padded_batch():
    # 30 characters: the tutorial's drop_remainder pipeline would yield nothing.
    batches = list(
        preprocess(_snippets("Speak the speech, I pray you."), 8, 100).as_numpy_iterator()
    )
    assert len(batches) == 1
    x, y = batches[0]
    assert x.shape == (1, 100) and y.shape == (1, 100)
    real = int((y != vocab.PAD_ID).sum())
    assert real == len("Speak the speech, I pray you.\n") - 1
    assert vocab.decode(x[0]) == "Speak the speech, I pray you.\n"


def test_pipeline_keeps_every_character_and_speeches_end_with_newlines():
    texts = ["A" * 250, "B" * 130]
    batches = list(preprocess(_snippets(*texts), 2, 100).as_numpy_iterator())
    targets = np.concatenate([y.reshape(-1) for _, y in batches])
    total = 250 + 130 + 2  # two speeches, each ending with a newline
    chunks = -(-total // 101)
    # every chunk of up to 101 characters gives one fewer prediction than it holds
    assert (targets != vocab.PAD_ID).sum() == total - chunks
    assert vocab.decode(targets).count("B") >= 129  # one B may open a chunk
