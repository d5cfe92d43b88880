"""The page with TFF's secure aggregator: a link sets it, the round says what the server sees,
and a real round on the tiny model trains through it."""

from tests.test_app import CLIENTS, open_page, wait_for_run


def test_a_secure_link_trains_and_says_the_server_sees_only_the_sum(page_env):
    at = open_page({"aggregator": "secure", "rounds": "1", "batches": "1"})
    assert at.radio(key="aggregator").value == "secure"
    assert "only the sum" in " ".join(m.value for m in at.markdown)
    at.multiselect(key="client_ids").set_value(CLIENTS)
    at.button(key="train").click().run(timeout=240)
    # The engine compiles the secure round first (minutes on a loaded 2-core machine).
    at = wait_for_run(at, timeout=900)
    assert at.session_state["run_id"]
    assert not [e.value for e in at.error]
