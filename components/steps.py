"""KFP v2 lightweight components: thin doors onto the step functions, run from the project image.

Each function below is the body of one component. Its source is shipped inside the compiled pipeline and runs in a
container of the project image (``base_image``), where the ``mslstm`` package is installed, so the bodies only
import the package, map artifact paths and parameters onto a step function, and record what came out. kfp fixes
``base_image`` when a component is made, so :func:`build_components` makes them for a given image.

The config travels as one JSON string parameter (``Config.to_dict()``); the per-run knobs (model, epochs, batch
size, learning rate, GPUs) are separate parameters applied as overrides (0 / "" = keep the config's value).
"""

import functools
from types import SimpleNamespace
from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def data(config: str, dataset: Output[Dataset]) -> None:
    """Prepare the processed dataset (``mslstm.data.prepare.prepare_data``).

    Args:
        config: the validated config as JSON (``Config.to_dict()``).
        dataset: output directory: ``{train,val,test}.npy`` and ``meta.json``.
    """
    from components.runtime import load_config_json, numeric_items
    from mslstm.data.prepare import prepare_data

    cfg = load_config_json(config)
    info = prepare_data(cfg, dataset.path) or {}
    dataset.metadata.update(numeric_items(info))


def validate(config: str, dataset: Input[Dataset], report: Output[HTML], metrics: Output[Metrics]) -> bool:
    """Validate the dataset with the Great Expectations suite (``mslstm.data.validate.validate_data``).

    Args:
        config: the validated config as JSON.
        dataset: the processed dataset from the data task.
        report: the validation report (HTML).
        metrics: expectation counts of the validation result.

    Returns:
        Whether every expectation held; training runs only when it is true. (A single return value rather than a
        named output: kfp 2.17's local runner cannot resolve conditions on named outputs with a dash-free name.)
    """
    import logging
    import os
    import tempfile

    from components.runtime import copy_file, load_config_json, log_metrics, read_json
    from mslstm.data.validate import validate_data
    from mslstm.errors import DataValidationError

    cfg = load_config_json(config)
    out = tempfile.mkdtemp(prefix="validate-")
    try:
        validate_data(cfg, dataset.path, out)
        passed = True
    except DataValidationError as exc:
        logging.getLogger("components").error("data validation failed: %s", exc)
        passed = False
    copy_file(os.path.join(out, "report.html"), report.path)
    log_metrics(metrics, read_json(os.path.join(out, "result.json")))
    metrics.log_metric("passed", float(passed))
    return passed


def train(
    config: str,
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    model_name: str = "",
    epochs: int = 0,
    batch_size: int = 0,
    lr: float = 0.0,
    gpus: int = 0,
) -> str:
    """Train on one node (``mslstm.training.train.train``); with ``gpus > 1`` under ``torchrun`` on this node, on a
    CPU node with the processes ``train.processes`` asks for (``mslstm.training.launch``, as ``mslstm train``).

    Args:
        config: the validated config as JSON.
        dataset: the processed dataset.
        model: output directory: ``best.pt``, ``last.pt``, ``metrics.json``, ``history.csv``, ``run.json``.
        metrics: the final training metrics.
        model_name: model to train ("" = the config's ``model.name``).
        epochs: epochs (0 = the config's).
        batch_size: batch size (0 = the config's).
        lr: learning rate (0 = the config's).
        gpus: GPUs of this node; more than one starts one process per GPU with torchrun.

    Returns:
        The MLflow run id training opened ("" when tracking is off).
    """
    import os
    import subprocess
    import sys
    import tempfile

    from components.runtime import load_config_json, log_metrics, read_json, run_overrides, write_params
    from mslstm.training.train import train as train_step

    cfg = load_config_json(config, run_overrides(model_name=model_name, epochs=epochs, batch_size=batch_size, lr=lr))
    gpus = int(gpus)
    if gpus > 1:
        params = write_params(cfg, os.path.join(tempfile.mkdtemp(prefix="train-"), "params.yaml"))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}",
               "-m", "mslstm", "--params", str(params), "train", "--data-dir", dataset.path, "--out", model.path]
        subprocess.run(cmd, check=True)
    else:  # a CPU node: train.processes as `mslstm train` does (one process per core for a full-size run)
        from mslstm.training.launch import local_processes, planned_sequences, relaunch, run_batch

        nproc = 1 if gpus == 1 else local_processes(cfg.train.processes, cfg.train.device,
                                                    global_batch=run_batch(cfg.train),
                                                    planned_sequences=planned_sequences(cfg.train, dataset.path))
        if nproc > 1:
            code = relaunch(cfg, nproc, ["train", "--data-dir", dataset.path, "--out", model.path])
            if code:
                raise RuntimeError(f"training failed: torchrun exited with status {code}")
        else:
            train_step(cfg, dataset.path, model.path)
    result = read_json(os.path.join(model.path, "metrics.json"))
    log_metrics(metrics, result)
    run = read_json(os.path.join(model.path, "run.json"))
    model.metadata["model_name"] = cfg.model.name
    model.metadata["run_id"] = run.get("run_id") or ""
    return run.get("run_id") or ""


def train_trainjob(
    config: str,
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    image: str,
    nodes: int,
    gpus: int,
    model_name: str = "",
    epochs: int = 0,
    batch_size: int = 0,
    lr: float = 0.0,
) -> str:
    """Train on several nodes: create a Kubeflow Trainer ``TrainJob`` (``torch-distributed``) and wait for it.

    Every node downloads ``dataset`` from the object store, runs ``torchrun -m mslstm train``; node 0 uploads the
    training directory, which this task then copies into its ``model`` artifact.

    Args:
        config: the validated config as JSON.
        dataset: the processed dataset (its URI is read by the nodes).
        model: output directory, as for the single-node train component.
        metrics: the final training metrics.
        image: the project image the nodes run.
        nodes: number of nodes.
        gpus: GPUs per node.
        model_name: model to train ("" = the config's).
        epochs: epochs (0 = the config's).
        batch_size: batch size (0 = the config's).
        lr: learning rate (0 = the config's).

    Returns:
        The MLflow run id training opened ("" when tracking is off).
    """
    import json
    import os

    from components.runtime import load_config_json, log_metrics, read_json, run_overrides
    from components.trainjob import build_trainjob, run_trainjob, trainjob_name
    from mslstm.data.s3 import download_dir

    cfg = load_config_json(config, run_overrides(model_name=model_name, epochs=epochs, batch_size=batch_size, lr=lr))
    p = cfg.pipeline
    out_uri = model.uri.rstrip("/") + "-trainjob"
    manifest = build_trainjob(
        name=trainjob_name(), image=image, num_nodes=int(nodes), gpus_per_node=int(gpus),
        config_json=json.dumps(cfg.to_dict()), data_uri=dataset.uri, out_uri=out_uri, namespace=p.namespace,
        runtime=p.trainer_runtime, accelerator=p.accelerator, cpu_request=p.train_cpu_request,
        memory_request=p.train_memory_request,
        secrets={name: list(keys) for name, keys in p.secret_keys().items()},
    )
    run_trainjob(manifest, timeout_s=p.trainjob_timeout_s)
    download_dir(out_uri, model.path)
    log_metrics(metrics, read_json(os.path.join(model.path, "metrics.json")))
    run = read_json(os.path.join(model.path, "run.json"))
    model.metadata["model_name"] = cfg.model.name
    model.metadata["run_id"] = run.get("run_id") or ""
    return run.get("run_id") or ""


def evaluate(
    config: str,
    dataset: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    model_name: str = "",
    cost: str = "",
) -> str:
    """Score the trained model on the test split (``mslstm.evaluation.evaluate.evaluate``).

    Args:
        config: the validated config as JSON.
        dataset: the processed dataset.
        model: the train task's model directory.
        evaluation: output directory: ``metrics.json``, ``per_frame.csv``, example PNGs and GIFs.
        metrics: the evaluation metrics (MSE, MAE, SSIM, PSNR...).
        report: metrics table and example pictures (HTML).
        model_name: model of this run ("" = the config's); only labels the result.
        cost: the profile task's ``cost.json`` as JSON ("" = none); passed through into the result.

    Returns:
        JSON ``{"model", "metrics", "model_config", "train": {"steps", "time_s"}, "cost"}``: one per-model result
        of ``mslstm.study.report.summarize_ablation`` (the ablation pipeline collects these).
    """
    import json
    import os

    from components.runtime import (
        html_report, load_config_json, log_metrics, read_json, run_id_in, run_overrides,
    )
    from mslstm.evaluation.evaluate import evaluate as evaluate_step

    cfg = load_config_json(config, run_overrides(model_name=model_name))
    # the training folder: evaluate.weights picks best.pt or last.pt in it
    evaluate_step(cfg, model.path, dataset.path, evaluation.path, run_id=run_id_in(model.path))
    result = read_json(os.path.join(evaluation.path, "metrics.json"))
    nums = log_metrics(metrics, result)
    html_report(report.path, f"Evaluation of {cfg.model.name}", nums, evaluation.path)
    info = read_json(os.path.join(evaluation.path, "eval.json"))
    trained = read_json(os.path.join(model.path, "metrics.json"))
    return json.dumps({
        "model": info.get("model") or cfg.model.name,
        "metrics": result,
        "model_config": info.get("model_config"),
        "train": {"steps": trained.get("steps"), "time_s": trained.get("train_time_s")},
        "cost": json.loads(cost) if cost else {},
    })


def profile(
    config: str, profile_dir: Output[Artifact], metrics: Output[Metrics], report: Output[Markdown], model_name: str = "",
    run_id: str = "",
) -> str:
    """Measure parameters, FLOPs, latency, memory and cost of the model (``mslstm.evaluation.profile.profile``).

    Args:
        config: the validated config as JSON.
        profile_dir: output directory: ``cost.json``, ``cost.md``.
        metrics: the cost figures.
        report: ``cost.md`` (Markdown).
        model_name: model to profile ("" = the config's).
        run_id: the MLflow run of the training (the train task's output) to log the cost into, as ``dvc repro``
            does ("" = a run of its own).

    Returns:
        JSON of ``cost.json``.
    """
    import json
    import os

    from components.runtime import copy_file, load_config_json, log_metrics, read_json, run_overrides
    from mslstm.evaluation.profile import profile as profile_step

    cfg = load_config_json(config, run_overrides(model_name=model_name))
    profile_step(cfg, profile_dir.path, run_id=run_id or None)
    cost = read_json(os.path.join(profile_dir.path, "cost.json"))
    log_metrics(metrics, cost)
    copy_file(os.path.join(profile_dir.path, "cost.md"), report.path)
    return json.dumps(cost)


def register(
    config: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    profile_dir: Input[Artifact],
    decision: Output[Artifact],
    model_name: str = "",
) -> str:
    """Register the model in the MLflow Model Registry behind the promotion gate
    (``mslstm.release.registry.register``).

    Args:
        config: the validated config as JSON.
        model: the train task's model directory.
        evaluation: the evaluate task's directory.
        profile_dir: the profile task's directory.
        decision: output directory: ``decision.json``.
        model_name: model of this run ("" = the config's).

    Returns:
        JSON of ``decision.json``.
    """
    import json
    import os

    from components.runtime import load_config_json, read_json, run_overrides
    from mslstm.release.registry import register as register_step

    cfg = load_config_json(config, run_overrides(model_name=model_name))
    register_step(cfg, model.path, evaluation.path, profile_dir.path, decision.path)
    result = read_json(os.path.join(decision.path, "decision.json"))
    for key in ("version", "promoted", "alias", "model_name"):
        if key in result and result[key] is not None:
            decision.metadata[key] = result[key]
    return json.dumps(result)


def summarize_ablation(
    config: str, results: List[str], summary: Output[Artifact], table: Output[Markdown], chart: Output[HTML]
) -> None:
    """Collect the per-model results of the ablation into the comparison table and radar chart
    (``mslstm.study.report.summarize_ablation``).

    Args:
        config: the validated config as JSON.
        results: one JSON string per model from the evaluate tasks (``dsl.Collected``).
        summary: output directory: ``ablation.md``, ``ablation.csv``, ``ablation.json``, ``radar.png``.
        table: the comparison table (Markdown).
        chart: the radar chart (HTML).
    """
    import os

    from components.runtime import ablation_results, copy_file, html_report, load_config_json
    from mslstm.study.report import summarize_ablation as summarize_step

    summarize_step(ablation_results(results), summary.path, cfg=load_config_json(config))
    copy_file(os.path.join(summary.path, "ablation.md"), table.path)
    html_report(chart.path, "Ablation: the MS-LSTM family", {}, summary.path)


COMPONENT_FUNCS = (data, validate, train, train_trainjob, evaluate, profile, register, summarize_ablation)


@functools.lru_cache(maxsize=None)
def build_components(image: str) -> SimpleNamespace:
    """Make the components for ``image`` (kfp fixes ``base_image`` at decoration time).

    Args:
        image: the project image (``pipeline.image``), in which the ``mslstm`` package and kfp are installed.

    Returns:
        A namespace with one component per step: ``data``, ``validate``, ``train``, ``train_trainjob``,
        ``evaluate``, ``profile``, ``register``, ``summarize_ablation``.
    """
    return SimpleNamespace(
        **{f.__name__: dsl.component(f, base_image=image, install_kfp_package=False) for f in COMPONENT_FUNCS}
    )
