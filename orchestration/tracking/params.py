"""Which config fields a run logs as MLflow params, and the portable config it stores.

A trial logged all 76 config fields: a supervised run showed `method.w_cps` and the
critic's settings, and `runtime.output_dir` (a temporary folder, different in every
trial) made every run look different in the UI's param diff and leaked into
`best_config.yaml`. Here a run keeps only what its method reads (its `method:`
section holds only its own fields; unlabeled-data settings only for methods that
read unlabeled images) and nothing that names this machine's scratch space, so
the UI's "show diff only" shows what actually differs between trials.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rrn_core.config import RunConfig, flatten
from rrn_core.methods.table import method_class

#: Data fields that only matter to methods training on unlabeled images.
UNLABELED_DATA_FIELDS = ("unlabeled_batch_size", "cutmix", "unlabeled_split")
#: Runtime fields the runner sets per execution (a trial's temporary folder, its
#: resume and progress-bar switches): they say where a run ran, not what it is.
RUNNER_FIELDS = ("output_dir", "resume", "progress")


def _uses(section: str, field: str, uses_unlabeled: bool) -> bool:
    if section == "data" and field in UNLABELED_DATA_FIELDS:
        return uses_unlabeled
    if section == "runtime" and field in RUNNER_FIELDS:
        return False
    return True


def portable_tree(cfg: RunConfig) -> dict[str, Any]:
    """The run's config as a tree that reruns anywhere the data set is.

    Runner-set runtime fields are dropped (their defaults apply on reload) and split
    files under `data.root` become relative to it (rrn_core resolves them against
    the root), so `best_config.yaml` holds no temporary folder of a worker.
    """
    tree = cfg.model_dump(mode="json")
    for name in RUNNER_FIELDS:
        tree["runtime"].pop(name, None)
    data = tree["data"]
    root = Path(str(data["root"])).expanduser()
    for key in ("labeled_split", "unlabeled_split"):
        value = data.get(key)
        if value and root.is_absolute() and Path(value).is_absolute():
            try:
                data[key] = str(Path(value).relative_to(root))
            except ValueError:
                pass  # a split file elsewhere stays absolute
    return tree


def run_params(cfg: RunConfig, tree: dict[str, Any] | None = None,
               keep: Iterable[str] = ()) -> dict[str, Any]:
    """Dotted params of one run: the fields its method uses, nothing machine-local.

    `tree` is the (redacted) `portable_tree(cfg)` when the caller has it already;
    `keep` are keys logged whatever the method (a sweep's grid and searched keys: the
    sweep set them, and the report reads every trial's value back).
    """
    uses_unlabeled = method_class(cfg.method.name).uses_unlabeled
    tree = portable_tree(cfg) if tree is None else tree
    always = set(keep)
    kept: dict[str, Any] = {}
    for key, value in flatten(tree).items():
        section, _, rest = key.partition(".")
        field = rest.split(".", 1)[0]
        if key in always or _uses(section, field, uses_unlabeled):
            kept[key] = value
    return kept
