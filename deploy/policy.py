"""Security and operability rules every pod of deploy/ must follow, checked offline.

Besides the per-pod rules: every Ray cluster has token auth, no head is exposed
outside the cluster, and in a whole overlay a NetworkPolicy lets only Ray pods reach
Ray pods, submitters and the KubeRay operator reach 8265 only (`network_findings`).

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


#: Labels KubeRay puts on every Ray pod, and the one our submitters carry.
RAY_POD = {"ray.io/is-ray-node": "yes"}
SUBMITTER = {"rrn/ray-submitter": "true"}
OPERATOR = ({"kubernetes.io/metadata.name": "kuberay-system"}, {"app.kubernetes.io/name": "kuberay-operator"})
DASHBOARD_PORT = 8265
EXPOSED_TYPES = {"NodePort", "LoadBalancer"}


def _peer_kind(peer: dict[str, Any]) -> str:
    """"ray", "submitter", "operator" or "other" for one NetworkPolicy `from` entry."""
    pods = (peer.get("podSelector") or {}).get("matchLabels") or {}
    spaces = peer.get("namespaceSelector")
    if "ipBlock" in peer or peer.get("podSelector", {}).get("matchExpressions"):
        return "other"
    if spaces is None and pods == RAY_POD:
        return "ray"
    if spaces is None and pods == SUBMITTER:
        return "submitter"
    if spaces is not None and ((spaces.get("matchLabels") or {}), pods) == OPERATOR:
        return "operator"
    return "other"


def _ray_ingress_findings(policy: dict[str, Any]) -> list[Finding]:
    """Ray pods may be reached by Ray pods on any port, by submitters and the KubeRay
    operator on 8265 only, and by nobody else (so 6379 / 10001 by Ray pods only)."""
    where = f"NetworkPolicy/{policy['metadata']['name']}"
    out = []
    for i, rule in enumerate(policy["spec"].get("ingress") or []):
        peers = rule.get("from")
        ports = {p.get("port") for p in rule.get("ports") or []}
        for peer in peers if peers is not None else [{"everyone": True}]:
            kind = "other" if "everyone" in peer else _peer_kind(peer)
            if kind == "ray":
                continue
            if kind in ("submitter", "operator") and ports == {DASHBOARD_PORT}:
                continue
            out.append(Finding(where, "ray-network-policy",
                               f"ingress rule {i} lets {peer} reach Ray pods on ports "
                               f"{sorted(ports, key=str) or 'all'}: only Ray pods may (any port), and "
                               f"submitters {SUBMITTER} or the KubeRay operator on {DASHBOARD_PORT} only"))
    return out


def _selects_ray_pods(policy: dict[str, Any]) -> bool:
    selector = policy["spec"].get("podSelector") or {}
    labels = selector.get("matchLabels") or {}
    return not selector.get("matchExpressions") and all(RAY_POD.get(k) == v for k, v in labels.items())


def network_findings(docs: list[dict[str, Any]], whole: bool = True) -> list[Finding]:
    """Ray's entry points behind credentials and off the outside network: every Ray
    cluster has token auth (authOptions) and no head Service / Ingress reachable from
    outside the cluster; with `whole` (a full overlay), a NetworkPolicy guards the Ray
    pods and every policy that selects them keeps to `_ray_ingress_findings`."""
    out: list[Finding] = []
    ray_docs = [d for d in docs if d.get("kind") in ("RayCluster", "RayJob")]
    for doc in ray_docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = doc.get("spec") or {}
        cluster = spec if doc["kind"] == "RayCluster" else spec.get("rayClusterSpec") or {}
        auth = cluster.get("authOptions") or {}
        if auth.get("mode") != "token" or not auth.get("secretName"):
            out.append(Finding(where, "ray-auth", "authOptions must set mode: token and a secretName "
                                                  "(the Ray token from a Secret)"))
        head = cluster.get("headGroupSpec") or {}
        if head.get("serviceType") in EXPOSED_TYPES or head.get("enableIngress"):
            out.append(Finding(where, "dashboard-exposed", "the head's Service must stay ClusterIP, no Ingress"))
    for doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        spec = doc.get("spec") or {}
        if doc.get("kind") == "Service" and spec.get("type") in EXPOSED_TYPES and (
                any(p.get("port") == DASHBOARD_PORT for p in spec.get("ports") or [])
                or (spec.get("selector") or {}).get("ray.io/node-type")):
            out.append(Finding(name, "dashboard-exposed", f"type {spec['type']} exposes Ray outside the cluster"))
        routes = str(spec)   # an Ingress's backends, wherever they sit in its rules
        if doc.get("kind") == "Ingress" and ("head-svc" in routes or f"'number': {DASHBOARD_PORT}" in routes):
            out.append(Finding(name, "dashboard-exposed", "an Ingress routes to a Ray head"))
    if whole and ray_docs:
        guarding = [d for d in docs if d.get("kind") == "NetworkPolicy" and _selects_ray_pods(d)
                    and "Ingress" in (d["spec"].get("policyTypes") or ["Ingress"])]
        if not guarding:
            out.append(Finding("Ray pods", "ray-network-policy",
                               f"no NetworkPolicy selects the Ray pods ({RAY_POD}): any pod reaches 8265/6379/10001"))
        for policy in guarding:
            out += _ray_ingress_findings(policy)
    return out


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
    for item in args:   # a directory is a whole deployment: its Ray pods need their NetworkPolicy
        findings += network_findings(_load([item]), whole=Path(item).is_dir())
    for finding in findings:
        print(finding)
    print(f"{len(findings)} finding(s)", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
