"""The names `method.name` accepts, in the methods table's order, without importing torch.

`rrn --help` and the report's colours need the list of methods, not the methods:
importing rrn_core/methods/table.py (or anything in rrn_core/methods/) pulls torch,
seconds on a cold start. This list is the table's keys, written once more; table.py
refuses to import when the two differ, so it cannot go stale silently. A new
method goes at the end (its position picks its colour in plots and the MLflow UI).
"""

from __future__ import annotations

#: Every method, in the order of `rrn_core.methods.table.METHODS` (checked there).
#: A list so a test can register a throwaway method in place and remove it again.
METHOD_NAMES: list[str] = ["supervised", "cps", "fixmatch", "rrn", "rrn_release"]


def methods_text() -> str:
    """The methods as a sentence reads them: `supervised, cps, fixmatch or rrn`."""
    *first, last = METHOD_NAMES
    return f"{', '.join(first)} or {last}" if first else last
