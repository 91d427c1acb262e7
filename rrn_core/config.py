"""Configuration of one training run, as data.

Every knob of a run lives in these pydantic models so that a YAML file, a sweep
trial and the MLflow params all describe a run the same way. The sections come from
the parts that read them (rrn_core/config_sections.py; the `method:` section is the chosen
method's own model, rrn_core/methods/table.py). Models forbid unknown keys and check
ranges: a typo in a sweep file must fail before any trial starts, naming the field,
instead of silently training with a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from rrn_core.constants import METHOD_NAME_KEY
from rrn_core.field_messages import field_message
from rrn_core.methods.table import DEFAULT_METHOD, METHODS, MethodConfig, default_method_config
from rrn_core.paths import resolve_dotted_paths, resolve_tree_paths
from rrn_core.yaml_files import YamlLimitError, load_yaml, read_mapping
from rrn_core.config_sections import (ConfigError, DataConfig, EvalConfig, ModelConfig, OptimConfig, RuntimeConfig,
                                      StrictModel)



class RunConfig(StrictModel):
    name: str = "rrn"
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=default_method_config)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @model_validator(mode="after")
    def _patch_multiples(self) -> RunConfig:
        """A ViT reads whole patches: training crops and sliding windows must be
        multiples of its patch (14 for DINOv2: 518 as UniMatch V2 on VOC, 798 on
        Cityscapes). Whole images of any size are padded by the segmenter."""
        from rrn_core.models.backbones import patch_size

        p = patch_size(self.model.backbone)
        sizes = [("data.crop_size", self.data.crop_size)]
        if self.eval.mode == "sliding":
            sizes.append(("eval.window", self.eval.window))
        for field, size in sizes:
            if size % p:
                raise ValueError(f"{field}: {size} is not a multiple of {p}, the patch size of "
                                 f"{self.model.backbone} (use {size - size % p or p} or "
                                 f"{size - size % p + p})")
        return self


def error_lines(err: ValidationError) -> list[tuple[str, str]]:
    """(dotted field, message) per error, with the method's name taken out of the path.

    Pydantic locates an error in the `method:` union as `method.<name>.<field>`; users
    wrote `method.<field>`, and a field the method lacks should say which method it is
    and what it has instead of "Extra inputs are not permitted". A bound error states
    the field's whole range (rrn_core/field_messages.py: NaN is "not in (0, 1]").
    """
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        msg = field_message(e, RunConfig)
        if len(loc) >= 2 and loc[0] == "method" and loc[1] in METHODS:
            name = loc.pop(1)
            model = METHODS[name].config_model
            msg = field_message({**e, "loc": tuple(loc[1:])}, model)
            if e["type"] == "extra_forbidden" and len(loc) == 2:
                fields = ", ".join(f for f in model.model_fields if f != "name")
                msg = f"method {name!r} has no field {loc[1]!r} (its fields: {fields or 'none'})"
        elif loc == ["method"] and e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ["method", "name"]
            msg = f"must be one of {', '.join(METHODS)} (got {e.get('input', {}).get('name')!r})" \
                if isinstance(e.get("input"), dict) and "name" in e["input"] else msg
        out.append((".".join(loc) or "(top level)", msg))
    return out


class InvalidFields(ConfigError):
    """A config tree that fails validation. `fields` holds (dotted field, message) per
    error, so a caller that assembled the tree from several places (a search space's
    fixed, grid and searched entries) can name the entry that set each one."""

    def __init__(self, source: str, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        super().__init__("\n".join([f"{source}: invalid configuration",
                                    *(f"  {where}: {msg}" for where, msg in fields)]))


def parse_override(text: str) -> tuple[str, Any]:
    """`method.w_select=0.5` -> ("method.w_select", 0.5); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), load_yaml(raw)
    except YamlLimitError as err:
        raise ConfigError(f"--set {key.strip()}: {err}") from None


def build_config(tree: dict[str, Any], overrides: Mapping[str, Any] | None = None,
                 source: str = "config", base_dir: str | Path | None = None) -> RunConfig:
    """A validated RunConfig from a tree plus dotted overrides: the one config builder.

    `rrn train/eval/predict` (a file and `--set`), the up-front check of a search space
    (orchestration/space.py) and every sweep trial (a grid point's tree and the values
    its study sampled, orchestration/sweep/trial.py) all build their config here.
    Relative input paths in the tree resolve against `base_dir` (the folder of the file
    the tree came from; the current directory when there is no file) and those in
    `overrides` against the current directory; see rrn_core/paths.py. An override of
    `method.name` first switches the `method:` section (`rebase_method`: a grid over
    methods runs each on the same base config), then every dotted key is set.
    """
    tree = yaml.safe_load(yaml.safe_dump(tree))  # a deep copy through plain data
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    resolve_tree_paths(tree, Path(base_dir) if base_dir is not None else Path.cwd())
    overrides = resolve_dotted_paths(overrides or {}, Path.cwd())
    if METHOD_NAME_KEY in overrides:
        rebase_method(tree, overrides[METHOD_NAME_KEY])
    for key, value in overrides.items():   # `a.b.c`: creates the levels it needs
        *sections, name = key.split(".")
        node = tree
        for part in sections:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set {key}: {part} is not a section")
        node[name] = value
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise InvalidFields(source, error_lines(err)) from None


def rebase_method(tree: dict[str, Any], name: Any) -> None:
    """Switch the tree's `method:` section to `name`, keeping what that method shares.

    A base config describes one method (configs/voc.yaml: RRN's weights and critics);
    a sweep grid or `--set method.name=cps` runs another method on the same base. The
    base's fields the new method has are kept (`unsup_rampup`, `w_cps`), the others
    are the base method's own and are left out. Only the base file is treated so:
    a field set next to `method.name` (a space's fixed/search entry, `--set`) that
    the method lacks is still an error.
    """
    section = tree.get("method")
    if not isinstance(section, Mapping) or name not in METHODS:
        return  # validation reports a malformed section or an unknown method
    if section.get("name", DEFAULT_METHOD) == name:
        return
    fields = METHODS[name].config_model.model_fields
    tree["method"] = {k: v for k, v in section.items() if k in fields}


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A run config file; its relative paths (data.root, ...) resolve against its folder."""
    path = Path(path)
    tree = read_mapping(path, "config file", ConfigError)
    return build_config(tree, overrides, source=str(path), base_dir=path.resolve().parent)


def flatten(cfg: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of a config, as logged to MLflow params."""
    tree = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
