"""The command line, end to end in a real process, and its one-line error messages."""

import os
import signal
import subprocess
import sys
import time

import pytest

from fedtext.cli import main
from tests.conftest import ROOT


def run_cli(*args, timeout=300, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    # capture_output reads the pipes to EOF: a worker left holding them would hang this call
    return subprocess.run(
        [sys.executable, "-m", "fedtext", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_finetune_end_to_end_saves_weights_and_metrics(tiny_model_dir, tmp_path, database):
    result = run_cli(
        "finetune",
        "--base",
        str(tiny_model_dir),
        "--rounds",
        "1",
        "--batches",
        "1",
        "--clients",
        "KING_LEAR_FOOL",
        "KING_LEAR_KENT",
        "--client-figures",
        "--output",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "round  1: train loss" in result.stdout
    assert "Unable to register" not in result.stderr  # TensorFlow's C++ start-up lines
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith("1,")
    assert (tmp_path / "weights.npz").exists()
    figures = (tmp_path / "clients.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in figures[1:]] == [
        ["1", "KING_LEAR_FOOL"],
        ["1", "KING_LEAR_KENT"],
    ]
    gen = run_cli("generate", "--model", str(tmp_path), "--prompt", "FOOL: ", "--length", "30")
    assert gen.returncode == 0 and gen.stdout.startswith("FOOL: ")

    # A model of the Fool's own, from the fine-tuned one, which generate reads.
    mine = tmp_path / "fool"
    result = run_cli(
        "personalise", "--model", str(tmp_path), "--client", "KING_LEAR_FOOL", "--steps", "10",
        "--output", str(mine),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "KING_LEAR_FOOL after 10 steps, on its held-out speeches" in result.stdout
    gen = run_cli("generate", "--model", str(mine), "--prompt", "FOOL: ", "--length", "30")
    assert gen.returncode == 0 and gen.stdout.startswith("FOOL: ")
    result = run_cli("personalise", "--client", "NOBODY", "--output", str(tmp_path / "x"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_whole_federation_and_baseline_from_the_command_line(tiny_model_dir, tmp_path, database):
    """--clients all trains every client (a sample a round) and evaluates on everyone's
    held-out speeches; --baseline then trains centrally for the same CPU time."""
    result = run_cli(
        "finetune",
        "--base",
        str(tiny_model_dir),
        "--clients",
        "all",
        "--clients-per-round",
        "3",
        "--rounds",
        "2",
        "--batches",
        "1",
        "--eval-every",
        "2",
        "--baseline",
        "--output",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "1,154 clients, 3 per round" in out
    assert "round  1: train loss" in out and "held-out not evaluated" in out
    assert "round  2: train loss" in out and "held-out loss" in out.split("round  2:")[1]
    assert "Centralised baseline" in out and "(ratio" in out
    baseline = (tmp_path / "baseline.csv").read_text().splitlines()
    assert len(baseline) >= 3  # header, the base model, one point or more


def test_the_federation_preset_trains_every_client_within_a_cpu_budget(
    tiny_model_dir, tmp_path, database
):
    """--preset federation: every character, 2 drawn by text a round, until --cpu-minutes;
    the last round is evaluated, and the rounds' CPU time stays within one round of it.
    The first round (reading every client's text, compiling the round) took over 4 CPU s on
    the slower of this project's machines, where a budget of 12 s left room for 2 rounds."""
    budget_s = 24.0
    result = run_cli(
        "finetune", "--base", str(tiny_model_dir), "--preset", "federation",
        "--cpu-minutes", str(budget_s / 60), "--eval-every", "100000", "--output", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Federated Averaging: {budget_s / 60:g} CPU minutes, 1,154 clients, 2 per round" in (
        result.stdout
    )
    assert "falling linearly to 0" in result.stdout  # the preset's server schedule
    rows = [line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines()]
    header, rounds = rows[0], rows[2:]
    cpu = [float(row[header.index("cpu_seconds")]) for row in rounds]
    assert len(rounds) >= 3 and budget_s / 2 <= sum(cpu) <= budget_s + max(cpu)
    assert rounds[-1][header.index("eval_accuracy")] not in ("", "nan")
    assert all(row[header.index("eval_accuracy")] in ("", "nan") for row in rounds[:-1])


def test_the_pages_model_zip_loads_with_generate(tiny_model_dir, tmp_path):
    """The page's download button hands out sharing.model_archive; generate --model reads it."""
    import shutil
    import zipfile

    from fedtext.service.links import model_archive

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run_dir)
    (tmp_path / "model.zip").write_bytes(model_archive(run_dir))
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        archive.extractall(tmp_path / "unzipped")
    gen = run_cli(
        "generate",
        "--model",
        str(tmp_path / "unzipped" / "fedtext-model"),
        "--prompt",
        "KENT: ",
        "--length",
        "20",
    )
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.startswith("KENT: ") and len(gen.stdout.strip()) >= 20


def test_tutorial_flow_runs_offline(tiny_model_dir, database):
    result = run_cli(
        "tutorial",
        "--base",
        str(tiny_model_dir),
        "--rounds",
        "1",
        "--batches",
        "1",
        "--length",
        "40",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Generated by the base model" in out
    assert "Evaluating on an example Shakespeare character (KING_LEAR_KING_LEAR):" in out
    assert "Evaluating on completely random data:" in out
    assert "round  0 (base model)" in out and "round  1: train loss" in out
    assert "Generated by the fine-tuned model" in out


def test_sigterm_stops_the_worker_too(tiny_model_dir, tmp_path, database):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fedtext",
            "finetune",
            "--base",
            str(tiny_model_dir),
            "--rounds",
            "500",
            "--batches",
            "1",
            "--clients",
            "KING_LEAR_FOOL",
            "--output",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in process.stdout:
            if line.startswith("round  1"):
                break
        workers = subprocess.run(
            ["pgrep", "-P", str(process.pid), "-f", "worker_binary"], capture_output=True, text=True
        ).stdout.split()
        assert len(workers) == 1
        process.send_signal(signal.SIGTERM)
        process.stdout.read()  # EOF only once no process holds the pipe
        assert process.wait(timeout=30) == -signal.SIGTERM
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{workers[0]}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{workers[0]}")
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["finetune", "--clients", "KING_LEAR_LEARR", "--output", "x"],
            "unknown client id 'KING_LEAR_LEARR'; did you mean KING_LEAR_",
        ),
        (["finetune", "--rounds", "0", "--output", "x"], "rounds must be"),
        (["finetune", "--client-lr", "nan", "--output", "x"], "client learning rate must be"),
        (["finetune", "--server-lr", "-2", "--output", "x"], "server learning rate must be"),
        (["finetune", "--rounds", "two", "--output", "x"], "invalid int value"),
        (["finetune", "--clip-norm", "-1", "--output", "x"], "clip norm must be"),
        (["finetune", "--batch-size", "0", "--output", "x"], "batch size must be"),
        (["finetune", "--cpu-minutes", "0", "--output", "x"], "must be a positive number"),
        (["finetune", "--sampling", "biggest", "--output", "x"], "invalid choice: 'biggest'"),
        (["finetune", "--server-schedule", "cosine", "--output", "x"], "invalid choice: 'cosine'"),
        (["finetune", "--preset", "krum", "--output", "x"], "invalid choice: 'krum'"),
        (["finetune", "--output", "README.md/run"], "cannot write the output directory"),
        # Root may write anywhere by permission bits, yet not create a directory in /proc.
        (["finetune", "--output", "/proc/no-such-place/out"], "cannot write the output directory"),
        (["generate", "--prompt", "caf\u00e9 \u2603"], "does not know: '\u2603'"),
        (["data", "--limit", "-1"], "must be 0 or more, got -1"),
        (["pretrain", "missing.txt", "--output", "x"], "corpus file not found"),
    ],
)
def test_bad_input_gets_one_line(args, message, capsys, tiny_model_dir, database):
    if args[0] == "finetune":
        args = [*args, "--base", str(tiny_model_dir)]
    assert_refused_in_one_line(args, message, capsys)


def assert_refused_in_one_line(argv: list[str], message: str, capsys) -> None:
    """The command exits with status 2 and one line on stderr that says `message`."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_startup_noise_is_held_back_and_real_errors_pass(capfd):
    from fedtext.distribution.runtime import _startup_lines_held_back

    with _startup_lines_held_back():
        os.write(2, b"2026-12-02 E cuda_dnn.cc:9342] Unable to register cuDNN factory: ...\n")
        os.write(2, b"E tensorflow/core: a real error\n")
    err = capfd.readouterr().err
    assert "a real error" in err and "cuDNN" not in err


def test_binary_and_empty_corpus_files_are_refused(tmp_path, capsys):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\x00\x00" * 50)
    assert main(["pretrain", str(tmp_path / "empty.txt"), "--output", str(tmp_path / "o")]) == 2
    assert main(["pretrain", str(tmp_path / "image.txt"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "empty" in err[0] and "binary" in err[1]


def test_data_lists_and_searches_clients(capsys, database):
    assert main(["data", "king", "lear", "fool"]) == 0
    out = capsys.readouterr().out
    assert "KING_LEAR_FOOL" in out and "715" in out
    assert main(["data", "no such character anywhere"]) == 1


def test_dp_finetune_prints_epsilon_each_round_and_at_the_end(tiny_model_dir, tmp_path, database):
    from fedtext.config import FederatedConfig
    from fedtext.learning.privacy import epsilon_after

    clients = ("KING_LEAR_FOOL", "KING_LEAR_KENT", "KING_LEAR_EDGAR")
    result = run_cli(
        "finetune",
        "--base",
        str(tiny_model_dir),
        "--clients",
        *clients,
        "--clients-per-round",
        "2",
        "--noise-multiplier",
        "1.0",
        "--rounds",
        "2",
        "--batches",
        "1",
        "--output",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    config = FederatedConfig(
        client_ids=clients,
        clients_per_round=2,
        noise_multiplier=1.0,
        weighting="uniform",
        rounds=2,
    )
    assert "uniform weighting (implied by the noise" in out
    assert "User-level differential privacy over the 3 chosen characters" in out
    assert "Poisson" in out  # 2 of 3 drawn each round: the accountant's approximation
    for round_num in (1, 2):
        line = next(x for x in out.splitlines() if x.startswith(f"round  {round_num}:"))
        assert line.endswith(f"| ε = {epsilon_after(config, round_num).epsilon:.2f}")
    assert f"privacy spent: {epsilon_after(config, 2)}" in out
    assert (tmp_path / "weights.npz").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--noise-multiplier", "-1"], "noise multiplier must be 0 (no differential privacy)"),
        (["--noise-multiplier", "lots"], "not a number: 'lots'"),
        (
            ["--noise-multiplier", "1", "--clients-per-round", "5"],
            "clients per round (5) exceeds the 2 chosen clients",
        ),
        (
            ["--noise-multiplier", "1", "--weighting", "weighted"],
            "differential privacy weights every client equally",
        ),
        (["--dp-clip", "0"], "DP clip must be a positive"),
        (["--dp-clipping", "adaptive", "--dp-clip", "1"], "--dp-clip sets a fixed clip"),
        (["--weighting", "by-size"], "invalid choice: 'by-size'"),
    ],
)
def test_bad_privacy_input_gets_one_line(args, message, capsys, tiny_model_dir, database):
    argv = ["finetune", *args, "--output", "x", "--base", str(tiny_model_dir)]
    assert_refused_in_one_line(argv, message, capsys)


def test_every_setting_is_one_option_read_into_its_config_field():
    """fedtext.options lists each setting once: the command line takes each option into the
    FederatedConfig field of its name, and the link's names are all different."""
    from dataclasses import fields

    from fedtext.cli.args import build_parser, federated_config
    from fedtext.config import FederatedConfig
    from fedtext.options import DEFAULTS, OPTIONS

    assert {o.field for o in OPTIONS} <= {f.name for f in fields(FederatedConfig)}
    links = [o.link for o in OPTIONS if o.link]
    assert len(set(links)) == len(links) and len({o.flag for o in OPTIONS}) == len(OPTIONS)
    for option in OPTIONS:
        default = DEFAULTS[option.field]
        if option.field == "client_ids":
            given, expected = ["KING_LEAR_FOOL"], ("KING_LEAR_FOOL",)
        elif isinstance(default, bool):
            given, expected = [], True
        elif option.choices:
            expected = next(c for c in option.choices if c != default)
            given = [expected]
        elif isinstance(default, str):
            given, expected = ["some text"], "some text"
        else:
            expected = 3 if isinstance(default, int) else 0.25
            given = [str(expected)]
        args = build_parser().parse_args(["finetune", "--output", "x", option.flag, *given])
        value = args.clients if option.field == "client_ids" else getattr(args, option.field)
        assert value == (list(expected) if option.field == "client_ids" else expected), option
    args = build_parser().parse_args(["finetune", "--output", "x", "--client-lr", "0.25"])
    assert federated_config(args).client_learning_rate == 0.25
