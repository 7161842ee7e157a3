"""docker-compose.yaml, checked statically (no Docker engine runs here): it parses, every file it
points at exists, services and profiles hang together, the pipeline settings it sets are ones
trading_lib reads and accepts, and the local stacks (scripts/local_airflow.py, scripts/celery_stack.py)
run with the same settings: all of them read docker/airflow.env."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from celery_stack import COMPOSE_ADDRESSES, WORKERS, CeleryAirflow, substitute
from local_airflow import SHARED_ENV_FILE, WIRING, LocalAirflow, read_env_file

from trading_lib.settings import ENVIRONMENT_VARIABLES, load_settings

PROJECT = Path(__file__).resolve().parents[2]

COMPOSE_FILE = PROJECT / "docker-compose.yaml"
CELERY_ENV_FILE = PROJECT / "docker" / "celery.env"
# Every file a deployment sets variables in.
DEPLOYMENT_FILES = [
    COMPOSE_FILE,
    CELERY_ENV_FILE,
    SHARED_ENV_FILE,
    PROJECT / "Dockerfile",
    PROJECT / "docker" / "task-image.Dockerfile",
    PROJECT / "deploy" / "helm" / "values.yaml",
    *sorted((PROJECT / "deploy" / "kubernetes").glob("*.yaml")),
]
AIRFLOW_COMPONENTS = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
CELERY_SERVICES = ["redis", "airflow-worker"]
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's variable substitution (${VAR}, ${VAR:-default}, ${VAR-default}, $$)."""

    def substitute(match: re.Match) -> str:
        name, op, default = match["name"], match["op"], match["default"]
        if op == ":-":
            return environ.get(name) or default
        if op == "-":
            return environ.get(name, default)
        return environ.get(name, "")

    return INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def service_environment(service: dict, environ: dict[str, str] | None = None) -> dict[str, str]:
    """What a container of the service gets: its env_file(s), then its environment (which wins)."""
    merged: dict[str, str] = {}
    for env_file in service.get("env_file", []):
        merged.update(read_env_file(PROJECT / env_file))
    for key, value in service.get("environment", {}).items():
        merged[key] = interpolate(str(value), environ or {})
    return merged


def test_compose_defines_the_stack(services):
    expected = {"postgres", "seaweedfs", "s3-init", "airflow-init", *AIRFLOW_COMPONENTS, *CELERY_SERVICES}
    assert expected <= set(services)


def test_build_contexts_and_dockerfiles_exist(services):
    builds = {name: service["build"] for name, service in services.items() if "build" in service}
    assert builds, "no service builds the repository's image"
    for name, build in builds.items():
        context = PROJECT / build["context"]
        assert context.is_dir(), f"{name}: build context {build['context']} is missing"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile missing"


def test_mounted_host_paths_exist(compose, services):
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (PROJECT / source).exists(), f"{name}: mounted {source} does not exist"
            else:
                assert source in named_volumes, f"{name}: volume {source} is not declared"


def test_referenced_files_exist(services):
    init = services["s3-init"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in init["volumes"]}
    script = init["entrypoint"][-1]
    assert script in mounted, "the s3-init script is not mounted into the container"
    assert (PROJECT / mounted[script]).is_file()
    assert CELERY_ENV_FILE.is_file()
    assert "docker/celery.env" in COMPOSE_FILE.read_text()


def test_depends_on_names_existing_services(services):
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert dependency != name


def test_airflow_components_use_the_repository_image_and_wait_for_migrations(services):
    for name in [*AIRFLOW_COMPONENTS, "airflow-worker"]:
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_celery_profile_holds_redis_and_the_worker_only(services):
    in_celery = {name for name, service in services.items() if "celery" in service.get("profiles", [])}
    assert in_celery == set(CELERY_SERVICES)
    assert services["airflow-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_executor_is_local_by_default_and_celery_with_the_env_file(services):
    scheduler = services["airflow-scheduler"]
    assert service_environment(scheduler)["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"

    celery_env = read_env_file(CELERY_ENV_FILE)
    assert service_environment(scheduler, celery_env)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert celery_env["COMPOSE_PROFILES"] == "celery"
    # Every component runs with the same executor (they share the environment anchor).
    executors = {
        service_environment(services[n], celery_env)["AIRFLOW__CORE__EXECUTOR"] for n in AIRFLOW_COMPONENTS
    }
    assert executors == {"CeleryExecutor"}


def test_execution_api_url_points_at_the_api_server(services):
    url = urlparse(
        service_environment(services["airflow-scheduler"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    )
    assert url.hostname in services
    assert f"{url.port}:{url.port}" in services[url.hostname]["ports"]
    assert url.path == "/execution/"


def test_aws_connection_reaches_seaweedfs_with_its_credentials(services):
    environment = service_environment(services["airflow-scheduler"])
    connection = json.loads(environment["AIRFLOW_CONN_AWS_DEFAULT"])

    assert connection["conn_type"] == "aws"
    endpoint = urlparse(connection["extra"]["endpoint_url"])
    assert endpoint.hostname == "seaweedfs" and endpoint.port == 8333
    assert services["seaweedfs"]["image"].startswith("chrislusf/seaweedfs:")
    seaweed_env = service_environment(services["seaweedfs"])
    assert (connection["login"], connection["password"]) == (
        seaweed_env["AWS_ACCESS_KEY_ID"],
        seaweed_env["AWS_SECRET_ACCESS_KEY"],
    )
    init_env = service_environment(services["s3-init"])
    assert init_env["AWS_ENDPOINT_URL"] == connection["extra"]["endpoint_url"]
    assert init_env["AWS_ACCESS_KEY_ID"] == connection["login"]


def test_pipeline_settings_are_accepted_by_trading_lib(services):
    environment = service_environment(services["airflow-scheduler"])
    settings = load_settings({k: v for k, v in environment.items() if k.startswith("TRADING_")})

    assert settings.is_s3
    assert settings.aws_conn_id == "aws_default"
    assert f"AIRFLOW_CONN_{settings.aws_conn_id.upper()}" in environment
    assert settings.execution_mode == "local"


@pytest.mark.parametrize("path", DEPLOYMENT_FILES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_trading_variable_is_a_known_setting(path):
    assert path.is_file(), f"{path} is missing"
    names = set(re.findall(r"\bTRADING_[A-Z0-9_]+", path.read_text()))

    unknown = sorted(names - set(ENVIRONMENT_VARIABLES))
    assert unknown == [], f"{path.name} sets variables trading_lib does not read: {unknown}"


# -- one source of configuration: docker/airflow.env, read by compose and by the local stacks -------
AIRFLOW_SERVICES = [*AIRFLOW_COMPONENTS, "airflow-worker", "airflow-init", "s3-init"]
# What compose sets itself, and why the local stacks differ there.
COMPOSE_ONLY = {
    "AIRFLOW__CORE__EXECUTOR": "switched by AIRFLOW_EXECUTOR (docker/celery.env); checked below",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "compose: no login; local stacks: a generated password",
    "AIRFLOW__CORE__FERNET_KEY": "compose: empty placeholder; local stacks: Airflow's default",
    "AIRFLOW__API_AUTH__JWT_SECRET": "a secret: placeholder in compose, generated per local home",
    "AIRFLOW__API__SECRET_KEY": "a secret: placeholder in compose, generated per local home",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "the container healthcheck's server on the fixed port 8974",
    "TRADING_ORCHESTRATOR_SCHEDULE": "none unless set, in both (local stacks: tests/scripts)",
    "PYTHONPATH": "the mounted source tree of the image; locally trading_lib is installed editable",
    "DUMB_INIT_SETSID": "the image's init (warm shutdown of the Celery worker)",
    "_AIRFLOW_DB_MIGRATE": "airflow-init's migration; local stacks run `airflow db migrate`",
}


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory) -> CeleryAirflow:
    # env() only: nothing is started (the ports are picked and kept in the home).
    return CeleryAirflow(tmp_path_factory.mktemp("celery-home"), 18321)


def test_every_airflow_service_reads_the_shared_env_file_and_does_not_override_it(services):
    shared = read_env_file(SHARED_ENV_FILE)
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service.get("env_file") == ["docker/airflow.env"], f"{name} does not read docker/airflow.env"
        overridden = sorted(set(service.get("environment", {})) & set(shared))
        assert overridden == [], f"{name} overrides shared settings in docker-compose.yaml: {overridden}"
        unexplained = sorted(set(service.get("environment", {})) - set(COMPOSE_ONLY) - {"AWS_ENDPOINT_URL"})
        if name == "s3-init":  # the AWS_* environment of the CLI path, checked against the connection above
            unexplained = [k for k in unexplained if not k.startswith("AWS_")]
        assert unexplained == [], f"{name} sets {unexplained} outside docker/airflow.env"


def test_shared_env_file_has_no_compose_interpolation():
    # Compose would substitute ${...} from the caller's shell, the local stacks would not.
    assert [k for k, v in read_env_file(SHARED_ENV_FILE).items() if "$" in v] == []
    assert set(WIRING) <= set(read_env_file(SHARED_ENV_FILE))


def test_celery_stack_runs_with_composes_settings_on_its_own_ports(services, celery_stack):
    local = celery_stack.env()
    addresses = celery_stack.addresses()
    celery_env = read_env_file(CELERY_ENV_FILE)
    for name in AIRFLOW_COMPONENTS:
        compose = service_environment(services[name], celery_env)
        for key, value in compose.items():
            if key in COMPOSE_ONLY:
                continue
            assert local.get(key) == substitute(value, addresses), f"{name}: {key} differs"
        assert local["AIRFLOW__CORE__EXECUTOR"] == compose["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # Every compose service address became one of this stack's loopback ports.
    for key in WIRING:
        assert not any(address in local[key] for address in COMPOSE_ADDRESSES), key
    ports = celery_stack.service_ports()
    assert f"@127.0.0.1:{ports['postgres']}/airflow" in local["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert f"@127.0.0.1:{ports['postgres']}/airflow" in local["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert local["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:@127.0.0.1:{ports['redis']}/0"
    endpoint = json.loads(local["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"]
    assert endpoint == f"http://127.0.0.1:{ports['s3.port']}"
    assert (
        local["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{celery_stack.port}/execution/"
    )


def test_celery_workers_differ_from_composes_worker_only_in_their_names_and_log_ports(services, celery_stack):
    compose = service_environment(services["airflow-worker"], read_env_file(CELERY_ENV_FILE))
    base = celery_stack.env()
    log_ports = set()
    for worker in WORKERS:
        env = celery_stack.worker_env(base, worker)
        differing = {k for k in set(env) | set(base) if env.get(k) != base.get(k)}
        assert differing == {
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE",
            "LOCAL_AIRFLOW_HOSTNAME",
        }
        log_ports.add(env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"])
        for key, value in compose.items():
            if key not in COMPOSE_ONLY:
                assert env[key] == substitute(value, celery_stack.addresses()), f"{worker}: {key}"
    assert len(log_ports) == len(WORKERS), "two log servers on one machine need two ports"


@pytest.mark.parametrize(("db", "url"), [("postgres", "postgresql+psycopg2://"), ("sqlite", "sqlite:///")])
def test_local_stack_shares_composes_tuning(services, tmp_path, db, url):
    compose = service_environment(services["airflow-scheduler"])
    local = LocalAirflow(tmp_path / "home", 18322, str(tmp_path / "data"), db=db).env()
    for key, value in compose.items():
        if key not in COMPOSE_ONLY and key not in WIRING:
            assert local[key] == value, key
    assert local["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert local["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(url)


def test_seaweedfs_keys_are_the_connections(services, celery_stack):
    connection = json.loads(read_env_file(SHARED_ENV_FILE)["AIRFLOW_CONN_AWS_DEFAULT"])
    seaweed = service_environment(services["seaweedfs"])
    assert (seaweed["AWS_ACCESS_KEY_ID"], seaweed["AWS_SECRET_ACCESS_KEY"]) == (
        connection["login"],
        connection["password"],
    )
    aws = celery_stack.aws_env()
    assert aws["AWS_ACCESS_KEY_ID"] == connection["login"]
    assert aws["AWS_SECRET_ACCESS_KEY"] == connection["password"]
