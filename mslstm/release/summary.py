"""What a finished run (``dvc repro`` / ``make run``) produced, in a few lines: the test figures against the trivial
baselines, the registry's decision, where the pictures are and how to open MLflow.

    from mslstm.release.summary import read_summary, format_summary
    print(format_summary(read_summary("artifacts")))

Reads (each optional; a missing one is reported as not run yet): ``train/metrics.json``, ``train/run.json``,
``eval/metrics.json``, ``eval/eval.json``, ``eval/example_*.{png,gif}``, ``profile/cost.json``,
``register/decision.json`` under the artifacts folder. A file that exists but is not a JSON object raises
:class:`~mslstm.errors.MSLSTMError` naming it.
"""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Optional

from mslstm.errors import MSLSTMError

FILES = {
    "train": "train/metrics.json",
    "run": "train/run.json",
    "eval": "eval/metrics.json",
    "eval_info": "eval/eval.json",
    "cost": "profile/cost.json",
    "decision": "register/decision.json",
}


def _read(path: Path) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MSLSTMError(f"{path}: unreadable ({type(exc).__name__}: {exc}); re-run the stage that writes it "
                          "(dvc repro)") from exc
    if not isinstance(data, dict):
        raise MSLSTMError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_summary(artifacts: str | os.PathLike = "artifacts", tracking_uri: Optional[str] = None) -> dict[str, Any]:
    """Everything :func:`format_summary` prints, from the files under ``artifacts`` (pure reads; no MLflow).

    ``tracking_uri``: the MLflow store for the ``mlflow ui`` command when no ``run.json`` or ``decision.json``
    names one (e.g. ``tracking.uri`` of the config).
    """
    root = Path(artifacts)
    found = {key: _read(root / rel) for key, rel in FILES.items()}
    eval_dir = root / "eval"
    pictures = sorted(eval_dir.glob("example_*.png")) + sorted(eval_dir.glob("example_*.gif"))
    uri = ((found["decision"] or {}).get("tracking_uri") or (found["run"] or {}).get("tracking_uri")
           or tracking_uri)
    return {"artifacts": str(root), **found, "pictures": [str(p) for p in pictures], "tracking_uri": uri,
            "missing": [str(root / FILES[k]) for k in ("train", "eval", "decision") if found[k] is None]}


def _num(v: Any, fmt: str = ".4g") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"


def mlflow_ui_command(uri: Optional[str]) -> Optional[str]:
    """The ``mlflow ui`` command that shows the runs of tracking store ``uri`` (None for none)."""
    if not uri:
        return None
    if uri.startswith(("http://", "https://")):
        return None  # a server already serves it: open the URI itself
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


def format_summary(s: dict[str, Any]) -> str:
    """The summary as about eight short lines of text."""
    lines = []
    train, ev, info, cost, dec = s.get("train"), s.get("eval"), s.get("eval_info"), s.get("cost"), s.get("decision")
    model = (info or {}).get("model") or (train or {}).get("model") or "?"
    head = f"run summary ({s['artifacts']}/)"
    lines.append(head)
    if train:
        lines.append(f"  trained   {model}: {train.get('steps', '?')} steps, best val MSE "
                     f"{_num(train.get('best_val_mse'))}, {_num(train.get('seq_per_s'), '.3g')} seq/s")
    if ev:
        split = (info or {}).get("split", "test")
        lines.append(f"  {split:<9} MSE {_num(ev.get('mse'))} per frame, SSIM {_num(ev.get('ssim'), '.3f')}, "
                     f"PSNR {_num(ev.get('psnr'), '.2f')} dB ({ev.get('sequences', '?')} sequences)")
        blank, copy = ev.get("baseline_blank_mse"), ev.get("baseline_copy_last_mse")
        skill_copy = (1.0 - ev["mse"] / copy if isinstance(copy, (int, float)) and copy > 0
                      and isinstance(ev.get("mse"), (int, float)) else None)
        lines.append(f"  baselines blank frame MSE {_num(blank)}, copy-last-frame MSE {_num(copy)}; skill "
                     f"{_num(ev.get('skill_vs_blank'), '+.2f')} vs blank, {_num(skill_copy, '+.2f')} vs copy-last "
                     "(1 = perfect, <= 0 = no better)")
    if cost:
        est = cost.get("estimate") or {}
        lines.append(f"  cost      {_num(cost.get('step_time_s'), '.3g')} s/step (batch {cost.get('batch_size', '?')}, "
                     f"amp {cost.get('amp', '?')}, {cost.get('device', '?')}); training ~"
                     f"{_num(est.get('device_hours'), '.2g')} device-hours")
    if dec:
        if dec.get("version"):
            verdict = "promoted" if dec.get("promoted") else "not promoted"
            lines.append(f"  registry  {verdict}: {dec.get('model_uri')} = version {dec['version']}")
        else:
            lines.append(f"  registry  not promoted, nothing registered ({'; '.join(dec.get('reasons') or [])[:120]})")
    if s.get("pictures"):
        first = s["pictures"][0]
        lines.append(f"  pictures  {first} (+{len(s['pictures']) - 1} more in {Path(first).parent}/)")
    ui = mlflow_ui_command(s.get("tracking_uri"))
    if ui:
        lines.append(f"  mlflow    {ui}   # then open http://127.0.0.1:5000")
    elif s.get("tracking_uri"):
        lines.append(f"  mlflow    {s['tracking_uri']}")
    for path in s.get("missing", []):
        lines.append(f"  not yet   {path} (run `dvc repro`)")
    return "\n".join(lines)
