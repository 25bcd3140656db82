"""The ``gyre`` command. :func:`main` is the one place a GyreError becomes a red line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from gyre.errors import GyreError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and, from the console script, exit with) its exit code."""
    from gyre.cli._app import app

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        result = app(args=argv, prog_name="gyre", standalone_mode=False)
    except GyreError as exc:
        line = f"[bold red]error:[/] {_escape(exc.message)}"
        if exc.hint:
            line += f" [dim]({_escape(exc.hint)})[/]"
        err.print(line)
        return _exit(exc.exit_code, argv)
    except typer.Exit as exc:
        return _exit(exc.exit_code, argv)
    except typer.Abort:
        err.print("[red]aborted[/]")
        return _exit(1, argv)
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, ...
        err.print(_usage_line(exc, sys.argv[1:] if argv is None else argv))
        return _exit(int(getattr(exc, "exit_code", 2)), argv)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        return _exit(130, argv)
    code = result if isinstance(result, int) else 0
    return _exit(code, argv)


def _usage_line(exc: Exception, argv: list[str]) -> str:
    """A usage error (unknown option, a value out of range, a missing argument) as one red
    line: the parser's message, the value given when it does not say it, and where the
    command's --help is."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    message = " ".join(message.split())  # (the parser wraps some messages over lines)
    given = _given(getattr(getattr(exc, "param", None), "opts", None) or [], argv)
    if given is not None and repr(given) not in message and given not in message:
        message += f" (got {given!r})"
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "gyre"
    return f"[bold red]error:[/] {_escape(message)} [dim](see {_escape(command)} --help)[/]"


def _given(opts: list[str], argv: list[str]) -> str | None:
    """The value ``argv`` gives the option spelled ``opts`` (its last one), if any."""
    found = None
    for i, token in enumerate(argv):
        name, eq, value = token.partition("=")
        if name in opts:
            found = value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    return found


def _exit(code: int, argv: list[str] | None) -> int:
    if argv is None:  # called as the console script
        sys.exit(code)
    return code


def _escape(text: str) -> str:
    """``text`` for the one error line: markup escaped, and the line breaks some messages
    carry from their source (a database driver's "Is the server running...?") made spaces."""
    from rich.markup import escape

    return escape(" ".join(text.split()))
