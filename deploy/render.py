"""Render a kustomization the way `kubectl kustomize` does, for the subset deploy/ uses.

Why this exists: CI and laptops here have no kustomize binary, yet every manifest
that `kubectl apply -k deploy/k8s/overlays/<x>` would send must be checked offline
(schemas, security policy). The kustomization files stay standard; this renderer
only understands the few fields they use and refuses anything else loudly, so a
kustomization that grows past the subset cannot be validated by accident with the
wrong semantics. The real tool remains `kubectl kustomize deploy/k8s/overlays/dev`.

Subset: `resources` (files and directories), `patches` (JSON6902 only, with a
`target`), `namespace`, `labels` (metadata, optionally pod templates; no
selectors), `images` (any `containers`/`initContainers` list at any depth, as
kustomize's image transformer does). Transformers run in kustomize's order:
patches, namespace, labels, images.

Usage: python deploy/render.py deploy/k8s/overlays/dev > rendered.yaml
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "patches", "namespace", "labels", "images"}
CLUSTER_SCOPED_KINDS = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass",
}
# Kinds whose pod template kustomize's label transformer reaches with includeTemplates.
TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render faithfully; names the file and field."""


def render_kustomization(directory: str | Path) -> list[dict[str, Any]]:
    """Every document `kubectl kustomize DIRECTORY` would print, as dicts, in order."""
    directory = Path(directory)
    path = _kustomization_file(directory)
    spec = _load_yaml_mapping(path)
    unknown = set(spec) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: unsupported field(s) {sorted(unknown)}; "
                             f"this renderer knows {sorted(SUPPORTED_FIELDS)}")
    docs: list[dict[str, Any]] = []
    for entry in spec.get("resources") or []:
        docs.extend(_load_resource(directory, entry, path))
    _check_unique(docs, path)
    for index, patch in enumerate(spec.get("patches") or []):
        _apply_patch(docs, patch, directory, f"{path}: patches[{index}]")
    if spec.get("namespace"):
        _set_namespace(docs, spec["namespace"])
    for index, label in enumerate(spec.get("labels") or []):
        _add_labels(docs, label, f"{path}: labels[{index}]")
    for index, image in enumerate(spec.get("images") or []):
        _set_image(docs, image, f"{path}: images[{index}]")
    return docs


def dump_documents(docs: list[dict[str, Any]]) -> str:
    """Multi-document YAML, as `kubectl apply -f -` reads it."""
    return yaml.safe_dump_all(docs, sort_keys=False)


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _load_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise KustomizeError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise KustomizeError(f"{path}: top level must be a mapping")
    return data


def _load_resource(directory: Path, entry: Any, source: Path) -> list[dict[str, Any]]:
    if not isinstance(entry, str) or "://" in entry or entry.startswith("github.com/"):
        raise KustomizeError(f"{source}: resources entry {entry!r}: only local paths are supported")
    target = (directory / entry).resolve()
    if target.is_dir():
        return render_kustomization(target)
    if not target.is_file():
        raise KustomizeError(f"{source}: resources entry {entry!r}: {target} not found")
    try:
        docs = [d for d in yaml.safe_load_all(target.read_text()) if d]
    except yaml.YAMLError as err:
        raise KustomizeError(f"{target}: not valid YAML: {err}") from None
    for doc in docs:
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= set(doc):
            raise KustomizeError(f"{target}: every document needs apiVersion, kind and metadata")
    return docs


def _resource_id(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    return doc["kind"], meta.get("namespace", ""), meta.get("name", "")


def _check_unique(docs: list[dict[str, Any]], source: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for doc in docs:
        rid = _resource_id(doc)
        if rid in seen:
            raise KustomizeError(f"{source}: resource {rid} is defined twice")
        seen.add(rid)


def _matches(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    group, _, version = doc["apiVersion"].rpartition("/")
    checks = {
        "kind": doc["kind"],
        "name": (doc.get("metadata") or {}).get("name"),
        "namespace": (doc.get("metadata") or {}).get("namespace"),
        "group": group,
        "version": version,
    }
    return all(checks[key] == value for key, value in target.items())


def _apply_patch(docs: list[dict[str, Any]], patch: Any, directory: Path, where: str) -> None:
    if not isinstance(patch, dict):
        raise KustomizeError(f"{where}: must be a mapping with path or patch, and target")
    unknown = set(patch) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"{where}: unsupported key(s) {sorted(unknown)}")
    target = patch.get("target")
    if not isinstance(target, dict) or not target:
        raise KustomizeError(f"{where}: a target (kind/name) is required")
    bad_keys = set(target) - {"kind", "name", "namespace", "group", "version"}
    if bad_keys:
        raise KustomizeError(f"{where}: target key(s) {sorted(bad_keys)} are not supported")
    if ("path" in patch) == ("patch" in patch):
        raise KustomizeError(f"{where}: give exactly one of path or patch")
    text = (directory / patch["path"]).read_text() if "path" in patch else patch["patch"]
    ops = yaml.safe_load(text)
    if not isinstance(ops, list):
        raise KustomizeError(f"{where}: only JSON6902 patches (a list of operations) are "
                             "supported; strategic-merge patches are not")
    matched = [i for i, doc in enumerate(docs) if _matches(doc, target)]
    if not matched:
        raise KustomizeError(f"{where}: target {target} matches no resource")
    for i in matched:
        try:
            docs[i] = jsonpatch.JsonPatch(ops).apply(docs[i])
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
            raise KustomizeError(f"{where}: cannot apply to {_resource_id(docs[i])}: {err}") from None


def _set_namespace(docs: list[dict[str, Any]], namespace: str) -> None:
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED_KINDS:
            doc.setdefault("metadata", {})["namespace"] = namespace


def _add_labels(docs: list[dict[str, Any]], label: Any, where: str) -> None:
    if not isinstance(label, dict) or not isinstance(label.get("pairs"), dict):
        raise KustomizeError(f"{where}: needs a pairs mapping")
    unknown = set(label) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown:
        raise KustomizeError(f"{where}: unsupported key(s) {sorted(unknown)}")
    if label.get("includeSelectors"):
        raise KustomizeError(f"{where}: includeSelectors is not supported (selectors are immutable)")
    pairs = {str(k): str(v) for k, v in label["pairs"].items()}
    for doc in docs:
        doc.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if label.get("includeTemplates") and doc["kind"] in TEMPLATE_KINDS:
            template = doc.get("spec", {}).get("template")
            if isinstance(template, dict):
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`repo/name:tag@digest` -> (repo/name, tag, digest); a registry port is not a tag."""
    name, _, digest = image.partition("@")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest or None


def _set_image(docs: list[dict[str, Any]], spec: Any, where: str) -> None:
    if not isinstance(spec, dict) or "name" not in spec:
        raise KustomizeError(f"{where}: needs a name")
    unknown = set(spec) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"{where}: unsupported key(s) {sorted(unknown)}")

    def rewrite(image: str) -> str:
        name, tag, digest = split_image(image)
        if name != spec["name"]:
            return image
        name = spec.get("newName", name)
        if spec.get("digest"):
            return f"{name}@{spec['digest']}"
        if "newTag" in spec:
            return f"{name}:{spec['newTag']}"
        return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")

    for doc in docs:
        _walk_containers(doc, rewrite)


def _walk_containers(node: Any, rewrite: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    if isinstance(container, dict) and isinstance(container.get("image"), str):
                        container["image"] = rewrite(container["image"])
            _walk_containers(value, rewrite)
    elif isinstance(node, list):
        for item in node:
            _walk_containers(item, rewrite)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        docs = render_kustomization(args[0])
    except KustomizeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(dump_documents(copy.deepcopy(docs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
