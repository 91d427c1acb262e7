"""Every wire-format name is spelled once, in orchestration/names.py.

A tag, result key or metric name written as a literal elsewhere could drift from
the one its consumer reads; this test reads every string literal of orchestration/
and rrn_core/ and refuses the ones shaped like our names outside names.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from orchestration import names

REPO = Path(__file__).resolve().parents[2]
#: MLflow/rrn tags (rrn.x, mlflow.x), Tune result keys (rrn/x), metric names (val/x).
SHAPED = re.compile(r"^(rrn\.[a-z_]+\.?|mlflow\.[a-zA-Z]+(\.[a-zA-Z]+)*\.?|rrn/[a-z_]+|val/[A-Za-z_]+/?)$")
#: Literals of that shape that are no wire-format name, each with its reason.
NOT_NAMES = {
    "rrn.cli": "a module the cluster probe looks for",
    "mlflow.store.db.utils": "a logger silenced while sweeping",
    "mlflow.db": "the sqlite file name of the local store",
    "mlflow.log": "the log file of the test cluster's MLflow server",
    "rrn/space": "a Kubernetes label key",
}


def shaped_literals(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SHAPED.match(node.value):
            if node.value not in NOT_NAMES:
                found.append((node.lineno, node.value))
    return found


def test_no_wire_name_is_spelled_outside_names_py() -> None:
    offenders = {}
    for folder in ("orchestration", "rrn_core"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "orchestration" / "names.py":
                continue
            if found := shaped_literals(path):
                offenders[str(path.relative_to(REPO))] = found
    assert offenders == {}, f"use orchestration/names.py for these: {offenders}"


def test_the_checker_sees_a_spelled_out_tag(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text('TAG = "rrn.method"\nKEY = "rrn/step"\nM = "val/mIoU"\nOK = "rrn core"\n')
    assert [v for _, v in shaped_literals(path)] == ["rrn.method", "rrn/step", "val/mIoU"]


def test_names_are_distinct() -> None:
    values = {k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    by_value: dict[str, list[str]] = {}
    for key, value in values.items():
        by_value.setdefault(value, []).append(key)
    # METRIC_MIOU names the default objective; every other value has one name
    assert {v: ks for v, ks in by_value.items() if len(ks) > 1} == {}
