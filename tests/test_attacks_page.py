"""The page with TFF's secure aggregator: a link sets it, the round says what the server sees,
and a real round on the tiny model trains through it."""

from tests.test_app import open_page, page_env, train  # noqa: F401 (page_env is a fixture)


def test_a_secure_link_trains_and_says_the_server_sees_only_the_sum(page_env):  # noqa: F811
    at = open_page({"aggregator": "secure"})
    assert at.radio(key="aggregator").value == "secure"
    markdown = " ".join(m.value for m in at.markdown)
    assert "only the sum" in markdown
    at = train(at, aggregator="secure")
    assert not at.exception
    assert at.session_state["run_id"]
