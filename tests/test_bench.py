"""The benchmark's quick mode on a tiny model writes a well-formed table; no timing is asserted."""

import json
import math

import pytest

from fedtext import bench


def _is_table(text: str) -> bool:
    """Every Markdown table in `text` has the same number of cells on every row."""
    blocks, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line.count("|"))
        elif current:
            blocks.append(current)
            current = []
    return bool(blocks) and all(len(set(block)) == 1 and len(block) > 2 for block in blocks)


@pytest.fixture(scope="module")
def quick_run(tiny_model_dir, tmp_path_factory, client_data):
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEDTEXT_BASE_MODEL", str(tiny_model_dir))  # main() sets it for children
        code = bench.main(
            [
                "--quick",
                "--base",
                str(tiny_model_dir),
                "--out",
                str(out),
                "--only",
                "overhead,generation,learning",
            ]
        )
    return code, out


def test_quick_mode_writes_json_markdown_and_chart(quick_run):
    code, out = quick_run
    assert code == 0
    document = json.loads((out / "results.json").read_text())
    rows = {row["key"]: row for row in document["rows"]}
    for key in (
        "overhead.ratio.2x5",
        "overhead.ratio.4x5",
        "generation.latency_s",
        "learning.tutorial.collapsed_accuracy",
        "learning.default_page.gain_points",
        "learning.default_page.train_s",
        "learning.centralised_ratio",
        "throughput.ratio_to_floor",
    ):
        assert key in rows
    for row in rows.values():
        assert row["value"] is None or math.isfinite(row["value"])
        assert row["value"] is not None or row["note"], "a skipped figure says why"
    assert [h["round"] for h in document["learning"]["page defaults"]] == [0, 1, 2]
    assert len(document["learning"]["centralised, same CPU time"]) >= 2
    assert document["meta"]["quick"] is True
    markdown = (out / "results.md").read_text()
    assert _is_table(markdown)
    assert "TFF round / Keras floor" in markdown
    assert "plotly" in (out / "learning.html").read_text().lower()


def second_run(first: dict, out, sections: tuple[str, ...], machine: str | None = None) -> dict:
    """Another run after `first`, measuring one overhead figure in `sections`, on `first`'s
    machine or on `machine`; returns its results.json."""
    (out / "results.json").write_text(json.dumps(first))
    meta = {**first["meta"], "machine": machine or first["meta"]["machine"], "commit": "c0ffee0"}
    settings = bench.Settings(base_dir=out, out_dir=out, sections=sections)
    results = bench.Results(
        settings,
        rows=[bench.Row("overhead.ratio.2x5", "1 overhead", "ratio", 1.0, "x", 1.15)],
        step=("overhead",),
    )
    bench.write_outputs(results, meta, bench.previous_values(out, meta["machine"]), last=first)
    return json.loads((out / "results.json").read_text())


def test_a_second_run_on_the_machine_carries_what_it_did_not_measure(quick_run, tmp_path):
    _, out = quick_run
    first = json.loads((out / "results.json").read_text())
    machine = first["meta"]["machine"]
    assert machine and all(r["machine"] == machine for r in first["rows"])
    assert all(r["commit"] == first["meta"]["commit"] for r in first["rows"])
    second = second_run(first, tmp_path, sections=("overhead",))
    row = second["rows"][0]
    assert row["previous"] == pytest.approx(first["rows"][0]["value"])
    assert row["ok"] is True and (row["machine"], row["commit"]) == (machine, "c0ffee0")
    # Its sections' rows are this run's (an old key of theirs does not linger); the other
    # sections' last figures are carried, each with the machine and commit that measured it.
    carried = {r["key"] for r in second["carried"]}
    assert carried == {r["key"] for r in first["rows"] if "overhead" not in r["sections"]}
    assert carried and not any(key.startswith("overhead.") for key in carried)
    assert all(r["commit"] == first["meta"]["commit"] for r in second["carried"])
    markdown = (tmp_path / "results.md").read_text()
    assert _is_table(markdown)
    carried_lines = [line for line in markdown.splitlines() if "| carried from " in line]
    assert len(carried_lines) == len(carried)
    assert all(f"| {machine} | {first['meta']['commit']} |" in line for line in carried_lines)


def test_a_run_on_another_machine_carries_nothing_and_compares_with_nothing(quick_run, tmp_path):
    _, out = quick_run
    first = json.loads((out / "results.json").read_text())
    second = second_run(first, tmp_path, sections=("overhead",), machine="elsewhere-0000")
    assert second["carried"] == [] and second["rows"][0]["previous"] is None
    assert second["learning"] == {}  # nor its learning curves
    assert any("not carried: measured on another machine" in note for note in second["notes"])
    assert f"| {first['meta']['commit']} |" not in (tmp_path / "results.md").read_text()


def test_page_figures_are_skipped_with_a_reason_without_app_py(tmp_path, monkeypatch):
    from fedtext.bench import page

    monkeypatch.setattr(page, "ROOT", tmp_path)  # run_page looks for app.py under page.ROOT
    results = bench.Results(bench.Settings(base_dir=tmp_path))
    bench.run_page(results.settings, results)
    assert [row.key for row in results.rows] == [
        "page.first_draw_s",
        "page.usable_s",
        "page.import_tf_s",
        "page.bare_streamlit_s",
        "page.usable_bare_ratio",
        "page.usable_ratio",
        "page.visitor_usable_s",
        "page.visitor_bare_s",
        "page.usable_over_bare",
        "page.visitor_ratio",
        "memory.page_idle_mb",
        "memory.training_peak_mb",
    ]
    assert all(row.value is None for row in results.rows)
    assert all("app.py does not exist" in row.note for row in results.rows)


def test_generation_is_timed_against_its_own_matrix_vector_floor(tiny_model_dir, tmp_path):
    from fedtext.bench.engine import run_generation

    results = bench.Results(bench.Settings(base_dir=tiny_model_dir, out_dir=tmp_path, quick=True))
    run_generation(results.settings, results)
    rows = {row.key: row for row in results.rows}
    assert list(rows) == [
        "generation.latency_s",
        "generation.again_s",
        "generation.floor_s",
        "generation.ratio_to_floor",
        "generation.chars_per_s",
    ]
    assert all(math.isfinite(row.value) and row.value > 0 for row in rows.values())
    latency, floor = rows["generation.latency_s"].value, rows["generation.floor_s"].value
    assert rows["generation.ratio_to_floor"].value == pytest.approx(latency / floor)
    assert rows["generation.chars_per_s"].value == pytest.approx(200 / latency)
    assert rows["generation.latency_s"].target_max == rows["generation.again_s"].target_max == 0.1
    # The tiny model's products, 183 x 32: 39 for the prompt and 199 for the 200 characters.
    assert "238 bare 183x32" in rows["generation.floor_s"].measure


def test_the_whole_federation_samples_every_client_with_its_own_settings(
    tiny_model_dir, tmp_path, client_data
):
    """The federation section trains all clients, a cohort a round, with the federation
    preset (not the page's defaults), and reports held-out accuracy on everyone's speeches."""
    from fedtext.bench.learning import FEDERATION, run_federation
    from fedtext.presets import PRESETS

    train, test = client_data
    results = bench.Results(
        bench.Settings(
            base_dir=tiny_model_dir, out_dir=tmp_path, sections=("federation",), quick=True
        )
    )
    run_federation({"train": train, "test": test}, results.settings, results)
    rows = {row.key: row for row in results.rows}
    accuracy = rows["learning.federation.heldout_accuracy"]
    cohort = PRESETS["federation"]["clients_per_round"]
    assert f"({len(train.client_ids)} clients, {cohort} a round drawn by text" in accuracy.measure
    assert 0 < accuracy.value < 1
    assert rows["learning.federation.cpu_minutes"].value > 0
    curve = results.learning[FEDERATION]
    assert curve[0]["round"] == 0 and len(curve) >= 2
