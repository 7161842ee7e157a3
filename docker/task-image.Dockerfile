# syntax=docker/dockerfile:1
# The KubernetesPodOperator task image: trading_lib and its pinned runtime (requirements-task.txt),
# no Airflow. Each partition pod runs `python -m trading_lib analyze-partition --contract C --timestamp T`.
#
#   docker build -f docker/task-image.Dockerfile -t trading-task:0.1.0 .
#
# Two stages: the builder compiles whatever has no wheel into a virtualenv; the final stage copies
# only that virtualenv onto a clean slim base, so no compiler or header ends up in the image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# Dependencies first: this layer is rebuilt only when the pins change, not on every code edit.
COPY requirements-task.txt /build/requirements-task.txt
RUN /opt/venv/bin/pip install --no-deps -r /build/requirements-task.txt
COPY pyproject.toml README.md /build/
COPY trading_lib /build/trading_lib
RUN /opt/venv/bin/pip install --no-deps /build \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -m pip uninstall -y pip

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="trading-task" \
      org.opencontainers.image.description="Partition entry point of the trading pipeline (python -m trading_lib)" \
      org.opencontainers.image.licenses="Apache-2.0"
# uid/gid 10001: the pod's securityContext (trading_airflow/kubernetes_pods.py TASK_IMAGE_UID) runs as it.
RUN groupadd --system --gid 10001 trading \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin trading
COPY --from=builder /opt/venv /opt/venv
# The root filesystem is read-only in the pod: bytecode was compiled at install, HOME is the /tmp emptyDir.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["python", "-m", "trading_lib"]
CMD ["--help"]
