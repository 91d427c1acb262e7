"""The second round of bad input (issue 23, hangs, memory, tracebacks and the checks a
user expects): rows run through the table test's own check (test_bad_input.py: exit
2, one message naming the file or field, no traceback, nothing written). The cases
a row cannot hold (mounts, output that must print as written) are in
test_bad_input_round2_b_system.py.

The rows live here, beside the table, so that each round's rows stay one block; the
world (a tiny data set, a config, a space, a trained checkpoint) is the table's.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from test_bad_input import (Row, Setup, World, argv, case_config, copy_data, first_id,  # noqa: F401
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


# --------------------------------------------------------------------------- 8: decompression bombs


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A real 1-bit PNG of width x height, all black: 109 KB on disk at 30000 x 30000,
    900 million pixels (gigabytes) once decoded. Written row by row: no big buffer."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    parts = [packer.compress(row * 1000) for _ in range(height // 1000)]
    parts += [packer.compress(row * (height % 1000)), packer.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def defect_bomb_image(data: Path, split: str = "train") -> str:
    sid = first_id(data, split)
    (data / "JPEGImages" / f"{sid}.jpg").write_bytes(png_bomb())
    return f"{sid}.jpg"


def _data_check_bomb(w: World, case: Path) -> tuple[list[str], list[str]]:
    data = copy_data(w, case)
    return ["data", "check", str(data)], [defect_bomb_image(data), "too large", "RRN_MAX_IMAGE_PIXELS"]


def _train_bomb(w: World, case: Path) -> tuple[list[str], list[str]]:
    cfg = case_config(w, case)
    return ["train", str(cfg), "--no-track"], [defect_bomb_image(case / "data"), "too large"]


def _sweep_bomb(w: World, case: Path) -> tuple[list[str], list[str]]:
    cfg = case_config(w, case)
    name = defect_bomb_image(case / "data")
    tree = space_tree(w.root)
    tree["base_config"] = str(cfg)
    return ["sweep", str(write_yaml(case / "space.yaml", tree))], [name, "too large"]


def _eval_bomb(w: World, case: Path) -> tuple[list[str], list[str]]:
    data = copy_data(w, case)
    name = defect_bomb_image(data, "val")
    return ["eval", str(w.checkpoint), "--set", f"data.root={data}"], [name, "too large"]


def _predict_bomb(w: World, case: Path) -> tuple[list[str], list[str]]:
    bomb = write_file(case, "huge.png", png_bomb())
    return (["predict", str(w.checkpoint), str(w.image), str(bomb), "-o", str(case / "pred")],
            ["huge.png", "900,000,000 pixels", "too large"])


def _predict_pixel_limit(w: World, case: Path) -> tuple[list[str], list[str]]:
    return (["predict", str(w.checkpoint), str(w.image), "-o", str(case / "pred")],
            [w.image.name, "1,000 pixels", "RRN_MAX_IMAGE_PIXELS"])


# --------------------------------------------------------------------------- 9: another method's checkpoint


def _predict_config_other_method(w: World, case: Path) -> tuple[list[str], list[str]]:
    cfg = case_config(w, case, method={"name": "supervised"})
    return (["predict", str(w.checkpoint), str(w.image), "-o", str(case / "pred"), "--config", str(cfg)],
            ["cfg.yaml", "method.name", "'supervised' builds 1 branch", "holds 2 branches"])


# --------------------------------------------------------------------------- 13: checks a user expects


def _split_file(data: Path, split: str = "train") -> Path:
    return data / "ImageSets" / "Segmentation" / f"{split}.txt"


def defect_val_leak(data: Path) -> str:
    with _split_file(data, "val").open("a") as handle:
        handle.write(first_id(data, "train") + "\n")
    return "val.txt"


def defect_train_masks_ignored(data: Path) -> str:
    for sid in _split_file(data).read_text().split():
        path = data / "SegmentationClass" / f"{sid}.png"
        Image.new("L", Image.open(path).size, 255).save(path)
    return "train.txt"


def defect_repeated_class(data: Path) -> str:
    (data / "classes.txt").write_text("background\nroad\ncar\nroad\n")
    return "classes.txt"


def defect_split_utf16(data: Path) -> str:
    path = _split_file(data)
    path.write_text(path.read_text(), encoding="utf-16")
    return "train.txt"


def defect_split_bom(data: Path) -> str:
    path = _split_file(data)
    path.write_text("\ufeff" + path.read_text(), encoding="utf-8")
    return "train.txt"


def defect_class_zero_width(data: Path) -> str:
    (data / "classes.txt").write_text("background\nro\u200bad\ncar\nsky\n")
    return "classes.txt"


def data_check_on(defect: Callable[[Path], str], *names: str) -> Setup:
    def setup(w: World, case: Path) -> tuple[list[str], list[str]]:
        data = copy_data(w, case)
        return ["data", "check", str(data)], [defect(data), *names]
    return setup


def train_on_defect(defect: Callable[[Path], str], *names: str) -> Setup:
    def setup(w: World, case: Path) -> tuple[list[str], list[str]]:
        cfg = case_config(w, case)
        return ["train", str(cfg), "--no-track"], [defect(case / "data"), *names]
    return setup


ROWS: list[Row] = [
    # ---- 7: what a file expands to, refused before it is expanded
    Row("space-alias-bomb", _space_alias_bomb),
    Row("train-config-alias-bomb", _config_alias_bomb),
    Row("train-set-alias-bomb", _set_alias_bomb),
    Row("space-recursive-alias", _recursive_alias),
    Row("sweep-grid-million-points", _grid_of_a_million),
    Row("space-trials-past-limit", _samples_past_the_limit),
    # ---- 8: a 109 KB PNG of 30000 x 30000 pixels, wherever an image is read
    Row("data-check-decompression-bomb", _data_check_bomb),
    Row("train-decompression-bomb", _train_bomb),
    Row("sweep-decompression-bomb", _sweep_bomb),
    Row("eval-decompression-bomb", _eval_bomb),
    Row("predict-decompression-bomb", _predict_bomb),
    Row("predict-pixel-limit-set", _predict_pixel_limit, env={"RRN_MAX_IMAGE_PIXELS": "1000"}),
    Row("predict-pixel-limit-not-a-number", argv("predict", "{ckpt}", "{img}", "-o", "{case}/pred",
                                                 names=["RRN_MAX_IMAGE_PIXELS", "'lots'"]),
        env={"RRN_MAX_IMAGE_PIXELS": "lots"}),
    # ---- 9: the world's checkpoint is a cps run (2 branches, no critic)
    Row("eval-ckpt-as-supervised", argv("eval", "{ckpt}", "--set", "method.name=supervised",
                                        names=["method.name", "'supervised' builds 1 branch",
                                               "holds 2 branches", "'cps'"])),
    Row("eval-ckpt-as-rrn", argv("eval", "{ckpt}", "--set", "method.name=rrn",
                                 names=["method.name", "2 critics", "0 critics", "'cps'"])),
    Row("predict-config-of-other-method", _predict_config_other_method),
    # ---- 13: data that reads but cannot train or measure, and text files that are not what they claim
    Row("data-check-val-leak", data_check_on(defect_val_leak, "train.txt", "leak")),
    Row("train-val-leak", train_on_defect(defect_val_leak, "leak")),
    Row("data-check-train-masks-all-ignore", data_check_on(defect_train_masks_ignored, "all 255",
                                                           "nothing to learn")),
    Row("train-masks-all-ignore", train_on_defect(defect_train_masks_ignored, "nothing to learn")),
    Row("data-check-repeated-class-name", data_check_on(defect_repeated_class, "'road'", "more than once")),
    Row("train-repeated-class-name", train_on_defect(defect_repeated_class, "'road'")),
    Row("data-check-split-utf16", data_check_on(defect_split_utf16, "not UTF-8")),
    Row("data-check-split-bom", data_check_on(defect_split_bom, ":1:", "U+FEFF", "byte-order mark")),
    Row("data-check-class-zero-width", data_check_on(defect_class_zero_width, ":2:", "U+200B",
                                                     "ZERO WIDTH SPACE")),
    Row("train-class-zero-width", train_on_defect(defect_class_zero_width, "U+200B")),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused_round2_b(row: Row, world: World, request: pytest.FixtureRequest,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    refused_like_the_table(row, world, request, monkeypatch)


def test_a_checkpoint_fits_every_method_of_its_shape() -> None:
    """The rule item 9 settled on: a checkpoint evaluates under any method with as many
    branches and critics as it holds (fixmatch and supervised: one segmenter), no other."""
    from rrn_core.config import build_config
    from rrn_core.run_checks import checkpoint_method_problem

    def cfg(method: str) -> Any:
        return build_config({"data": {"root": ".", "num_classes": 2}, "method": {"name": method}})

    one = {"config": {"method": {"name": "fixmatch"}}, "model": {"branches": [{}], "discriminators": []}}
    assert checkpoint_method_problem(one, cfg("supervised")) is None
    assert checkpoint_method_problem(one, cfg("fixmatch")) is None
    assert "'fixmatch'" in (checkpoint_method_problem(one, cfg("cps")) or "")
    two = {"config": {"method": {"name": "rrn"}}, "model": {"branches": [{}, {}], "discriminators": [{}, {}]}}
    assert checkpoint_method_problem(two, cfg("rrn")) is None
    assert "holds 2 branches and 2 critics" in (checkpoint_method_problem(two, cfg("cps")) or "")
