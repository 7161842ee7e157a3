# syntax=docker/dockerfile:1
# The Airflow image of docker-compose.yaml and of the Helm chart (images.airflow): the official
# Airflow 3.3.2 image plus this project's pinned requirements and trading_lib.
#
#   docker build -t trading-airflow:0.1.0 .
#
# The bundle (dags/, plugins/) is baked in for the Helm chart's KubernetesExecutor pods; compose
# mounts the working tree over it, and the chart's git-sync can replace dags/.
FROM apache/airflow:3.3.2-python3.11

# The pinned set resolved for this project (requirements.txt). Pinning apache-airflow on the same
# command line keeps pip from moving the image's Airflow (the official "extend the image" recipe).
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /opt/airflow/requirements.txt

# trading_lib and trading_airflow as a regular (non-editable) package: the DAGs, the tasks and the
# plugin (in the api-server) import them; parse-time imports stay light.
COPY --chown=airflow:0 pyproject.toml README.md /opt/trading-lib/
COPY --chown=airflow:0 trading_lib /opt/trading-lib/trading_lib
COPY --chown=airflow:0 trading_airflow /opt/trading-lib/trading_airflow
RUN pip install --no-cache-dir --no-deps /opt/trading-lib

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
