"""Documentation keeps up with the code: every command and every error class is described."""

from __future__ import annotations

from pathlib import Path

import typer

from gyre import errors

DOCS = Path(__file__).parent.parent / "docs"


def _commands(app: typer.Typer, prefix: str = "gyre") -> list[str]:
    found = []
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        found.append(f"{prefix} {name}")
    for group in app.registered_groups:
        assert group.typer_instance is not None
        found += _commands(group.typer_instance, f"{prefix} {group.name}")
    return found


def test_every_cli_command_is_in_docs_cli() -> None:
    from gyre.cli._app import app

    text = (DOCS / "cli.md").read_text()
    commands = _commands(app)
    assert "gyre runs list" in commands and "gyre models validate" in commands
    missing = [c for c in commands if f"`{c}" not in text]
    assert not missing, f"undocumented commands: {missing}"


def test_every_error_code_is_in_docs_errors() -> None:
    text = (DOCS / "errors.md").read_text()
    stack: list[type[errors.GyreError]] = list(errors.GyreError.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        assert f"`{cls.code}`" in text, f"{cls.__name__} ({cls.code}) missing from docs/errors.md"
