"""The Kubernetes release that kubernetes mode targets, and strict validation against its schema.

The partition pods (tests/dags/test_kubernetes_pods.py) and deploy/ (tests/deploy/) are validated
against the OpenAPI schema of this release with kubernetes-validate, strict about unknown fields.
It is the release of the pinned kubernetes client (requirements.txt: client 36.x is generated from
Kubernetes release-1.36), and docs/deployment.md names it; tests/deploy/ checks both.
"""

from __future__ import annotations

from typing import Any

KUBERNETES_VERSION = "1.36"


def validate_strictly(manifest: dict[str, Any]) -> None:
    """Raise kubernetes_validate.ValidationError unless ``manifest`` is a valid object of
    KUBERNETES_VERSION with no field the schema does not know."""
    import kubernetes_validate

    used = kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    # kubernetes-validate falls back to the newest schema it has that is not newer than the one
    # asked for: make sure it validated against this release's own schema.
    assert used == KUBERNETES_VERSION, f"validated against Kubernetes {used}, not {KUBERNETES_VERSION}"
