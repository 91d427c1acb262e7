"""`rrn space validate | list`: check search-space files before anything runs.

Validation is cheap and complete (see orchestration/space.py), so users run it
while editing a sweep; the same check guards `rrn sweep` and `rrn submit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from rrn.console import cli_app, fail, out

app = cli_app(None, "Search-space files (search_spaces/*.yaml): validate and list them.")


@app.command("validate")
def validate_command(
    space_file: Annotated[Path, typer.Argument(help="Search-space YAML, e.g. search_spaces/demo.yaml.")],
) -> None:
    """Validate a search space and print it resolved: grid points, searched
    distributions, fixed values, trial count, tracking and storage targets."""
    from orchestration.space import load_space
    from orchestration.space_schema import SpaceError

    try:
        resolved = load_space(space_file)
    except SpaceError as e:
        raise fail(str(e)) from None
    out.print(resolved.describe(), markup=False, highlight=True)
    out.print(f"[bold green]OK[/] {escape(str(space_file))}: {resolved.trial_count} trial(s)")


@app.command("list")
def list_command(
    directory: Annotated[Path, typer.Argument(help="Folder of search-space files.")] = Path("search_spaces"),
) -> None:
    """List the search spaces in a folder with their trial counts (or their error)."""
    from orchestration.space import load_space
    from orchestration.space_schema import SpaceError

    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not files:
        raise fail(f"{directory}: no *.yaml search-space files found")
    width = max(len(p.name) for p in files)
    table = Table(Column("file", min_width=width), Column("name", overflow="fold"),
                  "trials", "grid points", "searched", "status")
    broken = 0
    for path in files:
        try:
            r = load_space(path)
        except SpaceError as e:
            broken += 1
            first = str(e).splitlines()
            reason = first[1].strip() if len(first) > 1 else first[0]
            table.add_row(escape(path.name), "-", "-", "-", "-", "[red]" + escape(reason))
            continue
        table.add_row(escape(path.name), r.space.name, str(r.trial_count), str(len(r.grid_points())),
                      f"{len(r.space.search)} param(s)", "[green]ok")
    out.print(f"search spaces in {escape(str(directory))}:")
    out.print(table)
    if broken:
        raise typer.Exit(2)
