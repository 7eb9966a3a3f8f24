"""The Kubeflow pipelines: training (data -> validate -> train -> evaluate -> profile -> register) and ablation.

Both are built from a validated :class:`mslstm.config.Config`: its JSON is the default of the ``config``
parameter, and the per-run knobs (model, epochs, batch size, learning rate, GPUs, nodes, registry gate) are
pipeline parameters whose defaults come from it, so a compiled pipeline can be re-run with other values.
The image is not a run parameter: KFP fixes a component's image when the pipeline is compiled, so
``pipeline.image`` (``--set pipeline.image=...`` when compiling or submitting) is the image of every component and
of the TrainJob nodes alike.
"""

import json
from typing import Any, Callable, List

from kfp import dsl
from kfp import kubernetes

from components.steps import build_components
from mslstm.config import Config

def _secrets(task: dsl.PipelineTask, cfg: Config) -> dsl.PipelineTask:
    """Expose the MLflow and S3 credentials as env from their secret(s) (by default the one S3 secret holds both;
    values never enter the pipeline YAML, only the secret names and keys)."""
    for name, keys in cfg.pipeline.secret_keys().items():
        kubernetes.use_secret_as_env(task, secret_name=name, secret_key_to_env={k: k for k in keys}, optional=True)
    return task


def _light(task: dsl.PipelineTask, cfg: Config) -> dsl.PipelineTask:
    task.set_cpu_request(cfg.pipeline.cpu_request).set_memory_request(cfg.pipeline.memory_request)
    return _secrets(task, cfg)


def _heavy(task: dsl.PipelineTask, cfg: Config, gpus: Any) -> dsl.PipelineTask:
    p = cfg.pipeline
    task.set_cpu_request(p.train_cpu_request).set_memory_request(p.train_memory_request)
    task.set_accelerator_type(p.accelerator).set_accelerator_limit(gpus)
    return _secrets(task, cfg)


def _no_cache(task: dsl.PipelineTask) -> dsl.PipelineTask:
    # Train/evaluate/register write MLflow runs and registry versions: never reuse an old execution.
    return task.set_caching_options(False)


def _data_tasks(c: Any, cfg: Config, config: Any) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
    data_task = _light(c.data(config=config), cfg).set_caching_options(cfg.pipeline.cache_data)
    data_task.set_display_name("data")
    val_task = _light(c.validate(config=config, dataset=data_task.outputs["dataset"]), cfg)
    val_task.set_caching_options(cfg.pipeline.cache_data).set_display_name("validate")
    return data_task, val_task


def _profile(c: Any, cfg: Config, config: Any, train_task: dsl.PipelineTask, model_name: Any) -> dsl.PipelineTask:
    """The cost profile, logged into the training run (the train task's output), as ``dvc repro`` does: one MLflow
    run per training, with its data, training, evaluation and cost."""
    task = _light(c.profile(config=config, model_name=model_name, run_id=train_task.outputs["Output"]), cfg)
    return _no_cache(task).set_display_name("profile")


def _after_train(c, cfg, config, data_task, train_task, model_name, register, gpus) -> None:
    profile_task = _profile(c, cfg, config, train_task, model_name)
    ev = _heavy(
        c.evaluate(config=config, dataset=data_task.outputs["dataset"], model=train_task.outputs["model"],
                   model_name=model_name),
        cfg, gpus,
    )
    _no_cache(ev).set_display_name("evaluate")
    with dsl.If(register == True, name="registry-gate"):  # noqa: E712 (kfp condition, not a Python bool)
        rg = _light(
            c.register(config=config, model=train_task.outputs["model"], evaluation=ev.outputs["evaluation"],
                       profile_dir=profile_task.outputs["profile_dir"], model_name=model_name),
            cfg,
        )
        _no_cache(rg).set_display_name("register")


def build_training_pipeline(cfg: Config) -> Callable:
    """The training pipeline for ``cfg`` (parameter defaults and image from it).

    Args:
        cfg: a validated :class:`mslstm.config.Config`.

    Returns:
        The ``@dsl.pipeline`` function (compile it, or call it under ``kfp.local``).
    """
    c = build_components(cfg.pipeline.image)
    p = cfg.pipeline
    default_config = json.dumps(cfg.to_dict(), sort_keys=True)

    @dsl.pipeline(name=p.name, description="MS-LSTM video prediction: data -> validate -> train -> evaluate -> profile -> register")
    def mslstm_training(
        config: str = default_config,
        model_name: str = cfg.model.name,
        epochs: int = cfg.train.epochs,
        batch_size: int = cfg.train.batch_size,
        lr: float = cfg.train.lr,
        gpus: int = p.gpus,
        nodes: int = p.nodes,
        register: bool = p.register,
    ) -> None:
        """Train, evaluate, profile and (behind the registry gate) register one model.

        Args:
            config: the whole validated config as JSON (``Config.to_dict()``).
            model_name: model to train: a registered model name (`mslstm models` lists them).
            epochs: training epochs (0 = the config's).
            batch_size: batch size per process (0 = the config's).
            lr: learning rate (0 = the config's).
            gpus: GPUs per node (0 = CPU; >1 runs torchrun inside the train task).
            nodes: training nodes; >1 runs a Kubeflow Trainer TrainJob.
            register: register the model in the MLflow Model Registry (promotion gate applies).
        """
        data_task, val_task = _data_tasks(c, cfg, config)
        with dsl.If(val_task.outputs["Output"] == True, name="data-valid"):  # noqa: E712
            with dsl.If(nodes > 1, name="multi-node"):
                tj = _light(
                    c.train_trainjob(config=config, dataset=data_task.outputs["dataset"], image=p.image, nodes=nodes,
                                     gpus=gpus, model_name=model_name, epochs=epochs, batch_size=batch_size, lr=lr),
                    cfg,
                )
                _no_cache(tj).set_display_name("train (TrainJob)")
                _after_train(c, cfg, config, data_task, tj, model_name, register, 0)
            with dsl.Else(name="single-node"):
                tr = _heavy(
                    c.train(config=config, dataset=data_task.outputs["dataset"], model_name=model_name,
                            epochs=epochs, batch_size=batch_size, lr=lr, gpus=gpus),
                    cfg, gpus,
                )
                _no_cache(tr).set_display_name("train")
                _after_train(c, cfg, config, data_task, tr, model_name, register, gpus)

    return mslstm_training


def build_ablation_pipeline(cfg: Config) -> Callable:
    """The ablation pipeline: one train + evaluate per model (``dsl.ParallelFor``), then the comparison.

    Args:
        cfg: a validated :class:`mslstm.config.Config` (``ablation`` section: models and budget).

    Returns:
        The ``@dsl.pipeline`` function.
    """
    c = build_components(cfg.pipeline.image)
    p = cfg.pipeline
    from mslstm.study.budget import ablation_config

    acfg = ablation_config(cfg, cfg.model.name)  # the shared budget; model.name is set per iteration
    default_config = json.dumps(acfg.to_dict(), sort_keys=True)

    @dsl.pipeline(name=f"{p.name}-ablation", description="MS-LSTM comparison: any list of models (default the paper ablation) on the same data and budget")
    def mslstm_ablation(
        config: str = default_config,
        models: List[str] = list(cfg.ablation.models),
        epochs: int = acfg.train.epochs,
        batch_size: int = acfg.train.batch_size,
        lr: float = acfg.train.lr,
        gpus: int = min(p.gpus, 1),
    ) -> None:
        """Train and evaluate each model of the family, then tabulate and chart them side by side.

        Args:
            config: the whole validated config as JSON, ablation budget applied.
            models: the models to compare.
            epochs: training epochs per model (0 = the config's).
            batch_size: batch size (0 = the config's).
            lr: learning rate (0 = the config's).
            gpus: GPUs per model's train task (0 or 1).
        """
        data_task, val_task = _data_tasks(c, cfg, config)
        with dsl.If(val_task.outputs["Output"] == True, name="data-valid"):  # noqa: E712
            with dsl.ParallelFor(models, name="models", parallelism=p.ablation_parallelism) as model_name:
                tr = _heavy(
                    c.train(config=config, dataset=data_task.outputs["dataset"], model_name=model_name,
                            epochs=epochs, batch_size=batch_size, lr=lr, gpus=gpus),
                    cfg, gpus,
                )
                _no_cache(tr).set_display_name("train")
                pr = _profile(c, cfg, config, tr, model_name)
                ev = _heavy(
                    c.evaluate(config=config, dataset=data_task.outputs["dataset"], model=tr.outputs["model"],
                               model_name=model_name, cost=pr.outputs["Output"]),
                    cfg, gpus,
                )
                _no_cache(ev).set_display_name("evaluate")
            summary = _light(c.summarize_ablation(config=config, results=dsl.Collected(ev.outputs["Output"])), cfg)
            _no_cache(summary).set_display_name("ablation summary")

    return mslstm_ablation


def build_pipeline(cfg: Config, ablation: bool | None = None) -> Callable:
    """The training pipeline, or the ablation one when ``ablation`` (default: ``cfg.pipeline.ablation``)."""
    use_ablation = cfg.pipeline.ablation if ablation is None else ablation
    return build_ablation_pipeline(cfg) if use_ablation else build_training_pipeline(cfg)
