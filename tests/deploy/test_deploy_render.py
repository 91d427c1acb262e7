"""deploy/render.py: the kustomize subset behaves like kustomize, and refuses the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_helpers import render

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "registry:5000/tools/app:1.0"}],
                "containers": [{"name": "web", "image": "app:1.0"},
                               {"name": "side", "image": "other@sha256:abc"}],
            },
        },
    },
}
RAYCLUSTER = {
    "apiVersion": "ray.io/v1",
    "kind": "RayCluster",
    "metadata": {"name": "rc"},
    "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "h", "image": "app:1.0"}]}}}},
}


def write(directory: Path, kustomization: dict, **files: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, content in files.items():
        text = content if isinstance(content, str) else yaml.safe_dump_all(content)
        (directory / name).write_text(text)
    return directory


def test_resources_namespace_labels_and_images(tmp_path: Path) -> None:
    base = write(tmp_path / "base", {"resources": ["app.yaml"]}, **{"app.yaml": [DEPLOYMENT, RAYCLUSTER]})
    overlay = write(tmp_path / "overlay", {
        "resources": ["../base"],
        "namespace": "team",
        "labels": [{"pairs": {"tier": "x"}, "includeTemplates": True}],
        "images": [{"name": "app", "newName": "reg.io/app", "newTag": "2.0"},
                   {"name": "registry:5000/tools/app", "newTag": "1.1"},
                   {"name": "other", "digest": "sha256:def"}],
    })
    deployment, raycluster = render.render_kustomization(overlay)
    assert base.is_dir()
    assert deployment["metadata"]["namespace"] == raycluster["metadata"]["namespace"] == "team"
    assert deployment["metadata"]["labels"] == {"app": "web", "tier": "x"}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web", "tier": "x"}
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "web"}  # selectors untouched
    pod = deployment["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == ["reg.io/app:2.0", "other@sha256:def"]
    assert pod["initContainers"][0]["image"] == "registry:5000/tools/app:1.1"  # a port is not a tag
    # Like kustomize's image transformer, containers inside custom resources are reached too.
    head = raycluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == "reg.io/app:2.0"


def test_json6902_patch_targets_by_kind_and_name(tmp_path: Path) -> None:
    other = {**DEPLOYMENT, "metadata": {"name": "other"}}
    write(tmp_path / "b", {"resources": ["d.yaml"]}, **{"d.yaml": [DEPLOYMENT, other]})
    patch = [{"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "web"},
             {"op": "add", "path": "/spec/replicas", "value": 3}]
    overlay = write(tmp_path / "o", {"resources": ["../b"], "patches": [
        {"path": "p.yaml", "target": {"kind": "Deployment", "name": "web"}}]},
        **{"p.yaml": yaml.safe_dump(patch)})
    web, untouched = render.render_kustomization(overlay)
    assert web["spec"]["replicas"] == 3
    assert "replicas" not in untouched["spec"]


@pytest.mark.parametrize("patch, message", [
    ({"path": "p.yaml", "target": {"kind": "Deployment", "name": "nope"}}, "matches no resource"),
    ({"patch": "spec: {replicas: 2}", "target": {"kind": "Deployment"}}, "strategic-merge"),
    ({"patch": "- {op: test, path: /kind, value: Pod}", "target": {"kind": "Deployment"}}, "cannot apply"),
    ({"patch": "[]"}, "target"),
])
def test_patch_errors_name_the_file_and_entry(tmp_path: Path, patch: dict, message: str) -> None:
    write(tmp_path / "b", {"resources": ["d.yaml"]}, **{"d.yaml": [DEPLOYMENT]})
    overlay = write(tmp_path / "o", {"resources": ["../b"], "patches": [patch]},
                    **{"p.yaml": "- {op: add, path: /spec/replicas, value: 1}"})
    with pytest.raises(render.KustomizeError, match=message) as info:
        render.render_kustomization(overlay)
    assert "kustomization.yaml: patches[0]" in str(info.value)


@pytest.mark.parametrize("kustomization, message", [
    ({"resources": ["d.yaml"], "commonLabels": {"a": "b"}}, "unsupported field"),
    ({"resources": ["https://github.com/x/y"]}, "only local paths"),
    ({"resources": ["missing.yaml"]}, "not found"),
    ({"resources": ["d.yaml", "d.yaml"]}, "defined twice"),
    ({"resources": ["d.yaml"], "labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]}, "includeSelectors"),
])
def test_unsupported_kustomizations_are_refused(tmp_path: Path, kustomization: dict, message: str) -> None:
    directory = write(tmp_path, kustomization, **{"d.yaml": [DEPLOYMENT]})
    with pytest.raises(render.KustomizeError, match=message):
        render.render_kustomization(directory)


def test_cli_prints_yaml_and_exits_2_on_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    directory = write(tmp_path / "ok", {"resources": ["d.yaml"], "namespace": "n"}, **{"d.yaml": [DEPLOYMENT]})
    assert render.main([str(directory)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert docs[0]["metadata"]["namespace"] == "n"
    broken = write(tmp_path / "bad", {"resources": ["missing.yaml"]})
    assert render.main([str(broken)]) == 2
    assert "missing.yaml" in capsys.readouterr().err
