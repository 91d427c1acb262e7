"""Where a relative path in a config points: one rule, used by every reader of configs.

A path written in a config file (`data.root`, `model.pretrained`) is relative to
the folder of the file that holds it, so a config and its data can move together
and the same command works from any working directory. A path given on the
command line (`--set data.root=...`) is relative to the current directory, as
every shell user expects. Both become absolute at load time: Ray trials run in
other working directories, and the layout readers join split-file paths onto the
root, so a relative root would point somewhere else (or twice into itself).
`runtime.output_dir` is an output location, not an input, and keeps meaning
"relative to where the command runs".

`model.pretrained` also takes names (`none`, `imagenet`, a timm weight tag such as
`ra2_in1k`): a bare word without a path separator or a weights-file suffix is a
name and stays as written; a file in the current folder is written `./file.pth`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Config fields holding input paths that resolve against the config file's folder.
PATH_FIELDS = ("data.root", "model.pretrained")


#: Suffixes that make a bare `model.pretrained` word a file, not a weights name.
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".tar", ".pkl", ".npz")


def names_weights(value: str) -> bool:
    """`model.pretrained` names weights (none, imagenet, a tag) rather than a file."""
    return ("/" not in value and "\\" not in value and not value.startswith(("~", "."))
            and not value.lower().endswith(WEIGHT_FILE_SUFFIXES))


def is_url(text: str) -> bool:
    """s3://..., gs://..., file://... (a one-letter scheme is a Windows drive)."""
    return len(urlsplit(text).scheme) > 1


def resolve_path(value: Any, base: Path, field: str = "") -> Any:
    """`value` made absolute against `base` when it is a relative local path."""
    if not isinstance(value, str) or not value or is_url(value):
        return value
    if field == "model.pretrained" and names_weights(value):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve_tree_paths(tree: MutableMapping[str, Any], base: Path) -> None:
    """Resolve PATH_FIELDS of a nested config tree in place."""
    for dotted in PATH_FIELDS:
        section, name = dotted.split(".")
        node = tree.get(section)
        if isinstance(node, MutableMapping) and name in node:
            node[name] = resolve_path(node[name], base, dotted)


def resolve_dotted_paths(entries: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A copy of dotted overrides (`--set`, a space's `fixed:`) with PATH_FIELDS resolved."""
    return {k: resolve_path(v, base, k) if k in PATH_FIELDS else v for k, v in entries.items()}
