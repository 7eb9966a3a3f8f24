"""The project image for real: built from the Dockerfile of a clean copy of the repository with buildah (no Docker
daemon), then every step component of the compiled pipeline and the TrainJob node command run inside it.

The component commands are not written here: the training pipeline is compiled with the project's compile function,
and each task's executor ``command``/``args`` from the YAML run in the image with an executor input made as KFP makes
it (``kfp.local``'s own helpers), on the single-node path of the DAG (data, validate, profile, train, evaluate,
register). Outputs land where KFP puts them; the MLflow run and the registered model version exist afterwards.
The TrainJob node command (``torchrun`` with 2 processes, S3 on moto at 127.0.0.1) runs in the image too.

Needs root, ``buildah``, ``podman`` and ``mmdebstrap`` (``.ci/run`` installs them) and a Debian mirror and PyPI;
the local pip sources of this machine (``pip config``: the CPU torch wheel) are mounted into the build. The Debian
base is cached (~/.cache/mslstm-image). Build and run times are printed (``-s``). ``MSLSTM_TEST_IMAGE=<ref>`` runs the
in-image checks against an image already built (a shortcut while developing; CI builds).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from graphlib import TopologicalSorter
from pathlib import Path

import pytest
import yaml

from test_pipeline_helpers import tiny_params

ROOT = Path(__file__).resolve().parents[1]
UID = 10001  # the Dockerfile's USER
STEPS = {"data", "validate", "train", "evaluate", "profile", "register"}


def _pyproject_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _executor_images(spec: dict) -> dict[str, str]:
    return {name: ex["container"]["image"] for name, ex in spec["deploymentSpec"]["executors"].items()}


@pytest.mark.parametrize("ablation", [False, True])
def test_compiled_tasks_name_the_versioned_image(tmp_path, ablation):
    """The default image tag is the project's version (pyproject.toml): no hand-edited tag to drift."""
    from pipelines.runner import compile_pipeline
    from mslstm.config import load_config

    cfg = load_config(ROOT / "params.yaml")
    expected = f"ghcr.io/mslstm/mslstm-pipeline:{_pyproject_version()}"
    assert cfg.pipeline.image == expected
    spec = next(d for d in yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml", ablation).read_text()) if d)
    images = _executor_images(spec)
    assert images and set(images.values()) == {expected}, images
    # one image for components and TrainJob nodes: no run parameter can make them differ
    assert "image" not in spec["root"].get("inputDefinitions", {}).get("parameters", {})


def test_image_reference_tagging():
    from mslstm import __version__
    from mslstm.pipeline_config import image_with_version

    assert image_with_version("localhost:5000/team/mslstm") == f"localhost:5000/team/mslstm:{__version__}"
    assert image_with_version("ghcr.io/x/y:v2") == "ghcr.io/x/y:v2"
    assert image_with_version("ghcr.io/x/y@sha256:" + "0" * 64) == "ghcr.io/x/y@sha256:" + "0" * 64


def test_local_pip_index_mounts_its_root(tmp_path):
    from mslstm.image import ImageError, build_args_and_mounts

    (tmp_path / "idx" / "simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    args, mounts = build_args_and_mounts([str(tmp_path / "wheels")], [f"file://{tmp_path}/idx/simple"])
    assert args == {"PIP_FIND_LINKS": str(tmp_path / "wheels"), "PIP_EXTRA_INDEX_URL": f"file://{tmp_path}/idx/simple"}
    assert f"{tmp_path}/idx:{tmp_path}/idx:ro" in mounts  # the index's files sit beside simple/
    with pytest.raises(ImageError, match="find-links"):
        build_args_and_mounts([str(tmp_path / "missing")])


# --- the image for real --------------------------------------------------------------------------------------------

def _clean_copy(dest: Path) -> Path:
    """The repository's tracked files as in the working tree (what a clean clone holds, plus uncommitted edits)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, files.split("\0")):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def _single_node_tasks(spec: dict) -> list[tuple[str, str, dict]]:
    """Executor tasks of the compiled DAG in run order, with where each input comes from:
    ``("value", v)`` (a pipeline parameter's default or a constant) or ``("output", task, key)``.
    Sub-DAGs that hold the TrainJob launcher (the ``nodes > 1`` branch) are left out."""
    comps = spec["components"]
    execs = spec["deploymentSpec"]["executors"]

    def function(comp: str) -> str | None:
        label = comps[comp].get("executorLabel")
        args = execs[label]["container"]["args"] if label else []
        return args[args.index("--function_to_execute") + 1] if "--function_to_execute" in args else None

    plan: list[tuple[str, str, dict]] = []

    def walk(dag: dict, scope: dict) -> None:
        order = TopologicalSorter({t: set(v.get("dependentTasks", [])) for t, v in dag["tasks"].items()}).static_order()
        for name in order:
            task = dag["tasks"][name]
            comp = task["componentRef"]["name"]
            bind = {}
            for kind in ("parameters", "artifacts"):
                for key, src in task.get("inputs", {}).get(kind, {}).items():
                    if "componentInputParameter" in src:
                        bind[key] = scope[src["componentInputParameter"]]
                    elif "componentInputArtifact" in src:
                        bind[key] = scope[src["componentInputArtifact"]]
                    elif "taskOutputArtifact" in src:
                        o = src["taskOutputArtifact"]
                        bind[key] = ("output", o["producerTask"], o["outputArtifactKey"])
                    elif "taskOutputParameter" in src:
                        o = src["taskOutputParameter"]
                        bind[key] = ("output", o["producerTask"], o["outputParameterKey"])
                    elif "runtimeValue" in src:
                        bind[key] = ("value", src["runtimeValue"]["constant"])
            if "dag" in comps[comp]:
                sub = comps[comp]["dag"]["tasks"]
                if not any(function(t["componentRef"]["name"]) == "train_trainjob" for t in sub.values()):
                    walk(comps[comp]["dag"], bind)
            else:
                plan.append((name, comp, bind))

    params = spec["root"]["inputDefinitions"]["parameters"]
    walk(spec["root"]["dag"], {k: ("value", v.get("defaultValue")) for k, v in params.items()})
    return plan


def _chown(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, UID, UID)
    return path


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_image_builds_and_runs_every_component(tmp_path, s3_bucket, s3_env):
    if os.geteuid() != 0:
        pytest.skip("buildah --isolation chroot needs root here (CI runs as root)")
    from google.protobuf import json_format
    from kfp.local import executor_input_utils, executor_output_utils, placeholder_utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    from mslstm import __version__
    from pipelines.runner import compile_pipeline
    from mslstm.config import load_config
    from mslstm.image import DEBIAN_BASE, build_image, host_pip_sources, image_size, run_in_image
    from mslstm.data.s3 import download_dir, upload_dir
    from components.trainjob import build_trainjob, trainjob_command

    # a world-traversable work folder mounted at the same path in the containers, owned by the image's user
    work = _chown(Path(f"/tmp/mslstm-image-test-{os.getpid()}-{tmp_path.name}"))
    try:
        (work / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
        cfg = load_config(work / "params.yaml", ["pipeline.image=localhost/mslstm-pipeline"])
        tag = cfg.pipeline.image
        assert tag == f"localhost/mslstm-pipeline:{__version__}"

        # 1. build from a clean copy: Debian base from mmdebstrap, this machine's CPU torch wheel
        if os.environ.get("MSLSTM_TEST_IMAGE"):
            tag = os.environ["MSLSTM_TEST_IMAGE"]
        else:
            ctx = _clean_copy(tmp_path / "clone")
            src = host_pip_sources()
            assert src["find_links"], "no local wheel folder in pip config (the CPU torch wheel)"
            result = build_image(ctx, tag, base=DEBIAN_BASE, find_links=src["find_links"],
                                 extra_index_urls=src["extra_index_urls"])
            print(f"\nimage {tag}: built in {result.seconds:.0f} s, {result.size_bytes / 1e9:.2f} GB", file=sys.stderr)
        assert image_size(tag) < 3.5e9
        facts = run_in_image(tag, ["sh", "-c", "id -u; command -v python3; python3 -c 'import torch; print(torch.__version__)';"
                                   " ls /opt/venv/bin/pip* >/dev/null && echo one-venv; command -v gcc || echo no-gcc"])
        assert facts.returncode == 0, facts.stderr
        uid, python3, torch_version, venv, gcc = facts.stdout.split()
        assert (uid, python3, venv, gcc) == (str(UID), "/opt/venv/bin/python3", "one-venv", "no-gcc")
        assert torch_version.endswith("+cpu")

        # 2. the compiled pipeline: every task names the image
        spec = next(d for d in yaml.safe_load_all(compile_pipeline(cfg, work / "pipeline.yaml").read_text()) if d)
        assert set(_executor_images(spec).values()) == {cfg.pipeline.image}
        plan = _single_node_tasks(spec)
        assert {spec["deploymentSpec"]["executors"][spec["components"][c]["executorLabel"]]["container"]["args"][-1]
                for _, c, _ in plan} == STEPS

        # 3. each task's command from the YAML, in the image, as KFP launches it
        root = _chown(work / "kfp")
        run_name = "mslstm-training-image-test"
        db = work / "mlflow.db"
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1"}
        outputs: dict[str, dict] = {}
        t_all = time.monotonic()
        for name, comp, bind in plan:
            comp_dict = spec["components"][comp]
            component_spec = json_format.ParseDict(comp_dict, pipeline_spec_pb2.ComponentSpec())
            declared = {**comp_dict.get("inputDefinitions", {}).get("parameters", {}),
                        **comp_dict.get("inputDefinitions", {}).get("artifacts", {})}
            arguments = {k: (outputs[src[1]][src[2]] if src[0] == "output" else src[1])
                         for k, src in bind.items() if k in declared}
            task_root = _chown(_chown(root / run_name) / name)
            executor_input = executor_input_utils.construct_executor_input(component_spec, arguments, str(task_root),
                                                                           block_input_artifact=False)
            container = spec["deploymentSpec"]["executors"][comp_dict["executorLabel"]]["container"]
            command = placeholder_utils.replace_placeholders(
                container["command"] + container["args"],
                executor_input_utils.executor_input_to_dict(executor_input, component_spec),
                run_name, name, str(root), "image-test")
            assert command[:2] == ["sh", "-ec"] and "python3 -m kfp.dsl.executor_main" in command[2]
            t0 = time.monotonic()
            proc = run_in_image(tag, command, mounts=[f"{work}:{work}"], env=env, workdir=str(work))
            print(f"{name}: {time.monotonic() - t0:.0f} s in the image", file=sys.stderr)
            assert proc.returncode == 0, f"{name}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
            outputs[name] = executor_output_utils.get_outputs_for_task(executor_input, component_spec)
        print(f"six components: {time.monotonic() - t_all:.0f} s", file=sys.stderr)

        by_fn = {spec["deploymentSpec"]["executors"][spec["components"][c]["executorLabel"]]["container"]["args"][-1]: n
                 for n, c, _ in plan}
        assert outputs[by_fn["validate"]]["Output"] is True
        dataset = Path(outputs[by_fn["data"]]["dataset"].path)
        assert dataset.parent == root / run_name / by_fn["data"]  # where KFP puts the artifact
        assert json.loads((dataset / "meta.json").read_text())["input_frames"] == 3
        model_dir = Path(outputs[by_fn["train"]]["model"].path)
        for f in ("best.pt", "last.pt", "metrics.json", "run.json"):
            assert (model_dir / f).is_file(), f
        assert outputs[by_fn["train"]]["metrics"].metadata  # the Metrics artifact carries the numbers
        assert json.loads((Path(outputs[by_fn["evaluate"]]["evaluation"].path) / "metrics.json").read_text())["mse"] >= 0
        assert (Path(outputs[by_fn["profile"]]["profile_dir"].path) / "cost.json").is_file()

        import mlflow

        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
        run_id = json.loads((model_dir / "run.json").read_text())["run_id"]
        assert client.get_run(run_id).info.status == "FINISHED"
        versions = client.search_model_versions(f"run_id='{run_id}'")
        assert versions, "no registered model version for the training run"

        # 4. the TrainJob node command: S3 (moto on 127.0.0.1) -> torchrun, 2 processes -> S3
        data_uri, out_uri = f"s3://{s3_bucket}/run/dataset", f"s3://{s3_bucket}/run/model-trainjob"
        upload_dir(dataset, data_uri)
        node_cfg = cfg.replace({"train.device": "cpu", "train.batch_size": 2})
        manifest = build_trainjob(name="image-test", image=tag, num_nodes=1, gpus_per_node=2,
                                  config_json=json.dumps(node_cfg.to_dict()), data_uri=data_uri, out_uri=out_uri)
        assert manifest["spec"]["trainer"]["image"] == tag
        node = work / "node"
        command = trainjob_command(data_uri, out_uri, 2, workdir=str(node))
        assert manifest["spec"]["trainer"]["command"][2].replace("/tmp/mslstm", str(node)) == command[2]
        assert "torchrun --nproc-per-node=2" in command[2]
        node_env = {e["name"]: e["value"] for e in manifest["spec"]["trainer"]["env"] if "value" in e}
        node_env.update({k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                                    "AWS_ENDPOINT_URL")})
        # a free port as the runtime gives one (port 0 makes the rendezvous hang under chroot isolation)
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        node_env.update(env, PET_NNODES="1", PET_NODE_RANK="0", PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=str(port))
        t0 = time.monotonic()
        proc = run_in_image(tag, command, mounts=[f"{work}:{work}"], env=node_env, workdir=str(work))
        print(f"TrainJob node (torchrun x2): {time.monotonic() - t0:.0f} s in the image", file=sys.stderr)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        got = tmp_path / "got"
        download_dir(out_uri, got)
        assert json.loads((got / "metrics.json").read_text())["steps"] >= 1
        assert json.loads((got / "run.json").read_text())["run_id"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
