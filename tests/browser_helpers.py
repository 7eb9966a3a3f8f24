"""What the browser tests share (tests/test_browser.py on the embedded SQLite store, tests/test_tracking_stack.py
on the authenticated PostgreSQL + S3 server): Debian's Chromium driven by Playwright (no browser download), the
tiny chain that logs two runs to compare, and the MLflow chart view that compares their example images.

MLflow 3's image charts print every parameter of a run under its name unless the chart's "Show run parameters"
switch (Configure -> Run details) is off; the project logs its whole config as parameters (~100), so with the
switch on each card is a wall of ``data.source=..., data.s3_endpoint_url=...`` text above the picture.
:func:`show_comparison` turns it off on the card it shows, as a user would, and screenshots the two pictures.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("MSLSTM_TEST_ARTIFACTS") or ROOT / "artifacts" / "test-browser")
EXAMPLE_KEY = "test_examples/sequence_0"


def require_chromium() -> None:
    """A core path: fail, not skip, without the browser (`make test` installs it through .ci/system-deps)."""
    if not CHROMIUM.is_file():
        pytest.fail("needs Debian's chromium at /usr/bin/chromium: run `bash .ci/system-deps` (as root) or "
                    "`apt-get install chromium`")


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Playwright's driver, the system's browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, user: str | None = None, password: str | None = None):
    """A page in a fresh context (own local storage), signed in with HTTP basic auth when ``user`` is given."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000},
                                  http_credentials={"username": user, "password": password} if user else None)
    page = context.new_page()
    page.set_default_timeout(120_000)  # a busy 2-core machine renders the UI slowly
    return page


def close_page(page) -> None:
    page.context.close()


def close_assistant(page) -> None:
    """MLflow 3 opens an assistant panel on the right; close it so the screenshots show the runs."""
    close = page.locator("button[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click()
        close.first.wait_for(state="detached", timeout=10_000)


def settled_content(page, timeout_s: float = 30) -> str:
    """The page's HTML once it stops navigating (after a refused login Chromium may still be on its way to its own
    error page, and ``page.content()`` then raises)."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            page.wait_for_load_state("load", timeout=5000)
            return page.content()
        except PlaywrightError as exc:
            if time.monotonic() > deadline or not ("navigating" in str(exc) or "Timeout" in str(exc)):
                raise
            time.sleep(0.25)


def loaded_images(page, timeout_s: float = 120) -> list[str]:
    """Sources of the <img> elements served from the run artifacts, once they have loaded."""
    deadline = time.monotonic() + timeout_s
    while True:
        srcs = page.eval_on_selector_all(
            "img", "els => els.filter(e => e.complete && e.naturalWidth > 0 && e.src.includes('artifact'))"
                   ".map(e => decodeURIComponent(e.src))")
        if srcs or time.monotonic() > deadline:
            return srcs
        time.sleep(2)


def log_two_runs(work: Path, experiment: str = "evaltest", register_models: bool = True) -> None:
    """The tiny chain twice (lr 0.002 and 0.004: train, evaluate, profile and, with ``register_models``, register)
    into ``MLFLOW_TRACKING_URI``, experiment ``experiment``, with ``work`` as the working folder (its ./mlruns holds
    local artifacts)."""
    import torch
    from test_evaluate_common import tiny_config

    from mslstm.data.dataset import write_dataset
    from mslstm.evaluation.evaluate import evaluate
    from mslstm.evaluation.profile import profile
    from mslstm.release.registry import register
    from mslstm.training.train import train

    cwd = os.getcwd()
    os.chdir(work)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        splits = {n: rng.integers(0, 256, size=(k, 6, 1, 16, 16), dtype=np.uint8)
                  for n, k in (("train", 8), ("val", 4), ("test", 4))}
        write_dataset(work / "data", splits, input_frames=3, output_frames=3, source="tiny-random")
        for i, lr in enumerate((0.002, 0.004)):
            cfg = tiny_config(f"train.lr={lr}", "train.max_steps=2", "train.progress=quiet", "profile.warmup=0",
                              "profile.repeats=1", "profile.batch_size=1", "profile.device=cpu",
                              "register.on_reject=challenger", f"tracking.experiment={experiment}")
            d = work / f"run{i}"
            train(cfg, work / "data", d / "train")
            evaluate(cfg, d / "train" / "best.pt", work / "data", d / "eval")
            profile(cfg, d / "profile", run_info=d / "train")
            if register_models:
                register(cfg, d / "train", d / "eval", d / "profile", d / "register")
    finally:
        torch.set_num_threads(threads)
        os.chdir(cwd)


def hide_run_parameters(page, card) -> None:
    """The image card's menu -> Configure -> Run details: "Show run parameters" off -> Save changes (what a user
    does; MLflow keeps the chart setting in the browser's storage for that experiment)."""
    card.locator("[data-testid='experiment-view-compare-runs-card-menu']").click()
    page.get_by_role("menuitem", name="Configure").click()
    dialog = page.get_by_role("dialog")
    switch = dialog.get_by_role("switch")  # the one switch of the image chart's dialog: "Show run parameters"
    dialog.get_by_text("Show run parameters").wait_for()
    if switch.get_attribute("aria-checked") == "true":
        switch.click()
    assert switch.get_attribute("aria-checked") == "false"
    dialog.get_by_role("button", name="Save changes").click()
    dialog.wait_for(state="detached")


def show_comparison(page, base_url: str, experiment_id: str, runs, shot: Path) -> set[str]:
    """The experiment's chart view comparing ``runs``: the first example's image card with the run parameters
    hidden, the pictures side by side under the run names; screenshot of the card to ``shot``; returns the ids of
    the runs whose picture loaded there."""
    page.goto(f"{base_url}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART")
    page.get_by_text("test_examples").first.wait_for()
    close_assistant(page)
    # the sections render their cards when on screen: bring the examples' section to the top of the view
    page.get_by_text("test_examples").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    card = page.locator("[data-testid='experiment-view-compare-runs-card']").filter(
        has=page.get_by_text(EXAMPLE_KEY, exact=True)).first
    card.wait_for()
    assert "data.source=" in card.inner_text()  # MLflow's default: every parameter under each run's name
    hide_run_parameters(page, card)
    # the card full screen: the runs' pictures side by side, each under its name
    card.locator("button[data-component-id='fullscreen_button_chartcard']").click()
    view = page.get_by_role("dialog")
    view.get_by_text(EXAMPLE_KEY).first.wait_for()
    wanted = {r.info.run_id for r in runs}
    deadline = time.monotonic() + 120
    while True:
        images = view.evaluate(
            "c => [...c.querySelectorAll('img')].filter(e => e.complete && e.naturalWidth > 0)"
            ".map(e => decodeURIComponent(e.src))")
        shown = {rid for rid in wanted if any(rid in s and "test_examples~sequence_0" in s for s in images)}
        if shown == wanted or time.monotonic() > deadline:
            break
        time.sleep(2)
    text = view.inner_text()
    assert "data.source=" not in text, text[:300]  # the parameter dump is gone
    for r in runs:  # each picture under its run's name
        assert r.info.run_name in text, (r.info.run_name, text[:300])
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    return shown
