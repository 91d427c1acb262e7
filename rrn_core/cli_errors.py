"""The one contract for user errors in every `rrn` command.

A user error (bad config or space field, broken data file, unreachable store,
unsatisfiable resources) prints one message on stderr that names the file and
the field, and the command exits with code 2: no traceback, nothing written.
Messages are printed without hard wrapping, so a long path stays one greppable
string in a terminal or a job log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

#: Exit code of every refused input.
USER_ERROR = 2

console = Console(stderr=True, soft_wrap=True)


class UserError(ValueError):
    """An input the user can fix; the message names the file and field."""


def fail(message: str, code: int = USER_ERROR) -> typer.Exit:
    """Print `error: message` and return the Exit to raise (`raise fail(...)`)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def say(message: str) -> None:
    """A plain progress line on stderr (no markup, no wrapping)."""
    console.print(escape(message), highlight=False)


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Turn the errors a user can fix into `fail` (exit 2): ConfigError, DataError,
    UserError, CheckpointError, WeightsError, plus `extra` types."""
    from rrn_core.checkpoint import CheckpointError
    from rrn_core.data.errors import DataError
    from rrn_core.models.weights import WeightsError
    from rrn_core.sections import ConfigError

    try:
        yield
    except (ConfigError, DataError, UserError, CheckpointError, WeightsError, *extra) as err:
        raise fail(str(err)) from None
