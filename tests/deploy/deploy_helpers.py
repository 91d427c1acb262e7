"""Helpers for tests/deploy (a uniquely named module: conftest names clash across folders).

Offline validators for deploy/: Kubernetes schemas, KubeRay CRD schemas, the renderer.

No cluster, kustomize or kubectl here, so every manifest is checked the way the API
server would check its shape: built-in kinds with kubernetes-validate (strict: an
unknown field is an error, as with `kubectl apply --validate=strict`), KubeRay kinds
with the openAPIV3Schema of the v1.7.0 CRDs from ../shared/schemas (made strict the
same way; skipped with a reason when that folder is absent).
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO.parent / "shared" / "schemas" / "kuberay-v1.7.0"
OVERLAYS = sorted(p.name for p in (REPO / "deploy" / "k8s" / "overlays").iterdir() if p.is_dir())
# Oldest Kubernetes minor we document support for, and the newest the package ships.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}

_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_module(name: str) -> Any:
    """deploy/*.py are scripts, not package modules: import one by path."""
    if f"rrn_deploy_{name}" in sys.modules:
        return sys.modules[f"rrn_deploy_{name}"]
    spec = importlib.util.spec_from_file_location(f"rrn_deploy_{name}", REPO / "deploy" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"rrn_deploy_{name}"] = module
    spec.loader.exec_module(module)
    return module


def load_render_module() -> Any:
    return load_module("render")


render = load_render_module()
policy = load_module("policy")


def _strict(node: Any) -> Any:
    """CRD schema -> JSON Schema that rejects unknown fields and knows OpenAPI's quirks."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string") and "type" not in out and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


_validators: dict[tuple[str, str], jsonschema.Validator] = {}


def crd_validator(kind: str, api_version: str) -> jsonschema.Validator:
    """A cached strict validator for a KubeRay kind at the version of `api_version`."""
    if not CRD_DIR.is_dir():
        pytest.skip(reason=f"KubeRay CRD schemas not found at {CRD_DIR} (../shared is absent); "
                    "KubeRay manifests are not schema-checked in this checkout")
    version = api_version.split("/")[-1]
    key = (kind, version)
    if key not in _validators:
        crd = yaml.load((CRD_DIR / CRD_FILES[kind]).read_text(), Loader=_loader)
        versions = {v["name"]: v for v in crd["spec"]["versions"]}
        assert version in versions, f"{kind} CRD has no version {version} (has {sorted(versions)})"
        schema = _strict(versions[version]["schema"]["openAPIV3Schema"])
        _validators[key] = jsonschema.Draft202012Validator(schema)
    return _validators[key]


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Every schema problem of one manifest ([] when valid). Unknown kinds are an error:
    a manifest nothing validates must not pass silently."""
    kind, api_version = doc.get("kind"), doc.get("apiVersion", "")
    where = f"{kind}/{doc.get('metadata', {}).get('name')}"
    if api_version.startswith("ray.io/"):
        if kind not in CRD_FILES:
            return [f"{where}: no KubeRay CRD for kind {kind}"]
        validator = crd_validator(kind, api_version)
        problems = [f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                    for e in validator.iter_errors(copy.deepcopy(doc))]
        return problems + _object_meta_errors(doc)
    problems = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(copy.deepcopy(doc), version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{where} (k8s {version}): {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{where}: {e.message}")
    return problems


def _object_meta_errors(doc: dict[str, Any]) -> list[str]:
    """A CRD's schema leaves metadata open; check it against the core ObjectMeta instead,
    plus KubeRay's name rules (DNS-1123 label, short enough for derived names)."""
    import re

    meta = doc.get("metadata") or {}
    name = str(meta.get("name", ""))
    problems = []
    limit = 47 if doc["kind"] == "RayJob" else 63
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(name) > limit:
        problems.append(f"{doc['kind']}/{name}: name must be a DNS-1123 label of at most {limit} chars")
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    try:
        kubernetes_validate.validate(probe, K8S_VERSIONS[-1], strict=True)
    except kubernetes_validate.ValidationError as e:
        problems.append(f"{doc['kind']}/{name}: metadata.{'.'.join(map(str, e.path))}: {e.message}")
    return problems
