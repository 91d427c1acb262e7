"""Security and operability rules every pod of deploy/ must follow, checked offline.

Why our own checker next to checkov (deploy/scan.sh): checkov does not look inside
KubeRay custom resources, yet the Ray head and workers are most of the pods this
project runs. These rules cover every pod template, built-in or KubeRay (RayCluster,
RayJob head, worker groups, submitter, autoscaler sidecar), with one explicit table
of exceptions, each with its reason.

Usage: python deploy/policy.py deploy/k8s/overlays/dev [more dirs or YAML files]
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY|API_KEY)",
                         re.IGNORECASE)
URL_PASSWORD = re.compile(r"://[^/:@\s]+:(?P<pw>[^@/\s]+)@")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
RUN_TO_COMPLETION = {"Job", "CronJob"}

#: (pod label pattern, rule) -> why this pod may break this rule. Keep it short: every
#: entry is a deliberate, reviewed exception; stale entries fail the test suite.
EXCEPTIONS: dict[tuple[str, str], str] = {
    (r"^(RayCluster|RayJob)/.* head$", "service-account-token"):
        "KubeRay's in-tree autoscaler runs as a sidecar of the head pod and scales worker "
        "pods through the Kubernetes API with the service account KubeRay creates for it; "
        "it needs the token mounted.",
}


@dataclass(frozen=True)
class Finding:
    where: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: [{self.rule}] {self.detail}"


def pods(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(label, pod spec, long_running) for every pod template a manifest carries."""
    kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
    spec = doc.get("spec") or {}
    if kind in WORKLOAD_KINDS:
        return [(f"{kind}/{name}", spec["template"]["spec"], True)]
    if kind == "Job":
        return [(f"{kind}/{name}", spec["template"]["spec"], False)]
    if kind == "CronJob":
        return [(f"{kind}/{name}", spec["jobTemplate"]["spec"]["template"]["spec"], False)]
    if kind == "Pod":
        return [(f"Pod/{name}", spec, spec.get("restartPolicy", "Always") == "Always")]
    if kind in ("RayCluster", "RayJob"):
        cluster = spec if kind == "RayCluster" else spec.get("rayClusterSpec") or {}
        found = [(f"{kind}/{name} head", cluster["headGroupSpec"]["template"]["spec"], True)]
        found += [(f"{kind}/{name} group {g['groupName']}", g["template"]["spec"], True)
                  for g in cluster.get("workerGroupSpecs") or []]
        if kind == "RayJob" and spec.get("submitterPodTemplate"):
            # A run-to-completion pod (`ray job submit` exits with the sweep): no probes.
            found.append((f"{kind}/{name} submitter", spec["submitterPodTemplate"]["spec"], False))
        return found
    return []


def _excepted(where: str, rule: str, used: set[tuple[str, str]]) -> bool:
    for key in EXCEPTIONS:
        pattern, excepted_rule = key
        if excepted_rule == rule and re.search(pattern, where):
            used.add(key)
            return True
    return False


def _container_findings(where: str, c: dict[str, Any], pod_sc: dict[str, Any],
                        long_running: bool, init: bool) -> list[Finding]:
    out: list[Finding] = []
    name = f"{where} container {c.get('name')}"
    sc = c.get("securityContext") or {}

    def merged(key: str) -> Any:
        return sc.get(key, pod_sc.get(key))

    if merged("runAsNonRoot") is not True:
        out.append(Finding(name, "run-as-non-root", "runAsNonRoot must be true"))
    if merged("runAsUser") in (None, 0):
        out.append(Finding(name, "run-as-non-root", "runAsUser must be a non-zero uid"))
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(Finding(name, "no-privilege-escalation", "allowPrivilegeEscalation must be false"))
    if sc.get("privileged"):
        out.append(Finding(name, "no-privileged", "privileged containers are not allowed"))
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append(Finding(name, "drop-all-capabilities", "capabilities.drop must contain ALL"))
    if caps.get("add"):
        out.append(Finding(name, "drop-all-capabilities", f"adds capabilities {caps['add']}"))
    if sc.get("readOnlyRootFilesystem") is not True:
        out.append(Finding(name, "read-only-root", "readOnlyRootFilesystem must be true"))
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        out.append(Finding(name, "seccomp", "seccompProfile must be RuntimeDefault"))
    resources = c.get("resources") or {}
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(part) or {}):
                out.append(Finding(name, "resources", f"{part}.{resource} missing"))
    if long_running and not init:
        for probe in ("readinessProbe", "livenessProbe"):
            if not c.get(probe):
                out.append(Finding(name, "probes", f"{probe} missing"))
    image = c.get("image")
    if image is not None:
        out.extend(_image_findings(name, image))
    for env in c.get("env") or []:
        value = env.get("value")
        if value is None:
            continue
        if SECRET_NAME.search(env["name"]):
            out.append(Finding(name, "secret-in-env", f"{env['name']} has a literal value; "
                                                      "use valueFrom.secretKeyRef"))
        match = URL_PASSWORD.search(str(value))
        if match and not re.fullmatch(r"\$\([A-Z0-9_]+\)", match["pw"]):
            out.append(Finding(name, "secret-in-env", f"{env['name']} embeds a password in a URL"))
    return out


def _image_findings(where: str, image: str) -> list[Finding]:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if "@" in image:
        return []
    if ":" not in last or last.endswith(":latest"):
        return [Finding(where, "pinned-image", f"image {image!r} needs a pinned tag or digest")]
    return []


def check_documents(docs: list[dict[str, Any]], used: set[tuple[str, str]] | None = None) -> list[Finding]:
    """Every rule broken by any pod of DOCS, minus the listed exceptions."""
    used = set() if used is None else used
    findings: list[Finding] = []
    for doc in docs:
        for where, pod, long_running in pods(doc):
            pod_sc = pod.get("securityContext") or {}
            if pod_sc.get("runAsNonRoot") is not True:
                findings.append(Finding(where, "run-as-non-root", "pod securityContext.runAsNonRoot must be true"))
            for flag in ("hostNetwork", "hostPID", "hostIPC"):
                if pod.get(flag):
                    findings.append(Finding(where, "host-namespaces", f"{flag} must not be set"))
            for volume in pod.get("volumes") or []:
                if "hostPath" in volume:
                    findings.append(Finding(where, "host-path", f"volume {volume['name']} is a hostPath"))
            if pod.get("automountServiceAccountToken") is not False:
                findings.append(Finding(where, "service-account-token",
                                        "automountServiceAccountToken must be false"))
            for c in pod.get("containers") or []:
                findings.extend(_container_findings(where, c, pod_sc, long_running, init=False))
            for c in pod.get("initContainers") or []:
                findings.extend(_container_findings(where, c, pod_sc, long_running, init=True))
        if doc.get("kind") in ("RayCluster", "RayJob"):
            findings.extend(_autoscaler_findings(doc))
    return [f for f in findings if not _excepted(f.where, f.rule, used)]


def _autoscaler_findings(doc: dict[str, Any]) -> list[Finding]:
    """KubeRay injects the autoscaler sidecar from autoscalerOptions: check those too."""
    spec = doc.get("spec") or {}
    cluster = spec if doc["kind"] == "RayCluster" else spec.get("rayClusterSpec") or {}
    if not cluster.get("enableInTreeAutoscaling"):
        return []
    options = cluster.get("autoscalerOptions") or {}
    head_pod = cluster["headGroupSpec"]["template"]["spec"]
    sidecar = {"name": "autoscaler", "securityContext": options.get("securityContext"),
               "resources": options.get("resources")}
    if options.get("image"):
        sidecar["image"] = options["image"]
    where = f"{doc['kind']}/{doc['metadata']['name']} autoscaler"
    # Its probes are KubeRay's business (it restarts the sidecar itself): not required.
    return _container_findings(where, sidecar, head_pod.get("securityContext") or {},
                               long_running=False, init=False)


def _load(paths: list[str]) -> list[dict[str, Any]]:
    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from render import render_kustomization

    docs: list[dict[str, Any]] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            docs += render_kustomization(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    findings = check_documents(_load(args))
    for finding in findings:
        print(finding)
    print(f"{len(findings)} finding(s)", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
