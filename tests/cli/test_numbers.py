"""Every numeric flag is checked in one place (t3 MEDIUM #6, LOW #16/#18/#19): one line, exit 1,
before any work; the table covers every numeric flag the parser defines."""

from __future__ import annotations

import argparse

import pytest

from edge_committee.cli._numbers import RULES, check_numbers, rule_for
from edge_committee.cli.main import COMMANDS, main, make_parser

BAD = [
    ("adapt", ["--epochs", "0"], "--epochs 0: must be an integer >= 1"),
    ("adapt", ["--batch-size", "0"], "--batch-size 0: must be an integer >= 1"),
    ("adapt", ["--lr", "-1"], "--lr -1: must be a finite number > 0"),
    ("adapt", ["--lr", "nan"], "--lr nan: must be a finite number > 0"),
    ("adapt", ["--dropout", "1.5"], "--dropout 1.5: must be a finite number >= 0 and < 1"),
    ("adapt", ["--dropout", "1"], "--dropout 1: must be a finite number >= 0 and < 1"),
    ("adapt", ["--labeled-ratio", "nan"], "--labeled-ratio nan: must be a finite number >= 0"),
    ("adapt", ["--per-class", "0"], "--per-class 0: must be an integer >= 1"),
    ("adapt", ["--tolerance", "2"], "--tolerance 2: must be a finite number >= -1 and <= 1"),
    ("export-triton", ["--queue-delay-us", "-5"], "--queue-delay-us -5: must be an integer >= 0"),
    ("export-triton", ["--threads", "0"], "--threads 0: must be an integer >= 1"),
    ("profile", ["--tolerance", "nan"], "--tolerance nan: must be a finite number > 0 and <= 1"),
    ("profile", ["--warmup", "nan"], "--warmup nan: must be a finite number >= 0"),
    ("bench", ["--limit", "0"], "--limit 0: must be an integer >= 1"),
    ("run", ["--window-ms", "inf"], "--window-ms inf: must be a finite number >= 0"),
    ("export-triton", ["--tensorrt-version", "abc"], "--tensorrt-version 'abc': expected a version such as 10.3"),
    ("serve", ["--http-port", "70000"], "--http-port 70000: must be an integer >= 0 and <= 65535"),
]
REQUIRED = {"adapt": ["--unlabeled", "u.npy", "--member", "m"], "export-triton": ["--out", "r"],
            "run": ["--source", "test://counter"]}


@pytest.mark.parametrize("command,flags,message", BAD, ids=[f"{c}{' '.join(f)}" for c, f, _ in BAD])
def test_a_bad_number_is_one_line_before_any_work(tmp_path, capsys, command, flags, message):
    missing = tmp_path / "no-bundle"  # the check comes first: the missing bundle is never opened
    assert main([command, str(missing), *REQUIRED.get(command, []), *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err


def test_every_numeric_flag_has_a_rule():
    parser = make_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for command in COMMANDS:
        for action in sub.choices[command]._actions:
            if action.type in (int, float) and rule_for(command, action.dest) is None:
                missing.append(f"{command} {action.option_strings[0]}")
    assert missing == [], f"numeric flags without a range in cli/_numbers.py RULES: {missing}"


def test_the_bounds_themselves_pass():
    for (command, dest), rule in RULES.items():
        if command == "*":
            continue
        if rule.lo is not None and not rule.lo_open:
            value = rule.lo
        elif rule.lo is not None and rule.hi is not None:  # an open interval: its middle
            value = (rule.lo + rule.hi) / 2
        else:
            value = 1
        check_numbers(command, argparse.Namespace(**{dest: value}))


def test_a_port_in_use_is_one_line_naming_the_flag(tmp_path, capsys):
    """t3 LOW #18 (S14): a clash printed a raw gRPC core blob after 5 s."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(tmp_path / "no-bundle"), "--http-port", "0", "--grpc-port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--grpc-port {port}: port {port} on 127.0.0.1 is already in use" in err[0], err


@pytest.mark.parametrize("argv", [["select", "b", "--budget-ms", "abc"], ["adapt", "b", "--unlabeled", "u",
                                                                          "--member", "m", "--epochs", "1.5"]])
def test_a_value_of_the_wrong_type_exits_1_in_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --") and "invalid" in err[0], err


@pytest.mark.parametrize("argv, message", [
    (["profile", "b", "--source-size", "-28x28"], "'-28x28' is not a size WxH"),
    (["select", "b", "--budget-ms", "-5e-3"], "--budget-ms -0.005: must be a finite number >= 0"),
])
def test_a_negative_looking_value_is_a_value_not_a_flag(capsys, argv, message):
    """t3 E2: '--source-size -28x28' was argparse's 'expected one argument' (usage text, exit 2)."""
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
