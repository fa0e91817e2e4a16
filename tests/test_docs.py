"""Docs that drift from the code mislead people: check the README against the code."""

from __future__ import annotations

from pipeline.cli import app
from pipeline.settings import Settings, describe_settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_commands():
    head = README.split("```")[1]
    assert "make run" in head and "make test" in head
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_setting_is_documented_with_its_default():
    for name, default, _ in describe_settings():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` ")), None)
        assert row is not None, f"setting {name} missing from README"
        shown = default.strip("'")
        assert f"`{shown}`" in row, f"README default for {name} is not {shown}"
    assert len(describe_settings()) == len(Settings.model_fields)


def test_every_command_is_documented():
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert f"qcode {name}" in README, name
