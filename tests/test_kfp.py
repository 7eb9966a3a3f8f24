"""KFP: both pipelines compile and load back as PipelineSpec; tasks, images, resources, caching, secrets; submit.

The submit test runs ``mslstm pipeline submit`` against a small HTTP server on 127.0.0.1 that plays the KFP
API endpoints the client calls (healthz, experiments, runs) and checks the requests it received.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from mslstm.cli import main
from mslstm.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg():
    return load_config(ROOT / "params.yaml", ["pipeline.image=registry.example.com/mslstm:test"])


def _compile(cfg, tmp_path, ablation):
    from pipelines.runner import compile_pipeline

    out = compile_pipeline(cfg, tmp_path / ("ablation.yaml" if ablation else "training.yaml"), ablation)
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    return out, docs[0], (docs[1] if len(docs) > 1 else {})


def _executors(spec):
    return spec["deploymentSpec"]["executors"]


def test_training_pipeline_compiles_and_validates(cfg, tmp_path):
    from pipelines.runner import validate_package

    out, spec, platform = _compile(cfg, tmp_path, False)
    pb = validate_package(out)
    assert pb.pipeline_info.name == "mslstm-training"
    params = spec["root"]["inputDefinitions"]["parameters"]
    # no `image` run parameter: KFP fixes the components' image at compile time, so pipeline.image is the one image
    assert set(params) == {"config", "model_name", "epochs", "batch_size", "lr", "gpus", "nodes", "register"}
    assert params["model_name"]["defaultValue"] == "mslstm"
    assert params["epochs"]["defaultValue"] == cfg.train.epochs
    assert json.loads(params["config"]["defaultValue"])["model"]["hidden"] == cfg.model.hidden
    comps = spec["components"]
    names = {name for name in comps}
    for step in ("comp-data", "comp-validate", "comp-train", "comp-train-trainjob", "comp-evaluate", "comp-profile",
                 "comp-register"):
        assert step in names, step
    # typed artifacts between the tasks
    assert comps["comp-data"]["outputDefinitions"]["artifacts"]["dataset"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert comps["comp-train"]["outputDefinitions"]["artifacts"]["model"]["artifactType"]["schemaTitle"] == "system.Model"
    assert comps["comp-evaluate"]["outputDefinitions"]["artifacts"]["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert comps["comp-validate"]["outputDefinitions"]["artifacts"]["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert comps["comp-profile"]["outputDefinitions"]["artifacts"]["report"]["artifactType"]["schemaTitle"] == "system.Markdown"
    # every executor runs the project image and calls into the installed package (no pip install at run time)
    for name, ex in _executors(spec).items():
        c = ex["container"]
        assert c["image"] == "registry.example.com/mslstm:test", name
        body = "\n".join(c["command"])
        assert "pip install" not in body, name
        assert "from components.runtime import" in body, name
    # ... and the TrainJob nodes run that same image (a constant input, not a run parameter); profile logs into the
    # training run: its run_id is the train task's output (as `dvc repro` passes run.json)
    tasks = {t: d for c in comps.values() for t, d in ((c.get("dag") or {}).get("tasks") or {}).items()}
    image_in = tasks["train-trainjob"]["inputs"]["parameters"]["image"]
    assert image_in == {"runtimeValue": {"constant": "registry.example.com/mslstm:test"}}
    producers = {tasks[t]["inputs"]["parameters"]["run_id"]["taskOutputParameter"]["producerTask"]
                 for t in tasks if t.startswith("profile")}
    assert producers == {"train", "train-trainjob"}
    # the chain: root has data, validate and the validation gate; profile runs after train, in its MLflow run
    root = spec["root"]["dag"]["tasks"]
    assert {"data", "validate", "condition-1"} <= set(root) and "profile" not in root
    assert root["data"]["cachingOptions"].get("enableCache") is True
    assert root["validate"]["cachingOptions"].get("enableCache") is True
    assert root["validate"]["dependentTasks"] == ["data"]
    assert "validate-Output" in root["condition-1"]["triggerPolicy"]["condition"]


def _wiring(spec) -> dict[str, dict[str, tuple]]:
    """Every input of every container task of a compiled pipeline, followed through the DAG layers (conditions,
    loops) to where it comes from: ``("param", name)`` a pipeline parameter, ``("out", task, key)`` the named
    output of a container task (``("collected", task, key)`` through a loop), ``("item", source)`` the loop item
    of a list, ``("const", value)``."""
    comps = spec["components"]
    dags = {"root": spec["root"], **{n: c for n, c in comps.items() if "dag" in c}}
    parent = {}   # DAG component -> (the DAG component holding its task, that task's name)
    for holder, comp in dags.items():
        for name, task in comp["dag"]["tasks"].items():
            if task["componentRef"]["name"] in dags:
                parent[task["componentRef"]["name"]] = (holder, name)

    def task_of(holder, name):
        return dags[holder]["dag"]["tasks"][name]

    def from_output(holder, name, key, kind):
        task = task_of(holder, name)
        ref = task["componentRef"]["name"]
        if ref not in dags:
            return ("out", name, key)
        sel = dags[ref]["dag"]["outputs"][kind][key]
        sel = sel["valueFromParameter"] if kind == "parameters" else sel["artifactSelectors"][0]
        sub = sel["producerSubtask"]
        inner = from_output(ref, sub, sel["outputParameterKey" if kind == "parameters" else "outputArtifactKey"], kind)
        return ("collected", *inner[1:]) if "parameterIterator" in task else inner

    def resolve(holder, src, kind):
        if "componentInputParameter" in src or "componentInputArtifact" in src:
            name = src.get("componentInputParameter") or src["componentInputArtifact"]
            if holder == "root":
                return ("param", name)
            up, task_name = parent[holder]
            task = task_of(up, task_name)
            it = task.get("parameterIterator")
            if it and it["itemInput"] == name:
                return ("item", resolve(up, {"componentInputParameter": it["items"]["inputParameter"]}, kind))
            return resolve(up, task["inputs"][kind][name], kind)
        if "taskOutputParameter" in src:
            o = src["taskOutputParameter"]
            return from_output(holder, o["producerTask"], o["outputParameterKey"], "parameters")
        if "taskOutputArtifact" in src:
            o = src["taskOutputArtifact"]
            return from_output(holder, o["producerTask"], o["outputArtifactKey"], "artifacts")
        if "runtimeValue" in src:
            return ("const", src["runtimeValue"]["constant"])
        raise AssertionError(f"unknown input source {src}")

    wiring = {}
    for holder, comp in dags.items():
        for name, task in comp["dag"]["tasks"].items():
            if task["componentRef"]["name"] in dags:
                continue
            assert name not in wiring, f"task name {name} twice"
            wiring[name] = {k: resolve(holder, v, kind) for kind in ("parameters", "artifacts")
                            for k, v in (task.get("inputs") or {}).get(kind, {}).items()}
    return wiring


def _param(*names):
    return {n: ("param", n) for n in names}


def test_every_task_input_comes_from_the_right_producer(cfg, tmp_path):
    """Each input of each task, followed through the conditions and the loop: register reads the evaluation of
    its own branch's evaluate task (not the profile), evaluate the model of the train task it follows, and so on.
    A wrongly wired input of the same type compiles and validates, so only this table catches it."""
    image = "registry.example.com/mslstm:test"
    gpu_count = {"accelerator_count": ("const", "{{$.inputs.parameters['pipelinechannel--gpus']}}"),
                 "pipelinechannel--gpus": ("param", "gpus")}
    dataset = {"dataset": ("out", "data", "dataset")}
    knobs = _param("config", "model_name", "epochs", "batch_size", "lr", "gpus")

    def after(train, evaluate, profile, gpu=None):
        return {
            profile: {**_param("config", "model_name"), "run_id": ("out", train, "Output")},
            evaluate: {**_param("config", "model_name"), **dataset, "model": ("out", train, "model"), **(gpu or {})},
        }

    def register(train, evaluate, profile):
        return {**_param("config", "model_name"), "model": ("out", train, "model"),
                "evaluation": ("out", evaluate, "evaluation"), "profile_dir": ("out", profile, "profile_dir")}

    expected = {
        "data": _param("config"),
        "validate": {**_param("config"), **dataset},
        "train-trainjob": {**knobs, **dataset, "nodes": ("param", "nodes"), "image": ("const", image)},
        "train": {**knobs, **dataset, **gpu_count},
        **after("train-trainjob", "evaluate", "profile"),
        "register": register("train-trainjob", "evaluate", "profile"),
        **after("train", "evaluate-2", "profile-2", gpu_count),
        "register-2": register("train", "evaluate-2", "profile-2"),
    }
    _, spec, _ = _compile(cfg, tmp_path, False)
    got = _wiring(spec)
    assert set(got) == set(expected)
    for task in expected:
        assert got[task] == expected[task], task

    item = ("item", ("param", "models"))
    knobs = {**_param("config", "epochs", "batch_size", "lr", "gpus"), "model_name": item}
    expected = {
        "data": _param("config"),
        "validate": {**_param("config"), **dataset},
        "train": {**knobs, **dataset, **gpu_count},
        "profile": {**_param("config"), "model_name": item, "run_id": ("out", "train", "Output")},
        "evaluate": {**_param("config"), "model_name": item, **dataset, "model": ("out", "train", "model"),
                     "cost": ("out", "profile", "Output"), **gpu_count},
        "summarize-ablation": {**_param("config"), "results": ("collected", "evaluate", "Output")},
    }
    _, spec, _ = _compile(cfg, tmp_path / "ablation", True)
    got = _wiring(spec)
    assert set(got) == set(expected)
    for task in expected:
        assert got[task] == expected[task], task


def test_training_resources_and_gpu(cfg, tmp_path):
    _, spec, _ = _compile(cfg, tmp_path, False)
    execs = _executors(spec)
    train = execs["exec-train"]["container"]["resources"]
    assert train["resourceCpuRequest"] == cfg.pipeline.train_cpu_request
    assert train["resourceMemoryRequest"] == cfg.pipeline.train_memory_request
    assert train["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "{{$" in train["accelerator"]["resourceCount"]  # the `gpus` pipeline parameter
    data = execs["exec-data"]["container"]["resources"]
    assert data["resourceCpuRequest"] == cfg.pipeline.cpu_request
    assert "accelerator" not in data
    # the TrainJob launcher needs no GPU itself
    assert "accelerator" not in execs["exec-train-trainjob"]["container"]["resources"]


def test_secrets_come_from_kubernetes_never_from_the_yaml(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://secret-host:5000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    out, spec, platform = _compile(cfg, tmp_path, False)
    text = out.read_text()
    assert "very-secret-value" not in text and "secret-host" not in text
    execs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-data", "exec-train", "exec-evaluate", "exec-register", "exec-train-trainjob"):
        secrets = {s["secretName"]: {k["envVar"] for k in s["keyToEnv"]} for s in execs[name]["secretAsEnv"]}
        # by default the one S3 secret holds the MLflow login too (one mount, every key)
        assert secrets == {"s3-credentials": {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                              "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}}, name


def test_mlflow_login_can_live_in_its_own_secret(cfg, tmp_path):
    split = cfg.replace({"pipeline.mlflow_secret": "mlflow-tracking"})
    assert split.pipeline.secret_keys() == {
        "mlflow-tracking": ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
        "s3-credentials": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")}
    _, _, platform = _compile(split, tmp_path, False)
    execs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-train", "exec-register", "exec-train-trainjob"):
        secrets = {s["secretName"]: {k["envVar"] for k in s["keyToEnv"]} for s in execs[name]["secretAsEnv"]}
        assert secrets["mlflow-tracking"] == {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                                              "MLFLOW_TRACKING_PASSWORD"}, name
        assert secrets["s3-credentials"] == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}, name


def test_ablation_pipeline_parallelfor_and_collected(cfg, tmp_path):
    from pipelines.runner import validate_package

    out, spec, _ = _compile(cfg, tmp_path, True)
    validate_package(out)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["models"]["defaultValue"] == ["convlstm", "smslstm", "tmslstm", "mslstm"]
    text = out.read_text()
    assert "parameterIterator" in text
    comps = spec["components"]
    assert "comp-summarize-ablation" in comps
    assert comps["comp-summarize-ablation"]["inputDefinitions"]["parameters"]["results"]["parameterType"] == "LIST"
    assert "parallelismLimit" not in json.dumps(spec["components"])  # 0 = all models at once
    _, spec1, _ = _compile(cfg.replace({"pipeline.ablation_parallelism": 1}), tmp_path / "p1", True)
    assert "\"parallelismLimit\": 1" in json.dumps(spec1["components"])
    # the ablation budget is in the config default
    default = json.loads(params["config"]["defaultValue"])
    assert default["train"]["epochs"] == cfg.ablation.epochs
    assert default["evaluate"]["max_sequences"] == cfg.ablation.eval_sequences


def test_compile_takes_no_run_arguments_and_says_so(capsys):
    """`--arg` is listed where it works (run, submit) and nowhere else; the image is --set pipeline.image."""
    from mslstm.cli import build_parser

    helps = {}
    for action in ("compile", "run", "submit"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["pipeline", action, "--help"])
        helps[action] = capsys.readouterr().out
    assert "--arg" not in helps["compile"] and "pipeline.image" in helps["compile"]
    assert "--arg" in helps["run"] and "--arg" in helps["submit"]
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(ROOT / "params.yaml"), "pipeline", "compile", "--arg", "epochs=3"])
    assert exc.value.code == 2 and "unrecognized arguments: --arg" in capsys.readouterr().err
    rc = main(["--params", str(ROOT / "params.yaml"), "pipeline", "submit", "--host", "http://127.0.0.1:9",
               "--arg", "image=x"])
    assert rc == 2 and "--arg image: not a parameter of the pipeline" in capsys.readouterr().err


def test_compile_command_writes_validated_yaml(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert main(["--params", str(ROOT / "params.yaml"), "pipeline", "compile", "--out", str(out)]) == 0
    assert "validated" in capsys.readouterr().out
    from kfp import components

    assert components.load_component_from_file(str(out)).name == "mslstm-training"


def test_validate_package_refuses_garbage(tmp_path):
    from pipelines.runner import validate_package
    from mslstm.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelineInfo: {name: x}\nnotAField: 1\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        validate_package(bad)


def test_unknown_pipeline_argument_is_refused(capsys):
    rc = main(["--params", str(ROOT / "params.yaml"), "pipeline", "submit", "--host", "http://127.0.0.1:9",
               "--arg", "epoch=3"])
    assert rc == 2
    assert "--arg epoch: not a parameter of the pipeline" in capsys.readouterr().err


class _FakeKFP(BaseHTTPRequestHandler):
    """Plays the KFP v2beta1 endpoints that kfp.Client.create_run_from_pipeline_package calls."""

    requests: list = []

    def _reply(self, obj, code=200):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        self.requests.append((self.command, self.path.split("?")[0], body))
        if self.path.startswith("/apis/v2beta1/healthz"):
            return self._reply({"multi_user": False})
        if self.path.startswith("/apis/v2beta1/experiments"):
            if self.command == "GET":
                return self._reply({"experiments": [], "total_size": 0})
            return self._reply({"experiment_id": "exp-42", "display_name": body["display_name"]})
        if self.path.startswith("/apis/v2beta1/runs") and self.command == "POST":
            return self._reply({"run_id": "run-123", "display_name": body["display_name"],
                                "experiment_id": body["experiment_id"], "state": "PENDING"})
        return self._reply({"error": "not found"}, 404)

    do_GET = do_POST = _handle

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_kfp(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client keeps a context file under ~/.config
    _FakeKFP.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKFP)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", _FakeKFP.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_submit_builds_the_run_request(fake_kfp, capsys, monkeypatch):
    host, requests = fake_kfp
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    rc = main(["--params", str(ROOT / "params.yaml"), "pipeline", "submit", "--host", host, "--experiment", "ablations",
               "--arg", "epochs=3", "--arg", "lr=1e-3", "--arg", "nodes=2", "--arg", "gpus=4"])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"{host}/#/runs/details/run-123"
    posts = {path: body for method, path, body in requests if method == "POST"}
    assert posts["/apis/v2beta1/experiments"]["display_name"] == "ablations"
    run = posts["/apis/v2beta1/runs"]
    assert run["experiment_id"] == "exp-42"
    assert run["display_name"].startswith("mslstm-training ")
    assert run["runtime_config"]["parameters"] == {"epochs": 3, "lr": 0.001, "nodes": 2, "gpus": 4}
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "mslstm-training"
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]
    assert "very-secret-value" not in json.dumps(run)


def test_submit_needs_a_host(capsys):
    rc = main(["--params", str(ROOT / "params.yaml"), "pipeline", "submit"])
    assert rc == 2
    assert "--host" in capsys.readouterr().err


class _Refusing(BaseHTTPRequestHandler):
    """A KFP endpoint that answers every request with one HTTP status."""

    status = 401

    def _handle(self):
        data = b'{"error": "no", "code": 16}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status", [401, 403, 404])
def test_submit_to_a_refusing_endpoint_says_so_in_one_line(status, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    handler = type(f"Refusing{status}", (_Refusing,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host = f"http://127.0.0.1:{server.server_port}"
    try:
        rc = main(["-q", "--params", str(ROOT / "params.yaml"), "pipeline", "submit", "--host", host])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --host {host}: HTTP {status}") and "tried once" in err, err


def test_submit_to_an_unreachable_host_says_so_in_one_line(capsys, monkeypatch, tmp_path):
    import socket

    monkeypatch.setenv("HOME", str(tmp_path))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    rc = main(["-q", "--params", str(ROOT / "params.yaml"), "pipeline", "submit", "--host", host])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"--host {host}: cannot be reached" in err and "refused" in err.lower() and "timeout 10 s" in err, err
