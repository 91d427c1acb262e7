"""The second round of bad input (issue 23, hangs, memory, tracebacks and the checks a
user expects): rows run through the table test's own check (test_bad_input.py: exit
2, one message naming the file or field, no traceback, nothing written).

The rows live here, beside the table, so that each round's rows stay one block; the
world (a tiny data set, a config, a space, a trained checkpoint) is the table's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from test_bad_input import (GOOD_CONFIG, Row, Setup, World, case_config, copy_data, first_id,  # noqa: F401
                            space_tree, world, write_file, write_yaml)
from test_bad_input import test_bad_input_is_refused as refused_like_the_table

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- 7: YAML that expands


def alias_bomb(depth: int = 9) -> str:
    """'Billion laughs': each level lists the level below nine times (9**depth values),
    a few hundred bytes on disk."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, depth):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _space_alias_bomb(w: World, case: Path) -> tuple[list[str], list[str]]:
    text = yaml.safe_dump(space_tree(w.root), sort_keys=False)
    bomb = alias_bomb()
    path = write_file(case, "space.yaml", text.replace("grid:", bomb + "grid:", 1)
                      .replace("num_samples: 1", "num_samples: 1\nfixed:\n  method.w_cps: *l8"))
    assert len(path.read_bytes()) < 1500
    return ["space", "validate", str(path)], ["space.yaml", "aliases", "10,000"]


def _config_alias_bomb(w: World, case: Path) -> tuple[list[str], list[str]]:
    case_config(w, case)
    text = (case / "cfg.yaml").read_text()
    path = write_file(case, "cfg.yaml", alias_bomb() + text.replace("name: tiny", "name: *l8"))
    return ["train", str(path), "--no-track"], ["cfg.yaml", "aliases"]


def _set_alias_bomb(w: World, case: Path) -> tuple[list[str], list[str]]:
    bomb = "[" + ", ".join(f"&a{i} [" + ", ".join([f"*a{i - 1}" if i else "1"] * 9) + "]"
                           for i in range(6)) + "]"
    return (["train", str(w.config), "--no-track", "--set", f"optim.lr={bomb}"],
            ["--set optim.lr", "aliases"])


def _recursive_alias(w: World, case: Path) -> tuple[list[str], list[str]]:
    text = yaml.safe_dump(space_tree(w.root), sort_keys=False)
    path = write_file(case, "space.yaml", text + "fixed: &me {data.class_names: [*me]}\n")
    return ["space", "validate", str(path)], ["space.yaml", "recursive"]


def _grid_of_a_million(w: World, case: Path) -> tuple[list[str], list[str]]:
    tree = space_tree(w.root)
    tree["grid"] = {"runtime.seed": list(range(1000)), "data.split_seed": list(range(1000))}
    path = write_yaml(case / "space.yaml", tree)
    return ["sweep", str(path)], ["space.yaml", "grid", "1,000,000 grid points", "at most 1,000"]


def _samples_past_the_limit(w: World, case: Path) -> tuple[list[str], list[str]]:
    tree = space_tree(w.root)
    tree["grid"] = {"runtime.seed": list(range(100))}
    tree["num_samples"] = 101
    path = write_yaml(case / "space.yaml", tree)
    return ["space", "validate", str(path)], ["space.yaml", "num_samples", "10,100 trials"]


ROWS: list[Row] = [
    # ---- 7: what a file expands to, refused before it is expanded
    Row("space-alias-bomb", _space_alias_bomb),
    Row("train-config-alias-bomb", _config_alias_bomb),
    Row("train-set-alias-bomb", _set_alias_bomb),
    Row("space-recursive-alias", _recursive_alias),
    Row("sweep-grid-million-points", _grid_of_a_million),
    Row("space-trials-past-limit", _samples_past_the_limit),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused_round2_b(row: Row, world: World, request: pytest.FixtureRequest,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    refused_like_the_table(row, world, request, monkeypatch)
