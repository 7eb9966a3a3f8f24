"""The team's tracking stack for real: PostgreSQL (Debian's server on a temporary folder, 127.0.0.1), moto S3 and
``mslstm tracking-server`` (MLflow with the basic-auth app, artifacts proxied to S3).

- ``dvc repro`` of the tiny chain logs its run there, the register step sets the champion alias there, and
  ``mslstm predict`` loads ``models:/mslstm@champion`` from it; ``mslstm pipeline run --local`` logs there too;
- a client without credentials or with a wrong password is refused (HTTP and the ``mslstm`` door);
- a read-only user reads the runs but is refused at register;
- the compiled pipeline names the credentials' secret and keys, never a value;
- in a browser, the UI answers 401 without a login or with a wrong password, and the reader, signed in, sees the
  chart view comparing two runs' example pictures side by side (tests/browser_helpers.py).
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from test_pipeline_helpers import run, tiny_params
from tracking_stack import postgres_bin, start_postgres, start_tracking_server



@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    """A core path: fail, not skip, without PostgreSQL (`make test` installs it through .ci/system-deps)."""
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed: run `bash .ci/system-deps` (as root) or `apt-get install postgresql`")

ADMIN, ADMIN_PW = "admin", "admin-test-password-1"
PIPELINE, PIPELINE_PW = "pipeline", "pipeline-test-password-1"
READER, READER_PW = "reader", "reader-test-password-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, s3_server):
    """PostgreSQL + moto bucket + the auth server; users ``pipeline`` (writes) and ``reader`` (READ only)."""
    import boto3

    folder = tmp_path_factory.mktemp("stack")
    bucket = "mlflow-stack-test"
    s3 = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_ENDPOINT_URL": s3_server.endpoint_url, "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint_url}
    boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    pg = start_postgres()
    server = None
    try:
        pg.create_database("mlflow")
        pg.create_database("mlflow_auth")
        server = start_tracking_server(
            folder, {**pg.env(), **s3, "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN, "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PW,
             "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-csrf-key"},
            backend_store_uri=pg.uri("mlflow"), artifacts_destination=f"s3://{bucket}/mlartifacts")
        users = api(server.url, "POST", "/api/2.0/mlflow/users/create", {"username": PIPELINE,
                                                                         "password": PIPELINE_PW}, ADMIN, ADMIN_PW)
        assert users[0] == 200, users
        assert api(server.url, "POST", "/api/2.0/mlflow/users/create", {"username": READER, "password": READER_PW},
                   ADMIN, ADMIN_PW)[0] == 200
        yield {"url": server.url, "pg": pg, "bucket": bucket, "s3": s3, "folder": folder}
    finally:
        if server is not None:
            server.stop()
        pg.stop()


def api(url: str, method: str, path: str, body: dict | None = None, user: str | None = None,
        password: str | None = None) -> tuple[int, dict]:
    """One REST call; (HTTP status, JSON body or {})."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{url}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    if user is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode() or "{}"
            return r.status, json.loads(text) if text.lstrip().startswith("{") else {}
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def creds(url: str, user: str, password: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}


def client_as(url: str, user: str, password: str, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


@pytest.fixture(scope="module")
def repro(stack, tmp_path_factory):
    """``dvc repro`` of the tiny chain in a copy of the repository, logging to the stack as ``pipeline``."""
    from test_pipeline_helpers import repo_copy

    repo = repo_copy(tmp_path_factory.mktemp("stackrepo") / "repo")
    env = {"PYTHONPATH": str(repo), **creds(stack["url"], PIPELINE, PIPELINE_PW)}
    run(["mslstm", "data", "--raw-only"], repo, **env)
    run(["dvc", "repro"], repo, timeout=900, **env)
    return repo


def test_no_credentials_or_a_wrong_password_are_refused(stack, tmp_path):
    url = stack["url"]
    path = "/api/2.0/mlflow/experiments/search"
    assert api(url, "POST", path, {"max_results": 1})[0] == 401
    assert api(url, "POST", path, {"max_results": 1}, PIPELINE, "not-the-password")[0] == 401
    assert api(url, "POST", path, {"max_results": 1}, PIPELINE, PIPELINE_PW)[0] == 200
    # the step door: one error line, nothing trained
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    for user, password in ((None, None), (PIPELINE, "not-the-password")):
        env = {"MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        if user:
            env.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
        data = _tiny_dataset(tmp_path)
        proc = run(["mslstm", "train", "--data-dir", str(data), "--out", "train"], tmp_path, check=False, **env)
        assert proc.returncode == 2, proc.stderr[-3000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "cannot open an MLflow run" in errors[0], proc.stderr[-3000:]
        assert "401" in errors[0] or "nauthorized" in errors[0] or "UNAUTHENTICATED" in errors[0], errors[0]
        assert "not-the-password" not in proc.stderr
        assert not (tmp_path / "train" / "best.pt").exists()


def _tiny_dataset(folder: Path) -> Path:
    from mslstm.data.dataset import write_dataset

    out = folder / "dataset"
    if not (out / "meta.json").exists():
        rng = np.random.default_rng(0)
        splits = {n: rng.integers(0, 256, size=(k, 6, 1, 64, 64), dtype=np.uint8)
                  for n, k in (("train", 8), ("val", 4), ("test", 4))}
        write_dataset(out, splits, input_frames=3, output_frames=3, source="tiny-random")
    return out


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_dvc_repro_logs_registers_the_champion_and_predict_loads_it(stack, repro, monkeypatch):
    url = stack["url"]
    a = repro / "artifacts"
    info = json.loads((a / "train" / "run.json").read_text())
    assert info["tracking_uri"] == url
    client = client_as(url, PIPELINE, PIPELINE_PW, monkeypatch)
    r = client.get_run(info["run_id"])
    assert r.info.status == "FINISHED"
    assert "val/mse" in r.data.metrics and any(k.startswith("test_") for k in r.data.metrics), r.data.metrics
    assert "cost_params" in r.data.metrics
    decision = json.loads((a / "register" / "decision.json").read_text())
    assert decision["promoted"] is True and decision["tracking_uri"] == url, decision
    champion = client.get_model_version_by_alias(decision["model_name"], "champion")
    assert champion.version == decision["version"] and champion.run_id == info["run_id"]
    # artifacts went through the server to S3, never to a local folder
    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=stack["s3"]["AWS_ENDPOINT_URL"],
                                           region_name="us-east-1", aws_access_key_id="testing",
                                           aws_secret_access_key="testing")
            .list_objects_v2(Bucket=stack["bucket"]).get("Contents", [])]
    assert any(k.startswith("mlartifacts/") and k.endswith("MLmodel") for k in keys), keys
    # predict loads the champion from the server (as the reader: reading is enough)
    frames = np.random.default_rng(1).random((2, 3, 1, 64, 64), dtype=np.float32)
    np.save(repro / "frames.npy", frames)
    proc = run(["mslstm", "predict", "--model", f"models:/{decision['model_name']}@champion", "--input",
                "frames.npy", "--output", "pred.npy"], repro, PYTHONPATH=str(repro), **creds(url, READER, READER_PW))
    pred = np.load(repro / "pred.npy")
    assert pred.shape == (2, 3, 1, 64, 64) and np.isfinite(pred).all(), (pred.shape, proc.stderr[-2000:])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_read_only_user_reads_runs_but_is_refused_at_register(stack, repro, monkeypatch):
    url = stack["url"]
    info = json.loads((repro / "artifacts" / "train" / "run.json").read_text())
    reader = client_as(url, READER, READER_PW, monkeypatch)
    assert reader.get_run(info["run_id"]).info.status == "FINISHED"  # reading is allowed
    versions = len(reader.search_model_versions("name='mslstm'"))
    proc = run(["mslstm", "register", "--train-dir", "artifacts/train", "--eval-dir", "artifacts/eval",
                "--profile-dir", "artifacts/profile", "--out", "register-as-reader"], repro, check=False,
               PYTHONPATH=str(repro), **creds(url, READER, READER_PW))
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("403" in errors[0] or "PERMISSION_DENIED" in errors[0]), proc.stderr[-3000:]
    assert READER_PW not in proc.stderr
    assert len(reader.search_model_versions("name='mslstm'")) == versions  # nothing registered
    champion = reader.get_model_version_by_alias("mslstm", "champion")
    assert champion.run_id == info["run_id"]  # the alias did not move


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pipeline_run_local_logs_to_the_stack(stack, tmp_path, monkeypatch):
    url = stack["url"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    run(["mslstm", "pipeline", "run", "--local", "--root", "kfp"], tmp_path, timeout=900,
        **creds(url, PIPELINE, PIPELINE_PW))
    run_json = sorted((tmp_path / "kfp").glob("mslstm-training-*/train*/model/run.json"))
    assert len(run_json) == 1, run_json
    info = json.loads(run_json[0].read_text())
    assert info["tracking_uri"] == url
    client = client_as(url, PIPELINE, PIPELINE_PW, monkeypatch)
    r = client.get_run(info["run_id"])
    assert r.info.status == "FINISHED" and any(k.startswith("test_") for k in r.data.metrics), r.data.metrics
    assert [v for v in client.search_model_versions("name='mslstm'") if v.run_id == info["run_id"]]


def test_compiled_pipeline_names_the_credentials_secret_never_a_value(tmp_path, monkeypatch):
    """The tasks read MLFLOW_TRACKING_USERNAME / _PASSWORD (and the S3 keys) from Kubernetes secrets: the YAML
    names the secret and keys; a value in the compiling process's environment never reaches it."""
    from mslstm.config import load_config
    from pipelines.runner import compile_pipeline

    secret_values = {"MLFLOW_TRACKING_USERNAME": "user-value-7f3a", "MLFLOW_TRACKING_PASSWORD": "pw-value-9c1e",
                     "AWS_SECRET_ACCESS_KEY": "aws-value-2b8d", "MLFLOW_TRACKING_URI": "http://uri-value-5e6f:5000"}
    for k, v in secret_values.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "pipeline.yaml"
    compile_pipeline(load_config(None), out)
    text = out.read_text()
    for value in secret_values.values():
        assert value not in text
    platform = next(d for d in yaml.safe_load_all(text) if d and "platforms" in d)
    execs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-data", "exec-train", "exec-evaluate", "exec-register", "exec-train-trainjob"):
        secrets = {s["secretName"]: {k["envVar"] for k in s["keyToEnv"]} for s in execs[name]["secretAsEnv"]}
        # the login comes from the secret the tasks already read for S3 (pipeline.mlflow_secret: "")
        assert secrets["s3-credentials"] >= {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                                             "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID"}, name


@pytest.mark.timeout(600)
def test_four_concurrent_loggers_lose_nothing(stack, monkeypatch):
    """bench/bench_tracking.py's N = 4 case, briefly: every point sent is stored, every run FINISHED."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_tracking import drive

    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)  # drive() exports the given credentials
    row = drive(stack["url"], {"MLFLOW_TRACKING_USERNAME": PIPELINE, "MLFLOW_TRACKING_PASSWORD": PIPELINE_PW}, n=4,
                seconds=3.0, experiment="load-test")
    assert row["sent"] > 0 and row["errors"] == 0, row
    assert row["stored"] == row["sent"] and row["lost"] == 0, row
    assert row["finished"] == row["runs"] == 4, row


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_browser_signs_in_and_compares_two_runs(stack, tmp_path, monkeypatch):
    """The browser door on the team's stack: no login or a wrong password gets 401; the read-only user, signed in,
    sees both runs' pictures (served from S3 through the server) side by side under their short names."""
    from browser_helpers import (SHOTS, chromium, close_page, log_two_runs, new_page, require_chromium,
                                 settled_content, show_comparison)
    from playwright.sync_api import Error as PlaywrightError

    require_chromium()
    for k, v in {**stack["s3"], **creds(stack["url"], PIPELINE, PIPELINE_PW)}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    log_two_runs(tmp_path, experiment="browser-stack", register_models=False)
    client = client_as(stack["url"], READER, READER_PW, monkeypatch)
    exp = client.get_experiment_by_name("browser-stack")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2
    with chromium() as browser:
        for user, password in ((None, None), (READER, "not-the-password")):
            page = new_page(browser, user, password)
            try:  # no login: the 401 page; a wrong password: Chromium gives up on the credentials
                response = page.goto(f"{stack['url']}/#/experiments/{exp.experiment_id}/runs")
                status = response.status if response is not None else None
            except PlaywrightError as exc:
                status = "ERR_INVALID_AUTH_CREDENTIALS" if "ERR_INVALID_AUTH_CREDENTIALS" in str(exc) else str(exc)
            assert status in (401, "ERR_INVALID_AUTH_CREDENTIALS"), (user, status)
            assert "Training runs" not in settled_content(page)
            close_page(page)
        page = new_page(browser, READER, READER_PW)
        shown = show_comparison(page, stack["url"], exp.experiment_id, runs,
                                SHOTS / "mlflow-compare-images-stack.png")
        assert shown == {r.info.run_id for r in runs}
        close_page(page)
