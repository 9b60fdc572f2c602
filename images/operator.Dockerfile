# syntax=docker/dockerfile:1
# The kinflow operator image: the `kinflow` distribution with the operator extra
# (kopf, kubernetes, prometheus-client), run as `kinflow operator`.
# Build from the repository root (the context must be the root):
#   docker build -f images/operator.Dockerfile -t kinflow-operator:dev .
# The Helm chart runs it with command `kinflow operator` and its own args.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runner/ runner/
COPY operator/ operator/
COPY devcluster/ devcluster/
COPY cli/ cli/
RUN python -m venv /opt/kinflow \
 && /opt/kinflow/bin/pip install ".[operator]"

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="kinflow-operator" \
      org.opencontainers.image.description="kinflow operator (kopf): reconciles WorkflowRuns into Jobs" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/kinflow /opt/kinflow
ENV PATH=/opt/kinflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A numeric non-root user, so `runAsNonRoot: true` can verify it without a passwd entry.
USER 65532:65532
WORKDIR /tmp
# kopf's health endpoint (the chart's liveness and readiness probes).
EXPOSE 8080
ENTRYPOINT ["kinflow"]
CMD ["operator", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
