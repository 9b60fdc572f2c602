# syntax=docker/dockerfile:1
# The base image of kinflow task pods: Python and the `kinflow` distribution
# (core only: the SDK and `python -m kinflow.runner`; no kopf, no kubernetes
# client). Your workflow code goes on top, under /app (see images/README.md).
# Build from the repository root (the context must be the root):
#   docker build -f images/task.Dockerfile -t kinflow-task:dev .
# The operator runs task containers with `python -m kinflow.runner`.

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
 && /opt/kinflow/bin/pip install .

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="kinflow-task" \
      org.opencontainers.image.description="kinflow task base image: build your workflow image FROM it" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/kinflow /opt/kinflow
ENV PATH=/opt/kinflow/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /app
# The examples, so `kinflow run examples.fanout:parent_wf` works with the default
# image; your own image adds its modules next to them.
COPY examples/ /app/examples/
USER 65532:65532
CMD ["python", "-m", "kinflow.runner"]
