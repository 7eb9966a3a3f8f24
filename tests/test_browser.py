"""What users see in a browser (issue 13): MLflow's UI over a store made by a tiny chain, and DVC's plots page.

A tiny chain (two trainings at different learning rates, each evaluated, profiled and registered) writes a SQLite
store in tmp; `mlflow ui` serves it on 127.0.0.1 and headless Chromium (Debian's `chromium`, driven by Playwright,
no browser download) checks that the run page shows the test metrics and the registered model's `champion` alias,
that the example images are image charts, and that the experiment's chart view shows both runs' images side by
side. The DVC plots page (`dvc plots show` with plots/template.html) is opened with every network request blocked:
its charts must still draw. Screenshots go to ``artifacts/test-browser/`` (or ``$MSLSTM_TEST_ARTIFACTS``).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from browser_helpers import (
    SHOTS,
    chromium,
    close_assistant,
    close_page,
    loaded_images,
    log_two_runs,
    new_page,
    require_chromium,
    show_comparison,
)

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow]


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    require_chromium()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The tiny chain twice (lr 0.002 and 0.004) into one SQLite store; returns (uri, work folder)."""
    work = tmp_path_factory.mktemp("browser")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    try:
        log_two_runs(work)  # the local artifact store (./mlruns) lands in the work folder
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return uri, work


@pytest.fixture(scope="module")
def mlflow_ui(store):
    """`mlflow ui` over the store on 127.0.0.1 (its own process group, killed at the end); yields the base URL."""
    uri, work = store
    port = _free_port()
    log = open(work / "mlflow-ui.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", uri,
                             "--host", "127.0.0.1", "--port", str(port)], cwd=work, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mlflow ui did not start: {(work / 'mlflow-ui.log').read_text()[-2000:]}")
                time.sleep(1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _runs(uri):
    import mlflow

    client = mlflow.MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name("evaltest")
    return client, exp, client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_run_page_shows_test_metrics_example_image_and_champion_alias(store, mlflow_ui, browser):
    uri, _ = store
    client, exp, runs = _runs(uri)
    champion = client.get_model_version_by_alias("mslstm", "champion")
    run = next(r for r in runs if r.info.run_id == champion.run_id)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(browser)
    page.goto(f"{mlflow_ui}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}")
    page.get_by_text("test_mse", exact=True).first.wait_for()
    close_assistant(page)
    page.get_by_text("champion").first.wait_for()  # the registered version's alias, on the run's overview
    text = page.inner_text("body")
    assert run.info.run_name in text  # named by what ran, not random words
    for key in ("test_mse", "test_ssim", "test_psnr", "cost_params"):
        assert key in text, key
    page.screenshot(path=str(SHOTS / "mlflow-run.png"), full_page=True)
    close_page(page)
    # the run's charts: the example strips and per-frame curves as image charts
    page = new_page(browser)
    page.goto(f"{mlflow_ui}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}/model-metrics")
    page.get_by_text("test_examples").first.wait_for()
    # image charts render when on screen: bring the section to the top of the view
    page.get_by_text("test_examples").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    images = loaded_images(page)
    page.screenshot(path=str(SHOTS / "mlflow-run-images.png"))
    every = page.eval_on_selector_all("img", "els => els.map(e => [e.src.slice(0, 120), e.complete, e.naturalWidth])")
    assert any("test_examples~sequence_0" in s for s in images), every
    close_page(page)


def test_comparison_shows_both_runs_images(store, mlflow_ui, browser):
    """The chart view's example card: both runs' pictures side by side under short names, no parameter dump."""
    uri, _ = store
    _, exp, runs = _runs(uri)
    assert len(runs) == 2
    assert all(r.info.run_name.split()[1].startswith("lr=") for r in runs)  # what tells them apart comes first
    page = new_page(browser)
    shown = show_comparison(page, mlflow_ui, exp.experiment_id, runs, SHOTS / "mlflow-compare-images.png")
    assert shown == {r.info.run_id for r in runs}
    close_page(page)


def test_dvc_plots_page_draws_offline(store, browser, tmp_path):
    """`dvc plots show` with the project's template and plots: every chart draws with all network blocked."""
    _, work = store
    repo = tmp_path / "plots"
    (repo / ".dvc").mkdir(parents=True)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copytree(ROOT / "plots", repo / "plots")
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, sort_keys=False))
    for rel, src in (("artifacts/train/history.csv", work / "run0" / "train" / "history.csv"),
                     ("artifacts/eval/per_frame.csv", work / "run0" / "eval" / "per_frame.csv")):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, repo / rel)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["dvc", "init", "--no-scm", "-q", "-f"], cwd=repo, check=True, env=env, capture_output=True)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # `dvc init -f` rewrote it
    out = subprocess.run(["dvc", "plots", "show", "-o", "out"], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    html = (repo / "out" / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "<script src=" not in html  # nothing loaded from the network
    page = new_page(browser)
    requests: list[str] = []
    page.route("http*://**", lambda route: (requests.append(route.request.url), route.abort()))
    page.goto((repo / "out" / "index.html").as_uri())
    page.wait_for_function(f"document.querySelectorAll('.vega-embed').length >= {len(plots)}")
    page.wait_for_function(f"document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length >= {len(plots)}")
    for plot in plots:  # one chart per quantity, each with its title
        (_, spec), = plot.items()
        assert spec["title"] in html, spec["title"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dvc-plots.png"), full_page=True)
    assert requests == []
    close_page(page)
