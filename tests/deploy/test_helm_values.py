"""deploy/helm/values.yaml (official Apache Airflow chart) and deploy/kubernetes/, checked
statically (no cluster runs here): they parse, the pipeline settings are ones trading_lib reads and
accepts, the names they share (secret, service account, namespace) agree, and the values the chart
copies into a container validate against the Kubernetes schema (the chart itself is not rendered)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from _kubernetes_schema import validate_strictly

from trading_lib.settings import ENVIRONMENT_VARIABLES, load_settings

PROJECT = Path(__file__).resolve().parents[2]
VALUES_FILE = PROJECT / "deploy" / "helm" / "values.yaml"
MANIFESTS = PROJECT / "deploy" / "kubernetes"
CHART_EXECUTORS = {
    "LocalExecutor",
    "CeleryExecutor",
    "KubernetesExecutor",
    "CeleryExecutor,KubernetesExecutor",
}
PLACEHOLDER = re.compile(r"^<[^>]+>$")


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES_FILE.read_text())


@pytest.fixture(scope="module")
def trading_env(values) -> dict[str, str]:
    return {item["name"]: str(item["value"]) for item in values["env"] if item["name"].startswith("TRADING_")}


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    """(kind, name) -> object, over every manifest of deploy/kubernetes/."""
    objects = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["apiVersion"] and document["kind"], path.name
            objects[(document["kind"], document["metadata"]["name"])] = document
    return objects


def requirement_pin(name: str) -> str:
    match = re.search(
        rf"^{re.escape(name)}==(\S+)$", (PROJECT / "requirements.txt").read_text(), re.MULTILINE
    )
    assert match, f"{name} is not pinned in requirements.txt"
    return match[1]


def test_values_target_airflow_3_with_the_projects_image(values):
    assert values["airflowVersion"] == requirement_pin("apache-airflow")
    assert values["executor"] in CHART_EXECUTORS
    image = values["images"]["airflow"]
    assert image["repository"] and image["tag"]
    # Airflow 3 serves the UI from the API server: no Airflow 2 webserver section.
    assert "apiServer" in values and "webserver" not in values
    assert values["triggerer"]["enabled"] is True, "deferrable partition pods need a triggerer"
    assert values["dagProcessor"]["enabled"] is True


def test_git_sync_brings_the_dags_folder(values):
    git_sync = values["dags"]["gitSync"]

    assert git_sync["enabled"] is True
    assert git_sync["repo"] and git_sync["branch"]
    assert (PROJECT / git_sync["subPath"]).is_dir()
    assert sorted((PROJECT / git_sync["subPath"]).glob("*.py")), "subPath holds no DAG file"


def test_trading_variables_are_known_and_accepted(trading_env):
    unknown = sorted(set(trading_env) - set(ENVIRONMENT_VARIABLES))
    assert unknown == []

    settings = load_settings(trading_env)
    assert settings.execution_mode == "kubernetes"
    assert settings.is_s3, "pods cannot see a local data root"


def test_s3_secret_service_account_and_namespace_exist_in_the_manifests(trading_env, manifests):
    namespace = trading_env["TRADING_K8S_NAMESPACE"]
    secret = manifests[("Secret", trading_env["TRADING_K8S_S3_SECRET"])]
    account = manifests[("ServiceAccount", trading_env["TRADING_K8S_SERVICE_ACCOUNT"])]

    assert ("Namespace", namespace) in manifests
    assert secret["metadata"]["namespace"] == account["metadata"]["namespace"] == namespace
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["stringData"])
    assert account["automountServiceAccountToken"] is False


def test_airflow_may_launch_pods_in_the_partition_namespace(trading_env, manifests):
    namespace = trading_env["TRADING_K8S_NAMESPACE"]
    binding = manifests[("RoleBinding", "trading-pod-launcher")]
    role = manifests[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]

    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"] == namespace
    pod_verbs = {verb for rule in role["rules"] if "pods" in rule["resources"] for verb in rule["verbs"]}
    assert {"create", "get", "watch", "delete"} <= pod_verbs
    assert any("pods/log" in rule["resources"] for rule in role["rules"])
    assert {subject["name"] for subject in binding["subjects"]} >= {"airflow-worker", "airflow-triggerer"}


def test_aws_connection_comes_from_a_secret_not_from_the_values(values, manifests):
    env_from = yaml.safe_load(values["extraEnvFrom"])
    secret_names = [source["secretRef"]["name"] for source in env_from if "secretRef" in source]
    [connections] = [manifests[("Secret", name)] for name in secret_names]

    connection = json.loads(connections["stringData"]["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["conn_type"] == "aws"
    assert not [item for item in values["env"] if item["name"].startswith(("AIRFLOW_CONN_", "AWS_"))]


def test_example_secrets_hold_placeholders_only(manifests):
    secrets = [obj for (kind, _), obj in manifests.items() if kind == "Secret"]
    assert secrets
    for secret in secrets:
        assert "data" not in secret, "base64 data would hide what is committed"
        for key, value in secret["stringData"].items():
            if key == "AIRFLOW_CONN_AWS_DEFAULT":
                connection = json.loads(value)
                assert PLACEHOLDER.match(connection["login"]) and PLACEHOLDER.match(connection["password"])
            elif "KEY" in key:
                assert PLACEHOLDER.match(value), f"{secret['metadata']['name']}.{key} is not a placeholder"


def values_components_with_resources() -> list[str]:
    values = yaml.safe_load(VALUES_FILE.read_text())
    return sorted(key for key, part in values.items() if isinstance(part, dict) and "resources" in part)


def test_components_with_resources_are_found():
    assert {"apiServer", "scheduler", "triggerer", "dagProcessor"} <= set(values_components_with_resources())


@pytest.mark.parametrize("component", values_components_with_resources())
def test_kubernetes_fragments_of_the_values_validate_strictly(values, component):
    """The values the chart copies into an Airflow container as they are (env, extraEnvFrom, the
    component's resources, the image's pull policy), in a minimal pod, against the Kubernetes schema.
    The chart itself is not rendered here (no helm)."""
    image = values["images"]["airflow"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"values-{component.lower()}"},
        "spec": {
            "containers": [
                {
                    "name": "airflow",
                    "image": f"{image['repository']}:{image['tag']}",
                    "imagePullPolicy": image["pullPolicy"],
                    "env": values["env"],
                    "envFrom": yaml.safe_load(values["extraEnvFrom"]),
                    "resources": values[component]["resources"],
                }
            ]
        },
    }

    validate_strictly(pod)
