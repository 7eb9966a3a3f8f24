# syntax=docker/dockerfile:1
# The project image: every Kubeflow pipeline component and every TrainJob node runs from it.
#   docker build -t ghcr.io/mslstm/mslstm-pipeline:0.1.0 .           (the tag is the version in pyproject.toml)
#   mslstm image build                                                 (the same build with buildah, no Docker daemon)
# CUDA base; torch==2.13.0 (pinned in pyproject.toml) comes from PyPI as the CUDA build, which brings its own CUDA
# and cuDNN libraries (nvidia-* wheels), so the small `base` variant is enough: the driver comes from the node.
# Any Debian/Ubuntu base with apt works (the tests build on a local Debian bookworm one):
#   --build-arg BASE_IMAGE=debian:bookworm-slim --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# No secrets: MLflow and S3 access reach containers as env from Kubernetes secrets at run time.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
FROM ${BASE_IMAGE}

# Where pip finds packages (all optional): another index, extra indexes, a folder of wheels, a CA bundle (the last two
# mounted at build time, as `mslstm image build` does).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT

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
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && python3 -m venv "$VIRTUAL_ENV"

# The package and its pinned dependencies (pyproject.toml); KFP's lightweight components run `python3`,
# which is this venv's interpreter (first on PATH). The sources are removed once installed (site-packages has them).
WORKDIR /opt/mslstm
COPY pyproject.toml README.md ./
COPY model ./model
COPY mslstm ./mslstm
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-cache-dir . \
    && python -c "import mslstm, model, components, pipelines, kfp, torch" \
    && mslstm --help > /dev/null \
    && rm -rf /opt/mslstm /root/.cache /tmp/*

# Run as an unprivileged user in a writable working directory holding the embedded default config.
WORKDIR /workspace
RUN groupadd --gid 10001 mslstm \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin mslstm \
    && chown mslstm:mslstm /workspace
COPY --chown=mslstm:mslstm params.yaml /workspace/params.yaml
COPY --chown=mslstm:mslstm configs /workspace/configs
USER 10001:10001
ENV HOME=/home/mslstm

# No ENTRYPOINT: KFP runs `sh -c ... python3 -m kfp.dsl.executor_main`, TrainJobs run torchrun.
CMD ["mslstm", "--help"]
