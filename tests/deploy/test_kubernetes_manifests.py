"""Every object of deploy/kubernetes/ against the OpenAPI schema of the Kubernetes release kubernetes
mode targets (tests/_kubernetes_schema.py), strict about unknown fields: a misspelt or misplaced
field, a wrong type or a missing required field fails here rather than at `kubectl apply`.

Schema validation only: the API server's own checks (name and label syntax, quantities, Pod
Security admission) and RBAC in effect are not exercised, since no cluster runs here.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from _kubernetes_schema import KUBERNETES_VERSION, validate_strictly

PROJECT = Path(__file__).resolve().parents[2]
MANIFESTS = PROJECT / "deploy" / "kubernetes"
MANIFEST_FILES = sorted(path for path in MANIFESTS.iterdir() if path.is_file())


def manifest_documents() -> list:
    """One pytest param per YAML document of every file in deploy/kubernetes/ (empty ones skipped)."""
    params = []
    for path in MANIFEST_FILES:
        documents = [document for document in yaml.safe_load_all(path.read_text()) if document is not None]
        for index, document in enumerate(documents):
            params.append(pytest.param(path, document, id=f"{path.name}[{index}]"))
    return params


DOCUMENTS = manifest_documents()


@pytest.mark.parametrize("path, document", DOCUMENTS)
def test_manifest_validates_strictly_against_the_kubernetes_schema(path, document):
    validate_strictly(document)


def test_every_manifest_file_was_validated():
    assert MANIFEST_FILES, f"no file in {MANIFESTS}"
    assert all(path.suffix == ".yaml" for path in MANIFEST_FILES), MANIFEST_FILES
    validated_files = {param.values[0] for param in DOCUMENTS}
    assert validated_files == set(MANIFEST_FILES), "a file of deploy/kubernetes/ holds no document"
    kinds = {param.values[1]["kind"] for param in DOCUMENTS}
    assert kinds >= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "Secret"}


def test_a_misspelt_field_in_a_manifest_is_refused():
    import kubernetes_validate

    [role] = [param.values[1] for param in DOCUMENTS if param.values[1]["kind"] == "Role"]
    role = copy.deepcopy(role)
    role["rules"][0]["resource"] = role["rules"][0].pop("resources")

    with pytest.raises(kubernetes_validate.ValidationError, match="resource"):
        validate_strictly(role)


def test_the_targeted_kubernetes_release_is_the_kubernetes_clients_and_the_docs():
    """The kubernetes client N.x is generated from Kubernetes release-1.N: the pods are rendered with
    the pinned client, so they are validated against its release; docs/deployment.md names it."""
    pin = re.search(r"^kubernetes==(\d+)\.", (PROJECT / "requirements.txt").read_text(), re.MULTILINE)
    assert pin, "kubernetes is not pinned in requirements.txt"
    assert KUBERNETES_VERSION == f"1.{pin[1]}"
    docs = " ".join((PROJECT / "docs" / "deployment.md").read_text().split())
    assert f"Kubernetes {KUBERNETES_VERSION}" in docs
