"""Every ``himari`` command and flag explains itself: a description, help text, the default."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from experiments.cli import build_parser, main


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("himari",)) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


PARSERS = list(walk(build_parser()))
COMMANDS = [path for path, _ in PARSERS]


def expanded_help(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": parser.prog}
    return text


def mentions(help_text: str, default: object) -> bool:
    """The help states ``default`` (as written, or the same number written another way)."""
    if str(default) in help_text:
        return True
    if isinstance(default, int | float) and not isinstance(default, bool):
        numbers = re.findall(r"[-+]?\d[\d,]*\.?\d*(?:e[-+]?\d+)?", help_text)
        return any(float(n.replace(",", "")) == float(default) for n in numbers)
    return False


def test_the_walk_reaches_every_command() -> None:
    names = {" ".join(path) for path in COMMANDS}
    for expected in ("himari train", "himari evaluate", "himari data validate", "himari data synth",
                     "himari data download", "himari bench env", "himari bench train", "himari bench pipeline",
                     "himari fit-regimes", "himari calibrate ekf", "himari calibrate risk",
                     "himari calibrate sortino"):
        assert expected in names


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_each_command_has_a_plain_text_description(path: tuple[str, ...]) -> None:
    parser = dict(PARSERS)[path]
    assert parser.description, f"{' '.join(path)} has no description"
    # Descriptions are read in a terminal: no reStructuredText markup.
    assert "``" not in parser.description and ":func:" not in parser.description and ":class:" not in parser.description


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_each_flag_has_help_stating_its_default(path: tuple[str, ...]) -> None:
    parser = dict(PARSERS)[path]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{' '.join(path)} {name} has no help text"
        text = expanded_help(action, parser)
        if action.option_strings and action.default is not None and action.default is not False:
            assert "default" in text and mentions(text, action.default), (
                f"{' '.join(path)} {name}: default {action.default!r} not stated in {text!r}")


def test_timesteps_and_split_state_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train_help = " ".join(capsys.readouterr().out.split())
    assert "--timesteps N total environment steps" in train_help
    assert "default: the config's train.total_timesteps; cpu-small: 100000" in train_help
    assert "-v, --verbose" in train_help
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    evaluate_help = " ".join(capsys.readouterr().out.split())
    assert "(default: test)" in evaluate_help


def test_fit_regimes_help_shows_no_restructured_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit-regimes", "--help"])
    out = capsys.readouterr().out
    assert "``" not in out and ":mod:" not in out
