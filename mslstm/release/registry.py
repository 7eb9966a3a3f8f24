"""The register step: promote a trained model into the MLflow Model Registry only when the gate passes.

    from mslstm.release.registry import register
    decision = register(cfg, "artifacts/train", "artifacts/eval", "artifacts/profile", "artifacts/register")

Gate (``register`` section), both must hold:

1. quality: the new ``<metric>`` (test MSE by default, from ``eval_dir/metrics.json``) is at least as good as the
   current ``models:/<model_name>@<alias>`` version's by the relative margin ``min_improvement``
   (:func:`meets_margin`: new <= champion x (1 - margin) when lower is better, new >= champion x (1 + margin)
   when higher is better; so with margin 0 an exact tie, e.g. a reproducible re-run, is promoted; passes when
   there is no champion yet);
2. cost: the estimated training device-hours (``profile_dir/cost.json``) <= ``max_device_hours`` and forward
   FLOPs per sequence <= ``max_flops`` (each skipped when null).

Pass: a new model version (pyfunc flavour, the checkpoint as artifact) gets the ``alias`` (``champion``) and tags /
a description with the compared numbers. Fail: with ``on_reject: challenger`` the version is registered with the
``challenger_alias``; with ``nothing`` no version is created. Either way ``out_dir/decision.json`` says what was
decided and why.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from mslstm.errors import MSLSTMError, RegistryError
from mslstm.evaluation.metrics import LOWER_IS_BETTER
from mslstm.io import write_json

if TYPE_CHECKING:
    from mslstm.config import Config

log = logging.getLogger(__name__)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise RegistryError(f"{path}: {what} not found (run the step that writes it first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: unreadable {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: {what} must be a JSON object")
    return data


def champion_metric(client: Any, name: str, alias: str, metric: str) -> tuple[Optional[Any], Optional[float]]:
    """(model version behind ``name@alias`` or None, its ``test_<metric>`` or None)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None, None
    value = mv.tags.get(f"test_{metric}")
    if value is None and mv.run_id:
        try:
            value = client.get_run(mv.run_id).data.metrics.get(f"test_{metric}")
        except MlflowException:
            value = None
    return mv, None if value is None else float(value)


def meets_margin(metric: str, new: float, champion: float, margin: float) -> bool:
    """The quality rule of the gate: new <= champion x (1 - margin) for a lower-is-better metric, new >= champion x
    (1 + margin) for a higher-is-better one (a tie passes with margin 0)."""
    if LOWER_IS_BETTER[metric]:
        return new <= champion * (1.0 - margin)
    return new >= champion * (1.0 + margin)


def gate(cfg: Config, metrics: dict[str, Any], cost: dict[str, Any], champion_value: Optional[float]
         ) -> tuple[bool, list[str]]:
    """The promotion decision and its reasons (pure: no MLflow)."""
    rc = cfg.register
    reasons: list[str] = []
    ok = True
    metric = rc.metric
    if metric not in metrics:
        raise RegistryError(f"register.metric: {metric!r} not in the evaluation metrics ({', '.join(metrics)})")
    new = float(metrics[metric])
    word = "lower" if LOWER_IS_BETTER[metric] else "higher"
    if champion_value is None:
        reasons.append(f"no {rc.alias} yet: test {metric} {new:.6g} is the first")
    elif meets_margin(metric, new, champion_value, rc.min_improvement):
        verb = "ties" if new == champion_value else "beats"
        reasons.append(f"test {metric} {new:.6g} {verb} the {rc.alias}'s {champion_value:.6g} "
                       f"({word} is better, margin {rc.min_improvement:.3g})")
    else:
        ok = False
        reasons.append(f"test {metric} {new:.6g} does not beat the {rc.alias}'s {champion_value:.6g} "
                       f"by the margin {rc.min_improvement:.3g} ({word} is better)")
    budgets = (
        (float(cost.get("estimate", {}).get("device_hours", 0.0)), rc.max_device_hours,
         "estimated training {v:.4g} device-hours {w} the budget {b:.4g}"),
        (float(cost.get("flops_forward", 0.0)), rc.max_flops, "{v:.4g} forward FLOPs/sequence {w} the budget {b:.4g}"),
    )
    for value, budget, text in budgets:
        if budget is not None:
            within = value <= budget
            ok = ok and within
            reasons.append(text.format(v=value, b=budget, w="within" if within else "over"))
    return ok, reasons


def register(cfg: Config, train_dir: str | os.PathLike, eval_dir: str | os.PathLike, profile_dir: str | os.PathLike,
             out_dir: str | os.PathLike) -> dict[str, Any]:
    """Apply the gate; register/alias the model in MLflow; write ``out_dir/decision.json``; return the decision."""
    import mlflow

    from mslstm.release.pyfunc import log_pyfunc_model
    from mslstm.tracking import connect, find_run_info, open_run, run_name
    from mslstm.evaluation.evaluate import pick_checkpoint
    from mslstm.training.checkpoint import load_model

    rc = cfg.register
    train_dir, eval_dir, profile_dir, out_dir = map(Path, (train_dir, eval_dir, profile_dir, out_dir))
    checkpoint = pick_checkpoint(train_dir, cfg.evaluate.weights)  # the weights the evaluation scored
    metrics = _read_json(eval_dir / "metrics.json", "evaluation metrics")
    cost = _read_json(profile_dir / "cost.json", "cost profile")
    net, _ = load_model(checkpoint)  # refuses a broken checkpoint before anything is registered
    mcfg = net.config
    if cost.get("model") and cost["model"] != mcfg.name:
        log.warning("%s profiles model %r but the checkpoint is %r", profile_dir / "cost.json", cost["model"],
                    mcfg.name)

    run_info = find_run_info(train_dir)
    uri, client = connect(cfg, run_info)
    champ, champ_value = champion_metric(client, rc.model_name, rc.alias, rc.metric)
    promoted, reasons = gate(cfg, metrics, cost, champ_value)
    compared = {
        "metric": rc.metric,
        "new": float(metrics[rc.metric]),
        "champion": champ_value,
        "champion_version": None if champ is None else str(champ.version),
        "device_hours": float(cost.get("estimate", {}).get("device_hours", 0.0)),
        "flops_forward": float(cost.get("flops_forward", 0.0)),
        "params": cost.get("params"),
    }
    alias = rc.alias if promoted else (rc.challenger_alias if rc.on_reject == "challenger" else None)
    decision: dict[str, Any] = {
        "promoted": promoted,
        "model_name": rc.model_name,
        "alias": alias,
        "version": None,
        "model_uri": None,
        "reasons": reasons,
        "compared": compared,
        "checkpoint": str(checkpoint),
        "tracking_uri": uri,
        "run_id": None,
    }
    if alias is not None:
        try:
            with open_run(cfg, run_info=run_info, run_name=run_name(cfg, "register"), force=True) as tracker:
                info = log_pyfunc_model(checkpoint, mcfg)
                decision["run_id"] = tracker.run_id
            mv = mlflow.register_model(info.model_uri, rc.model_name)
            version = str(mv.version)
            tags = {f"test_{k}": str(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            tags.update({
                "model": mcfg.name,
                "gate": "passed" if promoted else "failed",
                "gate.reasons": " | ".join(reasons)[:4900],
                "cost.device_hours": str(compared["device_hours"]),
                "cost.flops_forward": str(compared["flops_forward"]),
                "cost.params": str(compared["params"]),
                "checkpoint": str(checkpoint),
            })
            for k, v in tags.items():
                client.set_model_version_tag(rc.model_name, version, k, v)
            what = "promoted to" if promoted else "registered as"
            client.update_model_version(rc.model_name, version,
                                        description=f"{mcfg.name} {what} @{alias}: " + "; ".join(reasons))
            client.set_registered_model_alias(rc.model_name, alias, version)
        except MSLSTMError:
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; one error naming the model
            raise RegistryError(f"models:/{rc.model_name}: registering failed at {uri} "
                                f"({type(exc).__name__}: {str(exc)[:300]})") from exc
        decision.update(version=version, model_uri=f"models:/{rc.model_name}@{alias}")
    write_json(out_dir / "decision.json", decision)
    verdict = "PROMOTED" if promoted else "NOT promoted"
    log.info("%s %s (%s): %s", rc.model_name, verdict, decision["model_uri"] or "nothing registered",
             "; ".join(reasons))
    return decision
