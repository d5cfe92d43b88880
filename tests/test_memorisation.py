"""The memorisation probe over the real plays' training text, and its suffix array against a
brute-force search on a small text."""

import random
import subprocess
import sys

import numpy as np
import pytest

from fedtext.config import ConfigError
from fedtext.text import memorisation
from fedtext.text.memorisation import CopyIndex, encode, find_copies, suffix_array
from fedtext.text.vocab import CHARS
from tests.conftest import ROOT

FOOL = "KING_LEAR_FOOL"


@pytest.fixture(scope="module")
def index(database):
    return memorisation.load_index(database)


def random_text(length: int, seed: int) -> str:
    """Characters drawn uniformly from the vocabulary: no 12 of them in a row are in a play."""
    rng = random.Random(seed)
    return "".join(rng.choice(CHARS) for _ in range(length))


def fools_line(database) -> str:
    """A long line of the Fool's training speeches, read from the database, not the index."""
    from fedtext.text.plays import load_speeches

    lines = [line for s in load_speeches(FOOL, "train", database) for line in s.split("\n")]
    return max(lines, key=len)


def test_a_planted_line_is_found_and_named(index, database):
    line = fools_line(database)
    planted = line[3:43]
    text = random_text(300, 1) + planted + random_text(660, 2)
    probe = find_copies(text, [FOOL, "HAMLET_HAMLET"], index=index)
    assert len(probe.spans) == 1
    span = probe.spans[0]
    # The random neighbours may continue the copy by a character or so, by chance.
    assert span.start <= 300 and span.end >= 340 and span.end - span.start <= 44
    assert span.client_id == FOOL and span.line == line
    copy = span.copies[0]
    assert index.client_text(index.client_ids.index(FOOL))[copy.offset :].startswith(
        text[copy.start : copy.end]
    )
    assert probe.generated_chars == 1000
    assert probe.per_thousand == pytest.approx(span.end - span.start)


def test_copies_are_marked_in_html_with_their_character_and_line(index, database):
    line = fools_line(database)
    text = "<b>" + random_text(50, 5) + line[3:43] + random_text(50, 6)
    probe = find_copies(text, [FOOL], index=index)
    page = memorisation.copies_html(text, probe, {FOOL: "Fool (King Lear)"})
    assert page.count("<mark") == 1
    assert 'title="Fool (King Lear): ' in page and "&lt;b&gt;" in page and "<b>" not in page
    assert memorisation.copies_html("plain", find_copies("plain", [FOOL], index=index)) == (
        '<div style="white-space:pre-wrap;font-family:monospace">plain</div>'
    )


def test_only_the_given_clients_count(index, database):
    planted = fools_line(database)[3:43]
    text = random_text(100, 3) + planted + random_text(100, 4)
    # Common phrases may be Hamlet's too; the Fool's line as a whole is not.
    hamlet = find_copies(text, ["HAMLET_HAMLET"], index=index)
    assert all(s.client_id == "HAMLET_HAMLET" and s.end - s.start < 40 for s in hamlet.spans)
    everyone = find_copies(text, None, index=index)
    marked = {i for s in everyone.spans for i in range(s.start, s.end)}
    assert set(range(100, 140)) <= marked


def test_random_text_copies_nothing(index):
    probe = find_copies(random_text(1000, 5), None, index=index)
    assert probe.spans == () and probe.per_thousand == 0.0


def test_the_shortest_copy_is_a_setting(index, database):
    planted = fools_line(database)[5:16]  # 11 characters
    text = random_text(50, 6) + planted + random_text(50, 7)
    assert find_copies(text, [FOOL], index=index).spans == ()
    found = find_copies(text, [FOOL], min_chars=8, index=index)
    assert len(found.spans) == 1 and planted in text[found.spans[0].start : found.spans[0].end]


def test_bad_probe_requests_get_one_line(index):
    with pytest.raises(ConfigError, match="unknown client id 'KING_LEAR_LEARR'"):
        find_copies("some text", ["KING_LEAR_LEARR"], index=index)
    with pytest.raises(ConfigError, match="at least 1"):
        find_copies("some text", None, min_chars=0, index=index)


def test_the_index_is_stored_beside_the_database_and_reused(index, database):
    path = memorisation.index_path(database)
    assert path.parent == database.parent and database.stem in path.name
    memorisation._LOADED.clear()
    again = memorisation.load_index(database)  # from disk this time
    assert again is not index
    np.testing.assert_array_equal(again.suffixes, index.suffixes)
    assert again.client_ids == index.client_ids
    assert len(index.client_ids) == 1154 and len(index.codes) > 3_700_000


def test_suffix_array_sorts_every_suffix():
    rng = np.random.default_rng(0)
    # Few distinct characters and a long repeat: many rounds of doubling.
    codes = rng.integers(2, 5, 3000).astype(np.uint8)
    codes[2000:2600] = codes[100:700]
    text = codes.tobytes()
    expected = sorted(range(len(text)), key=lambda i: text[i:])
    assert suffix_array(codes).tolist() == expected


def test_probe_matches_a_brute_force_search():
    """On a small corpus of three clients over three letters, every character the probe marks,
    and only those, lies in a copy of at least 12 characters from an allowed client."""
    rng = random.Random(8)
    texts = ["".join(rng.choice("ab ") for _ in range(400)) + "\n" for _ in range(3)]
    parts, starts, position = [], [], 0
    for text in texts:
        starts.append(position)
        parts += [encode(text), np.array([1], np.uint8)]
        position += len(text) + 1
    codes = np.concatenate(parts)
    small = CopyIndex(codes, suffix_array(codes), np.array(starts), np.array(["A", "B", "C"]))
    generated = "".join(rng.choice("ab ") for _ in range(300))
    allowed = {"A": texts[0], "C": texts[2]}
    probe = find_copies(generated, ["A", "C"], index=small)
    marked = {i for s in probe.spans for i in range(s.start, s.end)}
    expected = set()
    for i in range(len(generated)):
        for end in range(i + 12, len(generated) + 1):
            if not any(generated[i:end] in t for t in allowed.values()):
                break
            expected.update(range(i, end))
    assert marked == expected and marked
    for span in probe.spans:
        for copy in span.copies:
            source = allowed[copy.client_id]
            assert copy.end - copy.start >= 12
            assert source[copy.offset :].startswith(generated[copy.start : copy.end])
            assert generated[copy.start : copy.end] in copy.line


def test_the_page_can_probe_and_count_epsilon_without_tensorflow(database):
    code = (
        "import sys\n"
        "from fedtext.learning import privacy\nfrom fedtext.text import memorisation\n"
        "from fedtext.config import FederatedConfig\n"
        f"probe = memorisation.find_copies('no copy here', None, database=r'{database}')\n"
        "config = FederatedConfig(client_ids=('A', 'B'), weighting='uniform',"
        " noise_multiplier=1.0)\n"
        "assert privacy.epsilon_after(config).epsilon > 0\n"
        "assert probe.spans == ()\n"
        "print(sorted(m for m in sys.modules if m.startswith('tensorflow')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
