"""The method lists tests parametrise over, read from the methods table (never written out).

A method added to rrn_core/methods/table.py joins every test parametrised with these
(tests/methods/test_method_table.py checks that a throwaway method does).
"""

from __future__ import annotations

from rrn_core.methods.table import METHODS


def all_methods() -> list[str]:
    """Every method, in the table's order."""
    return list(METHODS)


def semi_supervised_methods() -> list[str]:
    """The methods that train on unlabeled images (`Method.uses_unlabeled`)."""
    return [name for name, method in METHODS.items() if method.uses_unlabeled]
