"""The Kubeflow Trainer TrainJob manifest (pure function) and the S3 hand-over its nodes use."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.trainjob import (
    build_trainjob,
    check_trainjob_name,
    trainjob_command,
    trainjob_name,
    trainjob_state,
)

IMAGE = "ghcr.io/mslstm/mslstm-pipeline:0.1.0"


def _manifest(**kw):
    args = dict(
        name="mslstm-abc", image=IMAGE, num_nodes=3, gpus_per_node=4, config_json=json.dumps({"train": {"lr": 0.1}}),
        data_uri="s3://bucket/run/data/dataset", out_uri="s3://bucket/run/train/model-trainjob",
        namespace="team-a", secrets={"mlflow-tracking": ["MLFLOW_TRACKING_URI"], "s3-credentials": ["AWS_ACCESS_KEY_ID"]},
    )
    args.update(kw)
    return build_trainjob(**args)


def test_manifest_fields():
    m = _manifest()
    assert m["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert m["kind"] == "TrainJob"
    assert m["metadata"] == {"name": "mslstm-abc", "namespace": "team-a", "labels": {"app.kubernetes.io/part-of": "mslstm"}}
    assert m["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": "torch-distributed"}
    t = m["spec"]["trainer"]
    assert t["image"] == IMAGE
    assert t["numNodes"] == 3
    assert t["numProcPerNode"] == 4
    assert t["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "4"}
    assert t["resourcesPerNode"]["requests"]["nvidia.com/gpu"] == "4"
    assert t["resourcesPerNode"]["requests"]["cpu"] == "4"


def test_command_runs_torchrun_of_mslstm_train():
    cmd = _manifest()["spec"]["trainer"]["command"]
    assert cmd[:2] == ["bash", "-c"]
    script = cmd[2]
    assert "torchrun --nproc-per-node=4 -m mslstm --params /tmp/mslstm/params.yaml train" in script
    assert "--data-dir /tmp/mslstm/data --out /tmp/mslstm/train" in script
    assert "python -m components.trainjob download s3://bucket/run/data/dataset /tmp/mslstm/data" in script
    # only node 0 uploads the result
    assert 'if [ "${PET_NODE_RANK:-0}" = "0" ]; then python -m components.trainjob upload /tmp/mslstm/train s3://bucket/run/train/model-trainjob; fi' in script
    # rendezvous comes from the runtime's PET_* variables, never hard-coded
    assert "--nnodes" not in script and "--master-addr" not in script


def test_config_and_secrets_reach_nodes_as_env_without_values():
    env = _manifest()["spec"]["trainer"]["env"]
    by_name = {e["name"]: e for e in env}
    assert json.loads(by_name["MSLSTM_CONFIG"]["value"]) == {"train": {"lr": 0.1}}
    assert by_name["MLFLOW_TRACKING_URI"] == {
        "name": "MLFLOW_TRACKING_URI",
        "valueFrom": {"secretKeyRef": {"name": "mlflow-tracking", "key": "MLFLOW_TRACKING_URI", "optional": True}},
    }
    assert "value" not in by_name["AWS_ACCESS_KEY_ID"]


def test_cpu_nodes_have_no_gpu_resources_and_one_process():
    t = _manifest(gpus_per_node=0, num_nodes=2)["spec"]["trainer"]
    assert "limits" not in t["resourcesPerNode"]
    assert "nvidia.com/gpu" not in t["resourcesPerNode"]["requests"]
    assert t["numProcPerNode"] == 1
    assert "--nproc-per-node=1 " in t["command"][2]


def test_uris_are_shell_quoted():
    script = trainjob_command("s3://b/has space", "s3://b/out", 1)[2]
    assert "'s3://b/has space'" in script


@pytest.mark.parametrize("kw, key", [({"num_nodes": 0}, "num_nodes"), ({"gpus_per_node": -1}, "gpus_per_node")])
def test_bad_sizes_are_refused(kw, key):
    with pytest.raises(ValueError, match=key):
        _manifest(**kw)


def test_trainjob_state_from_conditions():
    assert trainjob_state({}) is None
    assert trainjob_state({"status": {"conditions": [{"type": "Created", "status": "True"}]}}) is None
    assert trainjob_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "Complete"
    assert trainjob_state({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "Failed"
    assert trainjob_state({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}) is None


SCHEMA = Path(__file__).parent / "data" / "trainjob.schema.json"   # from the Trainer CRD; source in its $comment


def _validator():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize("kw", [{}, {"gpus_per_node": 0, "num_nodes": 1, "secrets": None}])
def test_manifest_validates_against_the_trainjob_crd_schema(kw):
    v = _validator()
    m = _manifest(**kw)
    assert [e.message for e in v.iter_errors(m)] == []
    # the schema bites: a misspelled field, a string node count, a bad quantity, an env var without a name
    for path, value in [(("spec", "trainer", "numNode"), 3), (("spec", "trainer", "numNodes"), "3"),
                        (("spec", "trainer", "resourcesPerNode", "requests", "cpu"), "four"),
                        (("spec", "runtimeRef", "name"), "")]:
        bad = json.loads(json.dumps(m))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert list(v.iter_errors(bad)), path
    bad = json.loads(json.dumps(m))
    bad["spec"]["trainer"]["env"].append({"value": "x"})
    assert list(v.iter_errors(bad))


def test_generated_names_are_valid_rfc1035_labels():
    import re

    rule = re.compile(json.loads(SCHEMA.read_text())["properties"]["metadata"]["properties"]["name"]["pattern"])
    names = {trainjob_name() for _ in range(50)}
    assert len(names) == 50                                   # fresh each time
    for name in names:
        assert rule.match(name) and len(name) <= 63, name
        assert _manifest(name=name)["metadata"]["name"] == name
    # a hex suffix may start with a digit: the prefix keeps the first character a letter
    assert all(n.startswith("mslstm-") for n in names)


@pytest.mark.parametrize("name", ["MSLSTM-abc", "1abc", "abc-", "a_b", "a.b", "", "a" * 64, "mslstm abc"])
def test_invalid_names_are_refused_before_any_api_call(name):
    with pytest.raises(ValueError, match="^name: "):
        _manifest(name=name)
    assert check_trainjob_name("a" * 63) == "a" * 63


def test_s3_hand_over_round_trip(s3_bucket, tmp_path):
    """What node 0 uploads is what the train task downloads into its Model artifact (real moto S3)."""
    from components.trainjob import main
    from mslstm.data.s3 import download_dir, upload_dir
    from mslstm.errors import StorageError

    src = tmp_path / "train"
    (src / "sub").mkdir(parents=True)
    (src / "best.pt").write_bytes(b"\x00\x01weights")
    (src / "sub" / "history.csv").write_text("epoch,train_loss\n1,0.5\n")
    uri = f"s3://{s3_bucket}/runs/1/model-trainjob"
    assert upload_dir(src, uri) == 2
    dst = tmp_path / "model"
    assert main(["download", uri, str(dst)]) == 0
    assert (dst / "best.pt").read_bytes() == b"\x00\x01weights"
    assert (dst / "sub" / "history.csv").read_text() == "epoch,train_loss\n1,0.5\n"
    with pytest.raises(StorageError, match="no objects"):
        download_dir(f"s3://{s3_bucket}/nothing-here", tmp_path / "x")
    with pytest.raises(StorageError, match="s3://"):
        download_dir("/local/path", tmp_path / "x")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_node_command_runs_for_real(s3_bucket, s3_env, tiny_dataset, tmp_path):
    """What each TrainJob node runs, run here as node 0 of 1 (PET_* as the torch-distributed runtime sets them):
    download the dataset from S3, torchrun -m mslstm train, upload the training folder."""
    import os
    import subprocess
    import sys

    from mslstm.config import load_config
    from mslstm.data.s3 import download_dir, upload_dir

    cfg = load_config(None, {
        "data.input_frames": 3, "data.output_frames": 3,
        "model.input_frames": 3, "model.output_frames": 3, "model.frame_size": [16, 16], "model.hidden": 4,
        "model.layers": 2, "model.scales": [1, 1], "model.patch_size": 4,
        "train.epochs": 1, "train.batch_size": 4, "train.max_steps": 2, "train.progress": "quiet", "train.device": "cpu",
        "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "tracking.system_metrics": False,
        "tracking.log_model": False, "tracking.log_checkpoint": False,
    })
    data_uri, out_uri = f"s3://{s3_bucket}/run/dataset", f"s3://{s3_bucket}/run/model-trainjob"
    upload_dir(tiny_dataset, data_uri)
    m = build_trainjob(name="local", image=IMAGE, num_nodes=1, gpus_per_node=0, config_json=json.dumps(cfg.to_dict()),
                       data_uri=data_uri, out_uri=out_uri)
    command = trainjob_command(data_uri, out_uri, 0, workdir=str(tmp_path / "node"))
    assert m["spec"]["trainer"]["command"][2].replace("/tmp/mslstm", str(tmp_path / "node")) == command[2]
    node_env = {e["name"]: e["value"] for e in m["spec"]["trainer"]["env"] if "value" in e}
    env = {**os.environ, **node_env, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
           "PET_NNODES": "1", "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": "0",
           "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = tmp_path / "got"
    download_dir(out_uri, got)
    for name in ("best.pt", "last.pt", "metrics.json", "history.csv", "run.json"):
        assert (got / name).is_file(), name
    assert json.loads((got / "metrics.json").read_text())["steps"] == 2
