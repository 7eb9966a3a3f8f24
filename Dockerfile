# syntax=docker/dockerfile:1
# The project image: every Kubeflow pipeline component and every TrainJob node runs from it.
#   docker build -t ghcr.io/mslstm/mslstm-pipeline:0.1.0 .
# CUDA runtime base; torch==2.13.0 (pinned in pyproject.toml) comes from PyPI as the CUDA 12 build.
# No secrets: MLflow and S3 access reach containers as env from Kubernetes secrets at run time.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Python and git (DVC needs git); the distribution's current security patches rather than fixed versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV"

# The package and its pinned dependencies (pyproject.toml); KFP's lightweight components run `python3`,
# which is this venv's interpreter (first on PATH).
WORKDIR /opt/mslstm
COPY pyproject.toml README.md ./
COPY model ./model
COPY mslstm ./mslstm
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-cache-dir . \
    && python -c "import mslstm, model, components, pipelines, kfp, torch" \
    && mslstm --help > /dev/null

# Run as an unprivileged user in a writable working directory holding the embedded default config.
RUN groupadd --gid 10001 mslstm \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin mslstm \
    && mkdir -p /workspace \
    && chown mslstm:mslstm /workspace
COPY --chown=mslstm:mslstm params.yaml /workspace/params.yaml
USER 10001:10001
WORKDIR /workspace

# No ENTRYPOINT: KFP runs `sh -c ... python3 -m kfp.dsl.executor_main`, TrainJobs run torchrun.
CMD ["mslstm", "--help"]
