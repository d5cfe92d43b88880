"""The leakage probe on real TFF rounds of the tiny model: what one plain update and what a
secure sum tell the server about the characters a client typed."""

import pytest

from fedtext.cli import main
from fedtext.config import FederatedConfig
from fedtext.learning.leakage import estimate_counts, moved_rows, probe

# Small characters whose whole text fits in one round's batches.
CLIENT = "CORIOLANUS_A_PATRICIAN"
COHORT = ("ANTONY_AND_CLEOPATRA_MENECRATES", "ANTONY_AND_CLEOPATRA_FIRST_ATTENDANT")


def test_a_plain_update_gives_away_the_exact_characters_and_their_counts(
    tiny_model_dir, database, capsys
):
    assert main(["leak", CLIENT, "--model", str(tiny_model_dir), "--rows", "0"]) == 0
    out = capsys.readouterr().out
    assert "character set: precision 1.000, recall 1.000" in out
    r = float(out.split("counts: r = ")[1].split()[0])
    assert r > 0.95, out
    assert "(not recovered)" not in out and "(not the client's)" not in out


def test_a_secure_sum_shows_only_the_union_of_the_cohort(tiny_model_dir, client_data):
    train, test = client_data
    config = FederatedConfig(client_ids=(CLIENT, *COHORT), aggregator="secure")
    leak = probe(config, train, test, CLIENT, tiny_model_dir, COHORT)
    assert leak.seen == (CLIENT, *COHORT)
    assert leak.moved == leak.cohort_set  # exactly the union, nothing of who typed what
    assert leak.true_set < leak.cohort_set  # the others typed characters the client did not
    assert leak.recall == 1.0 and leak.precision < 1.0


def test_counts_come_from_the_bias_update_with_the_prior():
    import numpy as np

    prior = np.array([0.0, 0.4, 0.3, 0.2, 0.05, 0.05])
    counts = np.array([0.0, 6.0, 4.0, 0.0, 0.0, 0.0])
    # One SGD step at rate 0.1: update = 0.1 x (prior - frequency).
    update = 0.1 * (prior - counts / counts.sum())
    embedding = np.zeros((6, 2))
    embedding[[1, 2]] = 1.0
    moved = moved_rows(embedding)
    assert moved == {1, 2}
    np.testing.assert_allclose(estimate_counts(update, moved, prior, 10.0, 1.0), counts)


@pytest.mark.parametrize(
    "args, message",
    [
        (["leak", "NOBODY"], "unknown client id 'NOBODY'"),
        (["leak", CLIENT, "--model", "/nonexistent"], "/nonexistent"),
        (["leak", CLIENT, "--cohort", "NOBODY", "--aggregator", "secure"], "'NOBODY'"),
    ],
)
def test_bad_leak_input_gets_one_line(args, message, capsys, database):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
