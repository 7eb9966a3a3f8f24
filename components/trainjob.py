"""Multi-node training through the Kubeflow Trainer: a ``TrainJob`` manifest (pure) and a launcher that waits.

The ``torch-distributed`` runtime starts ``num_nodes`` pods and sets the torchrun rendezvous environment on each
(``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``, ``PET_MASTER_PORT``), which
``torchrun`` reads as its defaults. Each node downloads the dataset artifact from S3, runs
``torchrun -m mslstm train``, and node 0 uploads the training directory to ``out_uri``; the pipeline's train task
then downloads it into its ``Model`` artifact (see :func:`run_trainjob`).

Runs in the project image: inside the ``train_trainjob`` component (manifest, launch, wait) and on every node
(the folder copies, through :mod:`mslstm.data.s3`):

    python -m components.trainjob download s3://bucket/prefix local_dir
    python -m components.trainjob upload local_dir s3://bucket/prefix

Credentials and endpoint come from the environment only (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL``), i.e. from the Kubernetes secret the pods mount as env.
"""
from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

API_GROUP = "trainer.kubeflow.org"
API_VERSION = "v1alpha1"
PLURAL = "trainjobs"

WORKDIR = "/tmp/mslstm"
# The TrainJob CRD's rule for metadata.name (x-kubernetes-validations): an RFC 1035 label of at most 63 characters.
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def trainjob_name(prefix: str = "mslstm") -> str:
    """A fresh TrainJob name: ``<prefix>-<10 hex digits>`` (valid under the CRD's RFC 1035 rule)."""
    import uuid

    return check_trainjob_name(f"{prefix}-{uuid.uuid4().hex[:10]}")


def check_trainjob_name(name: str) -> str:
    """``name`` when the TrainJob CRD accepts it (RFC 1035 label, <= 63 characters); else ``ValueError("name: ...")``
    before anything reaches the API server."""
    if not isinstance(name, str) or len(name) > 63 or not NAME_RE.match(name):
        raise ValueError(f"name: {name!r} is not a valid TrainJob name: lower-case letters, digits and '-', starting "
                         "with a letter, ending with a letter or digit, at most 63 characters (RFC 1035 label)")
    return name


def trainjob_command(data_uri: str, out_uri: str, gpus_per_node: int, workdir: str = WORKDIR) -> list[str]:
    """The per-node command: fetch data, ``torchrun -m mslstm train``, node 0 uploads the result.

    Args:
        data_uri: S3 URI of the processed dataset directory (the pipeline's ``Dataset`` artifact).
        out_uri: S3 URI where node 0 uploads the training directory (checkpoints, metrics, run.json).
        gpus_per_node: processes per node (one per GPU; at least 1).
        workdir: scratch folder on the node.

    Returns:
        ``["bash", "-c", script]`` for the trainer container.
    """
    nproc = max(1, int(gpus_per_node))
    q = shlex.quote
    w = q(workdir)
    script = " && ".join(
        [
            "set -euo pipefail",
            f"mkdir -p {w}",
            f'printf "%s" "$MSLSTM_CONFIG" > {w}/params.yaml',
            f"python -m components.trainjob download {q(data_uri)} {w}/data",
            # --nnodes/--node-rank/--master-* come from the PET_* variables the torch-distributed runtime sets.
            f"torchrun --nproc-per-node={nproc} -m mslstm --params {w}/params.yaml "
            f"train --data-dir {w}/data --out {w}/train",
            f'if [ "${{PET_NODE_RANK:-0}}" = "0" ]; then python -m components.trainjob upload {w}/train {q(out_uri)}; fi',
        ]
    )
    return ["bash", "-c", script]


def build_trainjob(
    *,
    name: str,
    image: str,
    num_nodes: int,
    gpus_per_node: int,
    config_json: str,
    data_uri: str,
    out_uri: str,
    namespace: str = "kubeflow",
    runtime: str = "torch-distributed",
    accelerator: str = "nvidia.com/gpu",
    cpu_request: str = "4",
    memory_request: str = "16Gi",
    secrets: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Build the ``TrainJob`` manifest (a plain dict ready for the Kubernetes API).

    Args:
        name: TrainJob name (RFC 1035 label, <= 63 characters; :func:`trainjob_name` makes one).
        image: project image (the same one the pipeline components use).
        num_nodes: number of training nodes (pods).
        gpus_per_node: GPUs per node (0 = CPU nodes, one process each).
        config_json: the validated config as JSON; reaches each node as ``MSLSTM_CONFIG``.
        data_uri: S3 URI of the dataset artifact.
        out_uri: S3 URI where node 0 uploads the training directory.
        namespace: namespace of the TrainJob.
        runtime: name of the ClusterTrainingRuntime (``torch-distributed``).
        accelerator: Kubernetes resource name of the GPU.
        cpu_request: CPU request per node.
        memory_request: memory request per node.
        secrets: secret name -> keys, each exposed as an env variable of the same name on every node
            (MLflow and S3 access; never written into the manifest as values).

    Returns:
        The manifest dict.
    """
    check_trainjob_name(name)
    if num_nodes < 1:
        raise ValueError(f"num_nodes: must be >= 1 (got {num_nodes})")
    if gpus_per_node < 0:
        raise ValueError(f"gpus_per_node: must be >= 0 (got {gpus_per_node})")
    resources: dict[str, Any] = {"requests": {"cpu": cpu_request, "memory": memory_request}}
    if gpus_per_node > 0:
        resources["limits"] = {accelerator: str(gpus_per_node)}
        resources["requests"][accelerator] = str(gpus_per_node)
    env: list[dict[str, Any]] = [
        {"name": "MSLSTM_CONFIG", "value": config_json},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    for secret, keys in (secrets or {}).items():
        for key in keys:
            env.append(
                {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
            )
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "mslstm"}},
        "spec": {
            "runtimeRef": {"apiGroup": API_GROUP, "kind": "ClusterTrainingRuntime", "name": runtime},
            "trainer": {
                "image": image,
                "command": trainjob_command(data_uri, out_uri, gpus_per_node),
                "numNodes": int(num_nodes),
                "numProcPerNode": max(1, int(gpus_per_node)),
                "resourcesPerNode": resources,
                "env": env,
            },
        },
    }


def trainjob_state(obj: dict[str, Any]) -> str | None:
    """``"Complete"`` / ``"Failed"`` from a TrainJob's status conditions, else None (still running)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"]
    return None


def run_trainjob(
    manifest: dict[str, Any],
    timeout_s: float,
    poll_s: float = 15.0,
    api: Any | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Create the TrainJob through the Kubernetes API and wait until it completes.

    Args:
        manifest: from :func:`build_trainjob`.
        timeout_s: seconds to wait before giving up (the TrainJob is deleted then).
        poll_s: seconds between status polls.
        api: a ``kubernetes.client.CustomObjectsApi`` (default: in-cluster config, else kubeconfig).
        sleep: injectable sleep.

    Returns:
        The final TrainJob object.

    Raises:
        RuntimeError: the TrainJob failed or timed out.
    """
    if api is None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api = client.CustomObjectsApi()
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    api.create_namespaced_custom_object(API_GROUP, API_VERSION, ns, PLURAL, manifest)
    log.info("created TrainJob %s/%s (%d nodes)", ns, name, manifest["spec"]["trainer"]["numNodes"])
    deadline = time.monotonic() + timeout_s
    while True:
        obj = api.get_namespaced_custom_object(API_GROUP, API_VERSION, ns, PLURAL, name)
        state = trainjob_state(obj)
        if state == "Complete":
            log.info("TrainJob %s/%s complete", ns, name)
            return obj
        if state == "Failed":
            raise RuntimeError(f"TrainJob {ns}/{name} failed: {obj.get('status')}")
        if time.monotonic() > deadline:
            api.delete_namespaced_custom_object(API_GROUP, API_VERSION, ns, PLURAL, name)
            raise RuntimeError(f"TrainJob {ns}/{name}: not complete after {timeout_s:.0f} s (deleted)")
        sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    """The node-side folder copies: ``download URI DIR`` / ``upload DIR URI`` (exit 2 with one line on error)."""
    from mslstm.data.s3 import download_dir, upload_dir
    from mslstm.errors import StorageError

    parser = argparse.ArgumentParser(prog="python -m components.trainjob",
                                     description="copy a folder to/from S3 on a TrainJob node")
    sub = parser.add_subparsers(dest="op", required=True)
    d = sub.add_parser("download", help="every object under URI into DIR")
    d.add_argument("uri")
    d.add_argument("local")
    u = sub.add_parser("upload", help="every file under DIR to URI")
    u.add_argument("local")
    u.add_argument("uri")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.op == "download":
            download_dir(args.uri, args.local)
        else:
            upload_dir(args.local, args.uri)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
