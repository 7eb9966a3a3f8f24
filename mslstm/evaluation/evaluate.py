"""The evaluate step: score a checkpoint on a split, draw example pictures, log everything to MLflow.

    from mslstm.evaluation.evaluate import evaluate
    result = evaluate(cfg, "artifacts/train/best.pt", "artifacts/dataset", "artifacts/eval")

Writes into ``out_dir``: ``metrics.json`` (averaged metrics, numbers only: DVC ``metrics``), ``per_frame.csv``
(one row per scored frame: DVC ``plots``), ``eval.json`` (metrics + what was scored), ``per_frame_<metric>.png``,
``example_<i>.png`` and ``example_<i>.gif`` (+ ``contingency_0.png`` for radar). What is scored and drawn is the
metric set of ``evaluate.metric_set`` (:mod:`mslstm.evaluation.metric_sets`: video, flow, precipitation).

Weights scored (``evaluate.weights``): given a training output folder, ``best`` scores its ``best.pt`` (the best
validation loss), ``last`` its ``last.pt`` (the final weights, what the authors test); a ``.pt`` file is scored as
given.

Frames scored (``evaluate.frames``): ``future`` = the ``output_frames`` frames predicted by pure rollout from the
``input_frames`` inputs (as OpenSTL reports); ``all`` = every predicted frame 2..T, i.e. also the teacher-forced
one-step predictions of frames 2..input_frames (as the authors' code averages).
"""
from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch

from mslstm.evaluation.metric_sets import metric_set_for
from mslstm.evaluation.metrics import MetricAccumulator
from mslstm.io import atomic_open, write_json
from mslstm.training.recipe import split_output

log = logging.getLogger(__name__)


@torch.no_grad()
def score(net: torch.nn.Module, ds: Any, frames: str, batch_size: int, n: int, device: torch.device,
          num_examples: int = 0, acc: Any = None, progress: bool = False,
          ) -> tuple[dict[str, float], dict[str, list[float]], list[int], list[tuple]]:
    """Run the model over the first ``n`` sequences of ``ds``, in fp32 (no autocast, whatever ``train.amp``: the
    reported figures do not depend on the machine's bf16 support), scored by ``acc`` (a metric set's accumulator;
    default: the video metrics), whose metrics are computed in fp32 too.

    Returns (averaged metrics, per-frame metrics, 1-based frame numbers scored, examples) where each example is
    ``(inputs, target, pred)`` of one sequence (CPU tensors). ``progress``: a tqdm bar on a terminal.
    """
    from mslstm.training.progress import progress_bar

    bar = progress_bar(n, f"evaluate {net.config.name}", "seq", enabled=progress)
    mcfg = net.config
    t_in, t_out = mcfg.input_frames, mcfg.output_frames
    acc = MetricAccumulator() if acc is None else acc
    examples: list[tuple] = []
    # Trivial predictors as yardsticks (field MSE, sum over pixels per frame): a blank frame, and the last input
    # frame copied forward. A model that learned anything beats both.
    base_zero = base_copy = 0.0
    base_frames = 0
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        batch = ds.get_batch(idx)[:, : t_in + t_out].to(device)  # (B, T, C, H, W)
        with torch.autocast(device.type, enabled=False):
            out = split_output(net(batch, mask=None))[0].float()  # (B, T-1, C, H, W): pure rollout
        if frames == "future":
            pred, target = out[:, t_in - 1:], batch[:, t_in:]
        else:
            pred, target = out, batch[:, 1:]
        acc.update(pred, target)
        last = batch[:, t_in - 1: t_in] if frames == "future" else batch[:, :-1]
        base_zero += float(target.float().pow(2).sum())
        base_copy += float((target - last).float().pow(2).sum())
        base_frames += target.shape[0] * target.shape[1]
        for j in range(len(idx)):
            if len(examples) >= num_examples:
                break
            examples.append((batch[j, :t_in].cpu(), batch[j, t_in:].cpu(), out[j, t_in - 1:].clamp(0, 1).cpu()))
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    averaged, per_frame = acc.compute()
    averaged["baseline_blank_mse"] = base_zero / max(base_frames, 1)
    averaged["baseline_copy_last_mse"] = base_copy / max(base_frames, 1)
    # Skill: the share of the blank-frame error the model removes (0 = no better than predicting nothing).
    averaged["skill_vs_blank"] = 1.0 - averaged["mse"] / max(averaged["baseline_blank_mse"], 1e-12)
    first = t_in + 1 if frames == "future" else 2
    numbers = list(range(first, first + len(per_frame["mse"])))
    return averaged, per_frame, numbers, examples


def pick_checkpoint(path: str | os.PathLike, weights: str) -> Path:
    """The checkpoint to score: ``path`` itself when it is a file, else ``<path>/best.pt`` or ``<path>/last.pt`` as
    ``weights`` says (a ``CheckpointError`` names the folder when that file is missing)."""
    from mslstm.errors import CheckpointError

    path = Path(path)
    if path.is_dir():
        chosen = path / f"{weights}.pt"
        if not chosen.is_file():
            raise CheckpointError(f"{path}: no {chosen.name} in this folder (evaluate.weights: {weights}); train "
                                  "into it first, or set evaluate.weights to the file it holds")
        return chosen
    if path.name in ("best.pt", "last.pt") and path.name != f"{weights}.pt":
        log.warning("%s: scoring this file as given, although evaluate.weights is %s; pass the training folder to "
                    "let evaluate.weights choose", path, weights)
    return path


def _write_csv(path: Path, numbers: list[int], per_frame: dict[str, list[float]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = list(per_frame)
    w.writerow(["frame", *names])
    for i, k in enumerate(numbers):
        w.writerow([k, *(f"{per_frame[m][i]:.6g}" for m in names)])
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())


def _log_comparable(tracker: Any, out_dir: Path, split: str, numbers: list[int], per_frame: dict[str, list[float]],
                    averaged: dict[str, float], n_examples: int, step: int, plots: tuple[str, ...]) -> None:
    """What MLflow's UI compares across runs: the example strips and per-frame curves as images under fixed keys
    (``<split>_examples/sequence_<i>``, ``<split>_per_frame/<metric>``: one chart section each in MLflow's UI;
    step = the checkpoint's training step), and the
    evaluation tables (``eval/<split>_per_frame.json``, ``eval/<split>_metrics.json``) for the artifact view."""
    for i in range(n_examples):
        tracker.log_image(out_dir / f"example_{i}.png", key=f"{split}_examples/sequence_{i}", step=step)
    for m in plots:  # the metric set's per-frame line plots
        tracker.log_image(out_dir / f"per_frame_{m}.png", key=f"{split}_per_frame/{m}", step=step)
    tracker.log_table({"frame": numbers, **{m: [float(v) for v in values] for m, values in per_frame.items()}},
                      artifact_file=f"eval/{split}_per_frame.json")
    tracker.log_table({"metric": list(averaged), "value": [float(v) for v in averaged.values()]},
                      artifact_file=f"eval/{split}_metrics.json")


def evaluate(cfg: Any, checkpoint: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
             run_id: Optional[str] = None) -> dict[str, Any]:
    """Score ``checkpoint`` (a ``.pt`` file, or a training folder: ``evaluate.weights`` picks best.pt or last.pt) on
    ``cfg.evaluate.split`` of ``data_dir``; write metrics, CSV and pictures to ``out_dir``.

    MLflow: logs ``<split>_<metric>`` metrics, per-frame series (``<split>_<metric>_frame`` with step = frame
    number) and the output folder as artifacts under ``eval/``, into run ``run_id`` when given, else into the
    training run of the ``run.json`` beside the checkpoint, else into a new run.

    Returns ``{"metrics": {...}, "per_frame": {...}, "frames": [...], "sequences": n, "model": name,
    "run_id": ..., "files": [...]}``.
    """
    from mslstm.config import to_dict
    from mslstm.data.dataset import VideoDataset, check_dataset_matches
    from mslstm.devices import resolve_device
    from mslstm.evaluation import visuals
    from mslstm.training.checkpoint import load_model

    ecfg = cfg.evaluate
    checkpoint, data_dir, out_dir = pick_checkpoint(checkpoint, ecfg.weights), Path(data_dir), Path(out_dir)
    device = resolve_device(cfg.train.device, key="train.device")
    net, payload = load_model(checkpoint, map_location=device)
    mcfg = net.config
    ds = VideoDataset(data_dir, ecfg.split)
    check_dataset_matches(mcfg, ds.meta, data_dir, (ecfg.split,), model_from="the checkpoint's model")
    n = len(ds) if ecfg.max_sequences == 0 else min(len(ds), ecfg.max_sequences)
    mset = metric_set_for(ecfg.metric_set, str(ds.meta.get("source", "")))  # meta.json: "dwd:RYDL.hdf5"
    log.info("evaluating %s (%s) on %d %s sequences, frames=%s, metric set %s", checkpoint, mcfg.name, n,
             ecfg.split, ecfg.frames, mset.name)
    averaged, per_frame, numbers, examples = score(net, ds, ecfg.frames, ecfg.batch_size, n, device,
                                                   ecfg.num_examples, mset.accumulator(psnr=ecfg.psnr),
                                                   progress=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    files.append(write_json(out_dir / "metrics.json", {**averaged, "sequences": n}))
    _write_csv(out_dir / "per_frame.csv", numbers, per_frame)
    files.append(out_dir / "per_frame.csv")
    info = {
        "metrics": averaged,
        "per_frame": per_frame,
        "frames": numbers,
        "frames_mode": ecfg.frames,
        "split": ecfg.split,
        "metric_set": mset.name,
        "sequences": n,
        "model": mcfg.name,
        "model_config": to_dict(mcfg),
        "checkpoint": str(checkpoint),
        "checkpoint_step": payload.get("step"),
        "weights": ecfg.weights,
        "psnr_convention": ecfg.psnr,
    }
    files.append(write_json(out_dir / "eval.json", info))
    for m in mset.plots:
        files.append(visuals.save_metric_plot(out_dir / f"per_frame_{m}.png", numbers, per_frame[m], m,
                                              f"{mcfg.name}: {m} per frame ({ecfg.split}, {ecfg.frames})"))
    for i, (x, y, p) in enumerate(examples):
        files += mset.pictures(out_dir, i, x, y, p, f"{mcfg.name} {ecfg.split} sequence {i}")

    from mslstm.tracking import find_run_info, open_run, run_name

    run_info = None if run_id else find_run_info(checkpoint.parent)
    with open_run(cfg, run_id=run_id, run_info=run_info, run_name=run_name(cfg, "evaluate")) as tracker:
        split = ecfg.split
        series = [(f"{split}_{m}_frame", v, k) for m in per_frame for k, v in zip(numbers, per_frame[m])]
        tracker.log_metric_series(series + [(f"{split}_{k}", v, 0) for k, v in averaged.items()])
        tracker.set_tags({"eval.frames": ecfg.frames, "eval.split": split, "eval.sequences": str(n),
                          "eval.metric_set": mset.name, "eval.weights": checkpoint.name, "eval.psnr": ecfg.psnr})
        tracker.log_artifacts(out_dir, artifact_path="eval")
        _log_comparable(tracker, out_dir, split, numbers, per_frame, averaged, len(examples),
                        int(payload.get("step") or 0), tuple(mset.plots))
    log.info("%s: mse %.3f mae %.3f ssim %.4f psnr %.2f (blank-frame mse %.3f, copy-last mse %.3f)", mcfg.name,
             averaged["mse"], averaged["mae"], averaged["ssim"], averaged["psnr"], averaged["baseline_blank_mse"],
             averaged["baseline_copy_last_mse"])
    return {**info, "run_id": tracker.run_id, "files": [str(f) for f in files]}
