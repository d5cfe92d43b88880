"""The Keep download works with Keras: a stored run (the page's zip) and `finetune --output` hold
`model.keras`, which tf.keras.models.load_model opens and which predicts as fedtext's own files
do; the README's lines generate from it."""

import contextlib
import io
import re
import time
import zipfile

import numpy as np
import tensorflow as tf

from fedtext.config import FederatedConfig
from fedtext.model.keras_model import BUILD_LOCK, load_model
from fedtext.service.jobs import JobState, TrainingQueue
from fedtext.service.links import model_archive
from fedtext.service.store import RunStore
from fedtext.text.vocab import encode
from tests.conftest import ROOT, wait_for
from tests.test_cli import run_cli


def assert_same_predictions(keras_file, fedtext_dir) -> None:
    """Keras' file and fedtext's own give the same next-character logits."""
    text = encode("ROMEO: But soft, what light through yonder window breaks?")[None]
    with BUILD_LOCK:
        theirs = tf.keras.models.load_model(keras_file, compile=False)
        ours, _ = load_model(fedtext_dir)
        np.testing.assert_allclose(theirs(text).numpy(), ours(text).numpy(), atol=1e-5)


def test_the_pages_zip_holds_a_keras_model_that_predicts_as_fedtext_s(
    client_data, tiny_model_dir, tmp_path
):
    store = RunStore(tmp_path / "runs")
    queue = TrainingQueue(*client_data, tiny_model_dir, store=store)
    config = FederatedConfig(client_ids=("KING_LEAR_FOOL",), rounds=1, batches_per_client=1)
    job = queue.submit(config, owner="gina", page_open=lambda: True)
    wait_for(job)
    assert job.state is JobState.DONE, job.message
    # Written just after the run ends for its page, in the queue's thread.
    keras_file = store.path(job.job_id) / "model.keras"
    deadline = time.monotonic() + 120
    while not keras_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    # Storing the run again (here with its baseline) keeps it.
    assert queue.run_baseline(job.job_id, "gina") == ""
    wait_for(job)
    assert job.baseline and keras_file.exists()
    with zipfile.ZipFile(io.BytesIO(model_archive(store.path(job.job_id)))) as archive:
        assert "fedtext-model/model.keras" in archive.namelist()
        archive.extractall(tmp_path / "unzipped")
    unzipped = tmp_path / "unzipped" / "fedtext-model"
    assert_same_predictions(unzipped / "model.keras", unzipped)
    # Not the base model's: the run's trained weights.
    base, _ = load_model(tiny_model_dir)
    assert not all(
        np.array_equal(a, b) for a, b in zip(base.get_weights(), job.weights, strict=True)
    )

    # The README's lines, as printed there, on the unzipped folder.
    readme = (ROOT / "README.md").read_text()
    example = re.search(
        r"<!-- keras-example:start -->\n```python\n(.*?)```\n<!-- keras-example:end -->",
        readme,
        re.S,
    ).group(1)
    assert '"fedtext-model/model.keras"' in example
    code = example.replace('"fedtext-model/model.keras"', repr(str(unzipped / "model.keras")))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), BUILD_LOCK:
        exec(compile(code, "README.md", "exec"), {})
    text = printed.getvalue().rstrip("\n")
    assert text.startswith("ROMEO: ") and len(text) == len("ROMEO: ") + 200


def test_finetune_output_holds_a_keras_model(tiny_model_dir, tmp_path, database):
    result = run_cli(
        "finetune", "--base", str(tiny_model_dir), "--clients", "KING_LEAR_FOOL",
        "--rounds", "1", "--batches", "1", "--output", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_same_predictions(tmp_path / "model.keras", tmp_path)
