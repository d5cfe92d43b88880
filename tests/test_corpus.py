"""Reading users' text files for pre-training."""

import pytest

from fedtext.text.corpus import CorpusError, read_corpus_file

BODY = "It was the best of times, it was the worst of times. " * 40
GUTENBERG = (
    "The Project Gutenberg eBook of Something\n\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n"
    + BODY
    + "\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nLicence text that is not the book.\n"
)


@pytest.mark.parametrize(
    "encoded",
    [
        GUTENBERG.replace("best", "\u201cbest\u201d").encode("utf-8"),
        b"\xef\xbb\xbf" + GUTENBERG.replace("best", "\u201cbest\u201d").encode("utf-8"),
        GUTENBERG.replace("best", "\u201cbest\u201d").encode("cp1252"),
        GUTENBERG.replace("best", "b\u00e9st").encode("latin-1"),
    ],
    ids=["utf-8", "utf-8-bom", "cp1252", "latin-1"],
)
def test_reads_every_common_encoding_and_strips_gutenberg(tmp_path, encoded):
    path = tmp_path / "book.txt"
    path.write_bytes(encoded)
    corpus = read_corpus_file(path)
    assert corpus.text.startswith('It was the "best" of times') or corpus.text.startswith(
        "It was the best of times"
    )
    assert "Gutenberg" not in corpus.text and "Licence" not in corpus.text
    assert corpus.dropped == {}


def test_the_shared_dickens_novels_read_cleanly():
    from tests.conftest import ROOT

    path = ROOT.parent / "shared" / "corpora" / "dickens" / "a_tale_of_two_cities.txt"
    if not path.exists():
        pytest.skip("../shared is not beside this checkout")
    corpus = read_corpus_file(path)
    assert corpus.encoding == "cp1252"
    assert corpus.text.startswith("A TALE OF TWO CITIES")
    assert "\u201c" not in corpus.text and '"' in corpus.text


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        (b"", "empty"),
        (b"\x00\x01binary\x00" * 100, "binary"),
        (b"too short", "only"),
    ],
)
def test_unusable_files_get_one_line_reasons(tmp_path, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CorpusError, match=message) as error:
        read_corpus_file(path)
    assert "\n" not in str(error.value)
