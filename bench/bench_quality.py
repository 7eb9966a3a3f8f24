"""Quality against wall-clock time: ConvLSTM, SMS-LSTM, TMS-LSTM and MS-LSTM each trained for the same number of
seconds on the same data, test MSE measured at intervals, one curve per model in a PNG (also logged to MLflow).

    .venv/bin/python bench/bench_quality.py [--seconds 180] [--models convlstm,smslstm,tmslstm,mslstm]
        [--points 6] [--params params.yaml] [--set train.lr=0.003 ...] [--data-dir DIR] [--out DIR]

Every model gets the config of ``--params`` (the embedded default unless told otherwise) with only ``model.name``
changed. The budget is turned into steps per model: a short calibration run measures its training throughput, then
``train.max_steps = seconds * sequences/s / batch`` (so the one-cycle lr spans the whole budget, and scheduled
sampling decays over its first half: ``train.ss_decay_fraction = 0.5``),
and ``train.checkpoint_every_steps`` makes ``last.pt`` appear ``--points`` times; a watcher copies each one with the
seconds since training started, and after training every copy is scored on the test split (``evaluate``,
``--eval-sequences`` sequences; scoring is not counted in the budget). Figures depend on the machine's load:
run it on an idle machine (one model at a time, as here) for numbers worth quoting.

Writes ``<out>/quality.png`` (test MSE per frame against training seconds), ``quality.csv`` and ``quality.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# The step functions (docs/architecture.md, "Step functions"): the only project imports of this script.
from mslstm.config import load_config
from mslstm.data.prepare import prepare_data
from mslstm.evaluation.evaluate import evaluate
from mslstm.tracking import open_run
from mslstm.training.train import train

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"convlstm": "ConvLSTM", "smslstm": "SMS-LSTM", "tmslstm": "TMS-LSTM", "mslstm": "MS-LSTM"}
log = logging.getLogger("bench_quality")


class SnapshotWatcher(threading.Thread):
    """Copies ``<train_dir>/last.pt`` to ``<snap_dir>/NNN.pt`` each time it is rewritten (the trainer replaces it
    atomically), noting the seconds since ``t0``. Polling a file's mtime costs nothing next to a training step."""

    def __init__(self, train_dir: Path, snap_dir: Path, t0: float, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.src = train_dir / "last.pt"
        self.snap_dir = snap_dir
        self.t0 = t0
        self.every_s = every_s
        self.snaps: list[tuple[float, Path]] = []
        self._stop_event = threading.Event()
        self._seen: int | None = None

    def poll(self) -> None:
        try:
            stamp = self.src.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if stamp == self._seen:
            return
        self._seen = stamp
        elapsed = time.perf_counter() - self.t0
        dst = self.snap_dir / f"{len(self.snaps):03d}.pt"
        shutil.copyfile(self.src, dst)
        self.snaps.append((elapsed, dst))

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            self.poll()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.poll()  # the final last.pt


def train_for(cfg: Any, data_dir: Path, work: Path, seconds: float, points: int, calib_steps: int
              ) -> dict[str, Any]:
    """Train ``cfg`` for about ``seconds`` (steps calibrated first); return the snapshots and the run's figures."""
    batch = cfg.train.global_batch_size or cfg.train.batch_size
    calib = cfg.replace({"train.epochs": 1000, "train.max_steps": calib_steps, "train.checkpoint_every_steps": 0,
                         "train.val_batches": 1})
    cm = train(calib, data_dir, work / "calibration")
    rate = float(cm["seq_per_s"] or 1.0)
    steps = max(points, int(seconds * rate / batch))
    n_train = json.loads((data_dir / "meta.json").read_text())["splits"]["train"]["shape"][0]
    per_epoch = math.ceil(n_train / batch)
    # scheduled sampling over the first half of each model's steps (the default's 384 of 768), whatever its speed
    run_cfg = cfg.replace({"train.epochs": math.ceil(steps / per_epoch), "train.max_steps": steps,
                           "train.checkpoint_every_steps": max(1, steps // points), "train.ss_decay_fraction": 0.5})
    log.info("%s: %.2f sequences/s in calibration -> %d steps of batch %d for %.0f s", cfg.model.name, rate, steps,
             batch, seconds)
    snap_dir = work / "snapshots"
    snap_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    watcher = SnapshotWatcher(work / "train", snap_dir, t0)
    watcher.start()
    try:
        tm = train(run_cfg, data_dir, work / "train")
    finally:
        watcher.stop()
    return {"calibration_seq_per_s": rate, "steps": steps, "train_wall_s": time.perf_counter() - t0,
            "train_metrics": tm, "snapshots": watcher.snaps}


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = [r for r in rows if r["model"] == model]
        ax.plot([r["seconds"] for r in pts], [r["mse"] for r in pts], marker="o", label=LABELS.get(model, model))
    blank = [r["baseline_blank_mse"] for r in rows if r.get("baseline_blank_mse") is not None]
    if blank:
        ax.axhline(blank[0], color="grey", linestyle="--", linewidth=1, label="blank frames")
    ax.set_xlabel("training seconds (this machine)")
    ax.set_ylabel("test MSE per frame (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=180.0, help="training budget per model (default: %(default)s)")
    p.add_argument("--models", default="convlstm,smslstm,tmslstm,mslstm")
    p.add_argument("--points", type=int, default=6, help="test-MSE measurements per model (default: %(default)s)")
    p.add_argument("--eval-sequences", type=int, default=32, help="test sequences scored per point (0 = all)")
    p.add_argument("--calibration-steps", type=int, default=4)
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--data-dir", help="a processed dataset (default: generate one from --params in a temp dir)")
    p.add_argument("--out", default=str(ROOT / "artifacts" / "bench_quality"))
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mslstm", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    cfg = load_config(a.params, a.overrides)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # the trainings and per-point scorings log nothing to MLflow; this script logs one run of its own at the end
    quiet = {"tracking.enabled": False, "train.progress": "quiet", "evaluate.num_examples": 0,
             "evaluate.max_sequences": a.eval_sequences}
    rows: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_quality.") as tmpd:
        tmp = Path(tmpd)
        data_dir = Path(a.data_dir) if a.data_dir else tmp / "data"
        if not a.data_dir:
            prepare_data(cfg, data_dir)
        for model in a.models.split(","):
            mcfg = cfg.replace({**quiet, "model.name": model})
            res = train_for(mcfg, data_dir, tmp / model, a.seconds, a.points, a.calibration_steps)
            for seconds, snap in res["snapshots"]:
                ev = evaluate(mcfg, snap, data_dir, tmp / model / "eval")
                m = ev["metrics"]
                if rows and rows[-1]["model"] == model and rows[-1]["step"] == ev["checkpoint_step"]:
                    continue  # the end-of-training last.pt re-written at the same step
                rows.append({"model": model, "seconds": round(seconds, 2), "step": ev["checkpoint_step"],
                             "mse": m["mse"], "ssim": m["ssim"], "skill_vs_blank": m["skill_vs_blank"],
                             "baseline_blank_mse": m["baseline_blank_mse"]})
                log.info("%s: %6.1f s step %4s test mse %.2f ssim %.4f skill %.3f", model, seconds,
                         ev["checkpoint_step"], m["mse"], m["ssim"], m["skill_vs_blank"])
            runs[model] = {k: v for k, v in res.items() if k != "snapshots"}

    c = cfg.model
    title = (f"{c.frame_size[0]}x{c.frame_size[1]}, {c.input_frames}->{c.output_frames} frames, hidden {c.hidden}, "
             f"{c.layers} layers, patch {c.patch_size}; {a.seconds:.0f} s per model, amp {cfg.train.amp}")
    with open(out / "quality.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["model"])
        w.writeheader()
        w.writerows(rows)
    (out / "quality.json").write_text(json.dumps({"seconds": a.seconds, "title": title, "runs": runs,
                                                  "points": rows}, indent=2, default=str))
    plot(rows, out / "quality.png", title)

    run_id = None
    with open_run(cfg, run_name="bench-quality", force=True) as tracker:
        run_id = tracker.run_id
        if run_id is not None:
            import mlflow

            mlflow.log_params({"bench.seconds": a.seconds, "bench.models": a.models,
                               "bench.eval_sequences": a.eval_sequences, **{k: str(v) for k, v in cfg.flat().items()
                                                                           if k.startswith(("model.", "train."))}})
            for r in rows:
                mlflow.log_metric(f"{r['model']}/test_mse", r["mse"], step=int(round(r["seconds"])))
            for model, res in runs.items():
                mlflow.log_metric(f"{model}/steps", res["steps"])
            for name in ("quality.png", "quality.csv", "quality.json"):
                mlflow.log_artifact(str(out / name), artifact_path="bench_quality")
    print(f"{'model':<10} {'seconds':>8} {'steps':>6} {'test MSE':>9} {'SSIM':>7} {'skill':>6}")
    for model in runs:
        last = [r for r in rows if r["model"] == model][-1]
        print(f"{model:<10} {last['seconds']:>8.1f} {last['step']:>6} {last['mse']:>9.2f} {last['ssim']:>7.4f} "
              f"{last['skill_vs_blank']:>6.3f}")
    print(f"plot: {out / 'quality.png'}" + (f"; MLflow run {run_id}" if run_id else ""))


if __name__ == "__main__":
    main()
