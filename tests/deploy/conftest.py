"""Fixtures for tests/deploy; the helpers themselves live in deploy_helpers.py."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_helpers import OVERLAYS, REPO, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay rendered once per session: {overlay: documents}."""
    return {name: render.render_kustomization(REPO / "deploy" / "k8s" / "overlays" / name)
            for name in OVERLAYS}
