"""What every `rrn` command prints and how it refuses input: one place, one contract.

`out` (stdout: results, tables) and `err` (stderr: progress, errors) are the
consoles every command prints through; `cli_app` builds each command group alike.
A user error (bad config or space field, broken data file, unreachable store,
unsatisfiable resources) prints one message on stderr that names the file and
the field, and the command exits with code 2: no traceback, nothing written.
Messages are printed without hard wrapping, so a long path stays one greppable
string in a terminal or a job log. Text a user wrote (class names, file and folder
names, paths, ids) goes through `escape` wherever it meets markup (an f-string with
a style, a table cell or title): `[/bold]` or `vehicle [moving]` is printed as
written, never read as a style.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from rrn_core.errors import UserError

#: Exit code of every refused input.
USER_ERROR = 2

#: stdout (results, tables) and stderr (progress, errors); soft wrap keeps long paths
#: and URIs one greppable line in terminals and job logs.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
console = err   # the name rrn_core's commands use


def cli_app(name: str | None, help: str) -> typer.Typer:
    """A command group with the settings every `rrn` group shares: help on a bare
    call, -h, and no rich traceback pages (user errors are one line, see `fail`)."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, pretty_exceptions_enable=False,
                       context_settings={"help_option_names": ["-h", "--help"]})


def fail(message: str, code: int = USER_ERROR) -> typer.Exit:
    """Print `error: message` and return the Exit to raise: `raise fail(...) from None`
    (the only contract: callers raise what it returns)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def say(message: str) -> None:
    """A plain progress line on stderr (no markup, no wrapping)."""
    console.print(escape(message), highlight=False)


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Turn the errors a user can fix (every `UserError`: config, data, checkpoint,
    weights, preflight) and the `extra` types into `fail` (exit 2)."""
    try:
        yield
    except (UserError, *extra) as err:
        raise fail(str(err)) from None
