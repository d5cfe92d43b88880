"""The outputs: results.json, results.md, learning.html and docs/benchmarks.md's table, each
figure beside the last run's."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from fedtext.bench.results import ROOT, Results

TABLE_START, TABLE_END = "<!-- bench:start -->", "<!-- bench:end -->"
TABLE_DOC = ROOT / "docs" / "benchmarks.md"


def learning_figure(learning: dict[str, list[dict]]):
    """Held-out accuracy against CPU minutes of training, and loss against rounds."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("held-out accuracy by CPU minutes of training", "held-out loss per round"),
    )
    for name, history in learning.items():
        history = evaluated(history)
        fig.add_trace(
            go.Scatter(
                x=[h["cpu_s"] / 60 for h in history],
                y=[h["eval_accuracy"] for h in history],
                mode="lines+markers",
                name=f"{name}: accuracy",
                legendgroup=name,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[h["round"] for h in history],
                y=[h["eval_loss"] for h in history],
                mode="lines+markers",
                name=f"{name}: loss",
                legendgroup=name,
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="CPU minutes (this process and the TFF worker)", row=1, col=1)
    fig.update_xaxes(title_text="round", row=1, col=2)
    fig.update_layout(title="fedtext: learning (seeded)")
    return fig


def evaluated(history: list[dict]) -> list[dict]:
    """The points of a curve whose held-out accuracy was measured (NaN elsewhere)."""
    return [h for h in history if h["eval_accuracy"] == h["eval_accuracy"]]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def summary_table(
    results: Results, meta: dict, carried: list[dict] = (), notes: list[str] | None = None
) -> str:
    """The figures of one machine: this run's, then those carried from its earlier runs."""
    others = meta["foreign_cores_mean"]
    load = (
        "nothing else running"
        if others <= 0.2
        else f"other processes using {others:.1f} of the cores on average, so noisier timings"
    )
    lines = [
        f"Machine {meta['machine']}: {meta['cpus']} CPUs ({meta['cpu_model']}), "
        f"{meta['memory_gb']} GB. Measured {meta['time_utc']} UTC at commit {meta['commit']}, "
        f"{load}{', quick mode' if meta['quick'] else ''}; rows marked carried are from "
        "earlier runs on this machine.",
        "",
        "| | measure | value | previous | target | machine | commit | carried | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results.rows:
        mark = {True: "met", False: "**missed**", None: ""}[row.ok]
        target = f"<= {fmt(row.target_max, row.unit)} {mark}" if row.target_max else ""
        lines.append(
            f"| {row.section} | {row.measure} | {fmt(row.value, row.unit)} | "
            f"{fmt(row.previous, row.unit)} | {target} | {row.machine} | {row.commit} | | "
            f"{row.note} |"
        )
    for row in carried:
        target = f"<= {fmt(row['target_max'], row['unit'])}" if row.get("target_max") else ""
        lines.append(
            f"| {row['section']} | {row['measure']} | {fmt(row['value'], row['unit'])} | | "
            f"{target} | {row['machine']} | {row['commit']} | carried from "
            f"{row['measured_utc']} UTC | {row['note']} |"
        )
    lines += [f"\n{note}" for note in (results.notes if notes is None else notes)]
    return "\n".join(lines) + "\n"


def scaling_table(results: Results) -> str:
    lines = [
        "| clients | batches | TFF round | Keras floor | ratio | of which data | per batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in results.scaling:
        lines.append(
            f"| {p['clients']} | {p['batches']} | {p['round_s']:.2f} s | "
            f"{p['floor_s']:.2f} s | {p['ratio']:.2f} | {p['data_s']:.2f} s | "
            f"{p['round_s'] / (p['clients'] * p['batches']):.3f} s |"
        )
    return "\n".join(lines) + "\n"


def learning_table(learning: dict[str, list[dict]]) -> str:
    """One row per evaluated point of each curve: accuracy, loss and CPU minutes."""
    curves = {name: evaluated(h) for name, h in learning.items()}
    lines = [
        "| point | " + " | ".join(f"{n}: accuracy | loss | CPU min" for n in curves) + " |",
        "|---" * (1 + 3 * len(curves)) + "|",
    ]
    for i in range(max(len(h) for h in curves.values())):
        cells = []
        for h in curves.values():
            cells += (
                [
                    f"{h[i]['eval_accuracy']:.4f}",
                    f"{h[i]['eval_loss']:.4f}",
                    f"{h[i]['cpu_s'] / 60:.2f}",
                ]
                if i < len(h)
                else ["", "", ""]
            )
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def previous_values(out: Path, machine: str) -> dict[str, float | None]:
    """The figures of the run before this one on the same machine, by key."""
    try:
        last = last_document(out)
        if last.get("meta", {}).get("machine") != machine:
            return {}  # another machine's figures are no "previous" for this one
        return {r["key"]: r["value"] for r in last.get("rows", [])}
    except (KeyError, TypeError, AttributeError):
        return {}  # an unreadable earlier run: nothing to compare with


def carried_rows(last: dict, machine: str, sections: tuple[str, ...]) -> tuple[list[dict], int]:
    """The rows of the last run (`last`, its results.json) to carry into this run's report, and
    how many were left out. Carried: rows measured on this machine (whose name each row
    records) in sections this run did not run. Left out: another machine's, those of a
    section run again (its rows now are this run's: a figure whose key changed does not
    linger beside its successor), and rows that never recorded their machine."""
    try:
        rows = [*last.get("rows", []), *last.get("carried", [])]
    except (AttributeError, TypeError):
        return [], 0
    kept = [
        r
        for r in rows
        if isinstance(r, dict)
        and r.get("machine") == machine
        and r.get("sections")
        and not set(r["sections"]) & set(sections)
    ]
    return kept, len(rows) - len(kept)


def carried_curves(last: dict, sections: tuple[str, ...]) -> dict[str, list[dict]]:
    """The last run's learning curves of the sections this run left out."""
    from fedtext.bench.learning import CURVES

    keep = {name for section, names in CURVES.items() if section not in sections for name in names}
    return {name: curve for name, curve in last.get("learning", {}).items() if name in keep}


def last_document(out: Path) -> dict:
    try:
        return json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def write_outputs(
    results: Results,
    meta: dict,
    previous: dict,
    final: bool = True,
    update_readme: bool = False,
    last: dict | None = None,
) -> None:
    """results.json and results.md (after every section, so a stopped run keeps its figures),
    then learning.html and, if asked, the table in docs/benchmarks.md. Rows of `last` (the run
    before) that this run did not measure are carried, marked with their origin."""
    out = results.settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for row in results.rows:
        row.previous = previous.get(row.key)
        row.machine = row.machine or meta["machine"]
        row.commit = row.commit or meta["commit"]
        row.measured_utc = row.measured_utc or meta["time_utc"]
    carried, left_out = carried_rows(last or {}, meta["machine"], results.settings.sections)
    notes = list(results.notes)
    if left_out:
        notes.append(
            f"{left_out} rows of the last report are not carried: measured on another machine, "
            "or in a section this run measured again (bench/results.json in git history has "
            "them)."
        )
    same_machine = (last or {}).get("meta", {}).get("machine") == meta["machine"]
    earlier = carried_curves(last or {}, results.settings.sections) if same_machine else {}
    learning = {**earlier, **results.learning}
    document = {
        "meta": meta,
        "settings": {
            k: str(v) if isinstance(v, Path) else v for k, v in asdict(results.settings).items()
        },
        "rows": [{**asdict(r), "ok": r.ok} for r in results.rows],
        "carried": carried,
        "scaling": results.scaling,
        "learning": learning,
        "notes": notes if final else [*notes, "Partial: the run goes on."],
    }
    (out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
    parts = [summary_table(results, meta, carried, notes)]
    if results.scaling:
        parts.append(
            "Round time as clients and batches grow (evaluation off):\n\n" + scaling_table(results)
        )
    table_part = "\n".join(parts)
    if learning:
        parts.append(
            "Held-out accuracy and loss per round (chart: learning.html):\n\n"
            + learning_table(learning)
        )
    (out / "results.md").write_text("# fedtext benchmark\n\n" + "\n".join(parts))
    if not final:
        return
    if learning:
        learning_figure(learning).write_html(out / "learning.html", include_plotlyjs="cdn")
    if update_readme:
        text = TABLE_DOC.read_text()
        if TABLE_START in text and TABLE_END in text:
            head, rest = text.split(TABLE_START, 1)
            tail = rest.split(TABLE_END, 1)[1]
            TABLE_DOC.write_text(f"{head}{TABLE_START}\n{table_part}{TABLE_END}{tail}")
    print("\n" + "\n".join(parts))
    print(f"wrote {out}/results.json, results.md" + (", learning.html" if learning else ""))
