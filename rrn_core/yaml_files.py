"""Reading the YAML a user wrote (run configs, search spaces, `--set` values) within limits.

YAML aliases let a few hundred bytes stand for billions of values ("billion laughs":
each level's list repeats the level below nine times). PyYAML shares the aliased
objects, so loading is cheap, but every later deep copy, validation or dump expands
them and runs out of memory. A config or a space is a few hundred values written by
hand, so the loader counts what the file would expand to on the parsed node graph
(each node counted once per use, shared ones priced through a memo: linear in the
file's size) and refuses a file past the limits before anything is built:

- `MAX_YAML_BYTES`: the file's size (read no further than that);
- `MAX_YAML_VALUES`: scalars, lists and mappings after every alias is expanded;
- an alias inside its own anchor (a recursive value) and nesting too deep to walk.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

#: Largest config or space file read (bytes): a hand-written file is a few KB.
MAX_YAML_BYTES = 1 << 20
#: Most values (scalars, lists, mappings) a file may expand to, aliases expanded.
MAX_YAML_VALUES = 10_000


class YamlLimitError(yaml.YAMLError):
    """A YAML text past the limits above; the message says which and why."""


def load_yaml(text: str) -> Any:
    """`yaml.safe_load(text)`, refusing what expands past `MAX_YAML_VALUES` (or
    recurses) before any Python object is built."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlLimitError("nested too deeply to read") from None
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml_file(path: Path) -> Any:
    """A YAML file's content, refused (YamlLimitError) past `MAX_YAML_BYTES` or
    `MAX_YAML_VALUES`; OSError and UnicodeDecodeError pass through to the caller."""
    with open(path, "rb") as handle:
        raw = handle.read(MAX_YAML_BYTES + 1)
    if len(raw) > MAX_YAML_BYTES:
        raise YamlLimitError(f"larger than {MAX_YAML_BYTES // 1024} KiB, the limit for a config or "
                             "space file")
    return load_yaml(raw.decode("utf-8"))


def read_mapping(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The YAML mapping at `path` (an empty file is {}); every way it can fail is one
    `error` naming the file: missing, unreadable, refused by the limits above, not
    YAML, or not a mapping at the top level."""
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        tree = read_yaml_file(path)
    except YamlLimitError as err:
        raise error(f"{path}: refused: {err}") from None
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot read {what}: {err}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise error(f"{path}: top level must be a mapping, got {type(tree).__name__}")
    return tree


def _check_expansion(root: yaml.Node) -> None:
    """Count the values `root` expands to; raise past the limit or on a recursive alias."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YamlLimitError(f"line {node.start_mark.line + 1}: an alias refers to a value that "
                                 "contains it (a recursive value)")
        if isinstance(node, yaml.ScalarNode):
            total = 1
        else:
            open_nodes.add(key)
            children = (node.value if isinstance(node, yaml.SequenceNode)
                        else [part for pair in node.value for part in pair])
            total = 1
            for child in children:
                total += size(child)
                if total > MAX_YAML_VALUES:
                    break
            open_nodes.discard(key)
        if total > MAX_YAML_VALUES:
            raise YamlLimitError(f"expands to more than {MAX_YAML_VALUES:,} values once its aliases "
                                 f"(*name) are expanded, the limit for a config or space file "
                                 f"(line {node.start_mark.line + 1})")
        sizes[key] = total
        return total

    try:
        size(root)
    except RecursionError:
        raise YamlLimitError(f"nested too deeply to read (more than about {sys.getrecursionlimit()} "
                             "levels)") from None
