"""No credential value anywhere in deploy/: Secrets are templates with placeholders, and
every Secret a pod reads exists in those templates under the same name and key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import REPO, policy

SECRETS = REPO / "deploy" / "k8s" / "secrets"
PLACEHOLDER = re.compile(r"^REPLACE_ME(_[A-Z0-9_]+)?$")
# Shapes of real credentials that must never be committed.
LEAKS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "password in a URL": re.compile(r"://[^/\s:@$]+:(?!\$\()[^@/\s]+@"),
    "secret assignment": re.compile(
        r"(?i)\b(aws_secret_access_key|secret_key|password|token)\b\s*[:=]\s*['\"]?(?!REPLACE_ME)[A-Za-z0-9/+=]{12,}"),
}


def deploy_files() -> list[Path]:
    files = [p for p in (REPO / "deploy").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files + [REPO / ".dockerignore"]


def test_secret_templates_hold_placeholders_only() -> None:
    templates = sorted(SECRETS.glob("*.yaml"))
    assert templates
    for path in templates:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] == "Secret", path
            assert "data" not in doc, f"{path}: use stringData placeholders, never encoded values"
            for key, value in doc["stringData"].items():
                assert PLACEHOLDER.match(str(value)), f"{path}: {key} is not a REPLACE_ME placeholder"


def test_no_credential_shaped_text_in_deploy() -> None:
    hits = []
    for path in deploy_files():
        text = path.read_text(errors="replace")
        for what, pattern in LEAKS.items():
            for match in pattern.finditer(text):
                hits.append(f"{path.relative_to(REPO)}: {what}: {match.group(0)[:40]}")
    assert hits == []


def test_leak_patterns_do_fire() -> None:
    """Controls: the scan above would notice a pasted credential."""
    samples = ["AKIAABCDEFGHIJKLMNOP", "postgresql://mlflow:s3cr3t@postgres:5432/db",
               "password: hunter2hunter2", "-----BEGIN RSA PRIVATE KEY-----"]
    for sample in samples:
        assert any(p.search(sample) for p in LEAKS.values()), sample
    assert not any(p.search("postgresql://$(PGUSER):$(PGPASSWORD)@postgres:5432/mlflow") for p in LEAKS.values())


def secret_refs(node: Any) -> list[tuple[str, str | None]]:
    """(secret name, key) for every secretKeyRef / secretRef / secret volume in a tree."""
    found: list[tuple[str, str | None]] = []
    if isinstance(node, dict):
        if isinstance(node.get("secretKeyRef"), dict):
            found.append((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
        if isinstance(node.get("secretRef"), dict):
            found.append((node["secretRef"]["name"], None))
        if isinstance(node.get("secret"), dict) and "secretName" in node["secret"]:
            found.append((node["secret"]["secretName"], None))
        if isinstance(node.get("authOptions"), dict) and node["authOptions"].get("secretName"):
            found.append((node["authOptions"]["secretName"], "auth_token"))   # KubeRay's key
        for value in node.values():
            found += secret_refs(value)
    elif isinstance(node, list):
        for item in node:
            found += secret_refs(item)
    return found


def test_every_referenced_secret_key_is_templated(rendered: dict) -> None:
    templates = {doc["metadata"]["name"]: set(doc["stringData"])
                 for path in SECRETS.glob("*.yaml") for doc in yaml.safe_load_all(path.read_text())}
    docs = [d for overlay in rendered.values() for d in overlay]
    assert all(d["kind"] != "Secret" for d in docs), "overlays must not ship Secrets"
    refs = {ref for d in docs for ref in secret_refs(d)}
    assert refs, "the manifests read credentials from Secrets"
    for name, key in refs:
        assert name in templates, f"Secret {name} has no template in deploy/k8s/secrets"
        assert key is None or key in templates[name], f"Secret {name} template lacks key {key}"
    for d in docs:
        for where, pod, _ in policy.pods(d):
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for env in c.get("env", []):
                    if policy.SECRET_NAME.search(env["name"]):
                        assert "valueFrom" in env, f"{where}: {env['name']} must come from a Secret"
