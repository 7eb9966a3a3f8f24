"""Config section ``pipeline`` of ``params.yaml``: how the Kubeflow pipeline is built, run and submitted.

Owned by the core (the loader assembles it like every section); ``pipelines/`` and ``components/`` read it.

The per-run knobs (model, epochs, batch size, learning rate, GPUs, nodes, registry gate) are also pipeline
parameters: the values here are their defaults in the compiled YAML and can be changed per run without
recompiling.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Kubernetes resource quantities: "2", "500m", "0.5" (CPU); "4Gi", "512M", "1e9" (memory).
_CPU = re.compile(r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?(e[0-9]+|[EPTGMK]i?|k)?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Keys the pipeline's tasks (and TrainJob nodes) read from the Kubernetes secrets, as env variables.
MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")


def image_with_version(image: str) -> str:
    """``registry/name`` -> ``registry/name:<project version>``; a reference with a tag or digest is kept."""
    from mslstm import __version__

    if "@" in image or ":" in image.rsplit("/", 1)[-1]:
        return image
    return f"{image}:{__version__}"


@dataclass
class PipelineConfig:
    """Kubeflow pipeline settings (see docs/pipelines.md)."""

    #: Project image built from the Dockerfile; every component runs from it (``base_image``). Without a tag
    #: (or digest) the tag is the project's version (``mslstm.__version__``, from pyproject.toml).
    image: str = "ghcr.io/mslstm/mslstm-pipeline"
    #: Pipeline name in the KFP UI (lowercase letters, digits, dashes).
    name: str = "mslstm-training"
    #: Experiment that ``mslstm pipeline submit`` files runs under.
    experiment: str = "mslstm"
    #: KFP API endpoint used by ``mslstm pipeline submit`` when ``--host`` is not given ("" = must be given).
    host: str = ""
    #: Compiled pipeline file written by ``mslstm pipeline compile``.
    package: str = "artifacts/pipeline.yaml"
    #: Where ``mslstm pipeline run --local`` keeps the task outputs.
    local_root: str = "artifacts/kfp_local"
    #: Build the ablation variant (ParallelFor over the four models + summary task) instead of the training one.
    ablation: bool = False
    #: Models of the ablation trained at the same time (0 = all at once). ``pipeline run --local`` with a SQLite
    #: MLflow store uses 1: SQLite does not take concurrent writers.
    ablation_parallelism: int = 0
    #: Register the trained model (registry gate; pipeline parameter ``register``).
    register: bool = True
    #: GPUs per node for training (0 = CPU; >1 on one node runs torchrun inside the train task).
    gpus: int = 0
    #: Nodes for training; >1 launches a Kubeflow Trainer TrainJob (runtime ``trainer_runtime``).
    nodes: int = 1
    #: Kubernetes resource name of the accelerator.
    accelerator: str = "nvidia.com/gpu"
    #: CPU / memory requests of the light tasks (data, validate, profile, register, summary).
    cpu_request: str = "1"
    memory_request: str = "2Gi"
    #: CPU / memory requests of the train and evaluate tasks (per node for TrainJobs).
    train_cpu_request: str = "4"
    train_memory_request: str = "16Gi"
    #: Cache the data and validate tasks (same inputs -> reuse outputs).
    cache_data: bool = True
    #: Kubernetes secret holding the MLflow tracking URI (key ``MLFLOW_TRACKING_URI``, plus optional
    #: ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``), exposed as env to the tasks. ``""`` (default):
    #: the S3 secret (``s3_secret``) holds these keys too, so the tasks read every credential from the one secret
    #: they already use for S3; name another secret to keep the MLflow login apart.
    mlflow_secret: str = ""
    #: Kubernetes secret holding S3 access (keys ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    #: ``AWS_ENDPOINT_URL``), exposed as env to the tasks and to TrainJob nodes.
    s3_secret: str = "s3-credentials"
    #: Namespace in which TrainJobs are created (the pipeline's namespace in most installations).
    namespace: str = "kubeflow"
    #: Kubeflow Trainer ClusterTrainingRuntime used by multi-node TrainJobs.
    trainer_runtime: str = "torch-distributed"
    #: Seconds to wait for a TrainJob before the train task fails.
    trainjob_timeout_s: int = 86400
    #: ``mslstm pipeline submit``: seconds to connect to the KFP endpoint and, per API call, to wait for its
    #: answer (each tried once); an endpoint that is down or answers nothing fails in about this long.
    submit_timeout_s: float = 10.0

    def secret_keys(self) -> dict[str, tuple[str, ...]]:
        """Secret name -> the keys the tasks read from it as env variables of the same names: the MLflow keys from
        ``mlflow_secret`` (``""``: from ``s3_secret``) and the S3 keys from ``s3_secret``; one entry when both
        are the same secret."""
        out: dict[str, tuple[str, ...]] = {}
        for name, keys in ((self.mlflow_secret or self.s3_secret, MLFLOW_SECRET_KEYS), (self.s3_secret, S3_SECRET_KEYS)):
            out[name] = out.get(name, ()) + keys
        return out

    def __post_init__(self) -> None:
        if self.image.strip() and not any(c.isspace() for c in self.image):
            self.image = image_with_version(self.image)

    def validate(self) -> None:
        if not self.image.strip() or any(c.isspace() for c in self.image):
            raise ValueError(f"image: must be an image reference like registry/name:tag (got {self.image!r})")
        self.image = image_with_version(self.image)
        for key in ("name", "experiment", "mlflow_secret", "s3_secret", "namespace", "trainer_runtime"):
            value = getattr(self, key)
            if key == "mlflow_secret" and value == "":
                continue  # the S3 secret holds the MLflow keys
            if not _NAME.match(value):
                raise ValueError(f"{key}: must be lowercase letters, digits and dashes (got {value!r})")
        if self.gpus < 0:
            raise ValueError(f"gpus: must be >= 0 (got {self.gpus}); 0 trains on CPU")
        if self.nodes < 1:
            raise ValueError(f"nodes: must be >= 1 (got {self.nodes})")
        for key in ("cpu_request", "train_cpu_request"):
            if not _CPU.match(getattr(self, key)):
                raise ValueError(f"{key}: must be a Kubernetes CPU quantity like '2' or '500m' (got {getattr(self, key)!r})")
        for key in ("memory_request", "train_memory_request"):
            if not _MEMORY.match(getattr(self, key)):
                raise ValueError(f"{key}: must be a Kubernetes memory quantity like '4Gi' (got {getattr(self, key)!r})")
        if not self.accelerator.strip():
            raise ValueError("accelerator: must name the GPU resource, e.g. 'nvidia.com/gpu'")
        if self.ablation_parallelism < 0:
            raise ValueError(f"ablation_parallelism: must be >= 0, 0 = all models at once (got {self.ablation_parallelism})")
        if self.trainjob_timeout_s <= 0:
            raise ValueError(f"trainjob_timeout_s: must be > 0 (got {self.trainjob_timeout_s})")
        if isinstance(self.submit_timeout_s, bool) or not isinstance(self.submit_timeout_s, (int, float)) \
                or not 0 < self.submit_timeout_s < float("inf"):
            raise ValueError(f"submit_timeout_s: must be a positive number of seconds (got {self.submit_timeout_s!r})")
        if self.host and not self.host.startswith(("http://", "https://")):
            raise ValueError(f"host: must start with http:// or https:// (got {self.host!r})")
