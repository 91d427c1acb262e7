"""deploy/Dockerfile installs the way scripts/setup.sh does, with the same pins, and the
versions the manifests name (Ray, MLflow, the project, the uid) agree with it."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import yaml
from deploy_helpers import REPO

from orchestration.cluster import k8s_plan

DOCKERFILE = REPO / "deploy" / "Dockerfile"


def constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[name.lower()] = version
    return pins


def instructions() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stage, out = "", []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stage = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
        out.append((stage, word.upper(), rest.strip()))
    return out


def pip_installs(stage: str) -> list[str]:
    return [args for s, word, args in instructions() if s == stage and word == "RUN" and "pip install" in args]


def setup_sh_installs() -> list[str]:
    return [line.strip() for line in (REPO / "scripts" / "setup.sh").read_text().splitlines()
            if "pip install" in line and not line.strip().startswith("#")]


def test_setup_sh_installs_torch_first_then_the_project_with_constraints() -> None:
    """The reference the Dockerfile is held to: if setup.sh changes shape, this says so."""
    installs = [i for i in setup_sh_installs() if "--upgrade pip" not in i]
    assert len(installs) == 2, installs
    assert re.search(r'"torch==([^"]+)"', installs[0]).group(1) == constraints()["torch"]
    assert re.search(r'"torchvision==([^"]+)"', installs[0]).group(1) == constraints()["torchvision"]
    assert "-c constraints.txt" in installs[1] and '".[dev]"' in installs[1]


def test_dockerfile_installs_like_setup_sh() -> None:
    torch_step, project_step = pip_installs("rrn")
    # 1. torch first, explicitly, its pin read from constraints.txt (the one place it lives),
    #    from the wheel index of the variant (CPU by default, CUDA by build argument).
    assert '--index-url "${TORCH_INDEX_URL}"' in torch_step
    pattern = re.search(r"grep -E '([^']+)' constraints\.txt", torch_step).group(1)
    matched = [ln for ln in (REPO / "constraints.txt").read_text().splitlines() if re.search(pattern, ln)]
    setup_pins = re.findall(r'"(torch(?:vision)?==[^"]+)"', setup_sh_installs()[1])
    assert matched == setup_pins, "the image and setup.sh must install the same torch and torchvision"
    # 2. the project, non-editable, without [dev], under the same constraints file.
    args = shlex.split(project_step.split("&&")[0])
    assert args[:2] == ["pip", "install"] and "-c" in args and args[args.index("-c") + 1] == "constraints.txt"
    assert args[-1] == "." and "-e" not in args and not any("[dev]" in a for a in args)
    args_defaults = {a.split("=", 1)[0]: a.split("=", 1)[1] for s, w, a in instructions() if w == "ARG" and "=" in a}
    assert args_defaults["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_mlflow_image_uses_the_project_pins() -> None:
    (install,) = pip_installs("mlflow")
    args = shlex.split(install)
    # mlflow with its [auth] extra: the server is the basic-auth app (deploy/k8s/base/mlflow.yaml)
    assert args[args.index("-c") + 1] == "constraints.txt" and "mlflow[auth]" in args and "boto3" in args
    psycopg = next(a for a in args if a.startswith("psycopg2-binary=="))
    assert psycopg == "psycopg2-binary==${PSYCOPG2_VERSION}"


def test_images_run_as_the_uid_the_manifests_use() -> None:
    steps = instructions()
    stages = [s for s, w, _ in steps if w == "FROM"]
    assert stages[-1] == "rrn", "the default build target must be the rrn image"
    base = next(a for s, w, a in steps if w == "FROM").split()[0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    for stage in ("mlflow", "rrn"):
        users = [a for s, w, a in steps if s == stage and w == "USER"]
        assert users and users[-1] == f"{k8s_plan.RUN_AS}:{k8s_plan.RUN_AS}"
    assert ("rrn", "ENTRYPOINT", '["rrn"]') in steps
    assert f"--uid {k8s_plan.RUN_AS}" in next(a for s, w, a in steps if w == "RUN" and "useradd" in a)


def test_copied_paths_pass_the_dockerignore() -> None:
    rules = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    sources = [a.split()[:-1] for s, w, a in instructions() if w == "COPY" and "--from" not in a]
    for source in (src for group in sources for src in group):
        assert (REPO / source).exists(), f"COPY {source}: no such path"
        assert included(source), f"COPY {source} is excluded by .dockerignore"
    for private in (".venv/bin/python", ".git/config", "rrn-home/mlflow.db", "tests/conftest.py"):
        assert not included(private), f"{private} would be sent to the Docker daemon"


def test_versions_in_manifests_match_the_image() -> None:
    pins = constraints()
    assert k8s_plan.installed_ray_version() == pins["ray"]
    base = yaml.safe_load_all((REPO / "deploy" / "k8s" / "base" / "raycluster.yaml").read_text())
    (cluster,) = [d for d in base if d]
    assert cluster["spec"]["rayVersion"] == pins["ray"]
    project_version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    images = set(re.findall(r"image: (\S+)", "\n".join(
        p.read_text() for p in (REPO / "deploy" / "k8s" / "base").glob("*.yaml"))))
    assert f"rrn:{project_version}" in images
    assert f"rrn-mlflow:{pins['mlflow']}" in images
    for overlay in (REPO / "deploy" / "k8s" / "overlays").glob("*/kustomization.yaml"):
        for image in yaml.safe_load(overlay.read_text())["images"]:
            expected = pins["mlflow"] if image["name"] == "rrn-mlflow" else project_version
            assert str(image["newTag"]).startswith(expected), f"{overlay}: {image}"


def test_dockerfile_documents_its_build_commands() -> None:
    text = DOCKERFILE.read_text()
    assert "docker build -f deploy/Dockerfile" in text
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128" in text
    assert Path(REPO / "deploy" / "mlflow" / "prepare.py").is_file()
