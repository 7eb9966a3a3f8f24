"""A model's training needs reach the trainer through its spec's ``recipe`` alone (one seam, no branch per model):
every registered recipe is valid, PredRNN-V2 trains with its weighted decoupling loss and the reverse
scheduled-sampling masks, and each recipe kind (plain stack, own core, aux loss + reverse sampling) trains under
a 2-process torchrun (gloo) with every parameter getting a gradient."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from model import list_specs, model_names
from model.registry import register_model, unregister
from mslstm.config import load_config
from mslstm.training.checkpoint import load_checkpoint
from mslstm.training.recipe import (
    SAMPLING_SCHEDULES,
    RecipeHints,
    _generator,
    build_recipe,
    reverse_sampling_mask,
    reverse_schedule,
)

PY = sys.executable
TINY = {
    "data": {"input_frames": 3, "output_frames": 3},
    "model": {"name": "predrnnv2", "frame_size": [16, 16], "input_frames": 3, "output_frames": 3, "hidden": 8,
              "layers": 2, "scales": [1, 1]},
    "train": {"epochs": 1, "batch_size": 2, "max_steps": 2, "progress": "quiet", "lr": 1e-3},
    "tracking": {"enabled": False},
}


def tiny_cfg(**over):
    flat = {f"{s}.{k}": v for s, sec in TINY.items() for k, v in sec.items()}
    return load_config(None, {**flat, **over})


def test_every_registered_recipe_is_valid_hints():
    reverse = set()
    for spec in list_specs():
        hints = RecipeHints.from_spec(spec.recipe, spec.name)
        assert hints.sampling in SAMPLING_SCHEDULES, spec.name
        if hints.sampling == "reverse":
            reverse.add(spec.name)
    assert RecipeHints.from_spec(None) == RecipeHints()
    assert reverse == {"predrnnv2", "mspredrnnv2"} and len(model_names()) >= 22


def test_reverse_schedule_draws_the_mask_of_the_run_progress():
    tcfg = tiny_cfg().train
    rec = build_recipe(tcfg, torch.device("cpu"), {"sampling": "reverse"}, total_steps=30)
    cpu = torch.device("cpu")
    m = rec.mask(4, 10, 3, 6, cpu)
    assert m.shape == (4, 4)                                         # (B, T - 2): input steps too
    expected = reverse_sampling_mask(10 / 30, 4, 3, 6, _generator(tcfg.seed, 10))
    assert torch.equal(m, expected)
    end = rec.mask(64, 30, 3, 6, cpu)
    assert end[:, :2].eq(1).all() and end[:, 2:].eq(0).all()         # end: inputs truth, outputs free
    assert rec.teacher_forcing_prob(15) == pytest.approx(reverse_schedule(0.5)[1])
    # two ranks take their rows of the same global mask
    halves = [rec.mask(2, 10, 3, 6, cpu, rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(torch.cat(halves), m[[0, 2, 1, 3]])
    assert build_recipe(tiny_cfg(**{"train.scheduled_sampling": False}).train, cpu, {"sampling": "reverse"},
                        30).mask(4, 10, 3, 6, cpu) is None


def _trainer(cfg, data_dir: Path, out: Path):
    from mslstm.training.checkpointer import Checkpointer
    from mslstm.training.distributed import DistInfo
    from mslstm.training.train import Trainer
    from mslstm.tracking import Tracker

    out.mkdir(parents=True)
    return Trainer(cfg, data_dir, out, DistInfo(), Checkpointer(out, 0, True), Tracker())


def _train_two_steps(cfg, data_dir: Path, out: Path) -> tuple[list[float], list[torch.Tensor], dict]:
    """Two real training steps; returns the per-step losses the recipe computed and the masks the model got."""
    trainer = _trainer(cfg, data_dir, out)
    masks: list[torch.Tensor] = []
    trainer.state.model.register_forward_pre_hook(
        lambda mod, args, kwargs: masks.append(kwargs["mask"].clone()) if mod.training else None, with_kwargs=True)
    metrics = trainer.fit()
    return [r["train_loss"] for r in trainer.state.history], masks, metrics


def test_predrnnv2_trains_with_its_weighted_decoupling_loss_and_reverse_masks(tiny_dataset, tmp_path):
    from model import get_spec
    from model.registry import ModelSpec

    spec = get_spec("predrnnv2")
    cfg = tiny_cfg()
    losses, masks, metrics = _train_two_steps(cfg, tiny_dataset, tmp_path / "v2")
    assert metrics["steps"] == 2 and len(masks) == 2
    # the masks follow the reverse schedule over the run's 2 steps: (B, T - 2), drawn at progress step / 2
    for step, m in enumerate(masks):
        assert m.shape == (2, 4)
        assert torch.equal(m, reverse_sampling_mask(step / 2, 2, 3, 6, _generator(cfg.train.seed, step)))
    # the same network and schedule with the decoupling weight at 0: a different loss, same masks
    zero = ModelSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "name": "zz-v2-noaux",
                        "recipe": {"sampling": "reverse", "aux_loss_weights": {"decouple": 0.0}}})
    register_model(zero)
    try:
        losses0, masks0, _ = _train_two_steps(tiny_cfg(**{"model.name": "zz-v2-noaux"}), tiny_dataset,
                                              tmp_path / "v2-noaux")
    finally:
        unregister(zero.name)
    assert all(torch.equal(a, b) for a, b in zip(masks, masks0))
    assert losses[0] != losses0[0]
    # the difference is the weighted aux loss (0.01 x Σ|cos| ∈ (0, 0.01 x layers x hidden])
    assert 0 < losses[0] - losses0[0] <= 0.01 * 2 * 8 + 1e-6


# ----------------------------------------------------------------------------------------------- DDP per kind
def _env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MSLSTM_FAULT", "TORCHELASTIC", "RANK", "WORLD_SIZE",
                                                                     "LOCAL_RANK", "MASTER_"))}
    return {**e, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory):
    from mslstm.data.dataset import write_dataset

    root = tmp_path_factory.mktemp("ddp-kinds")
    rng = np.random.default_rng(0)
    splits = {n: rng.integers(0, 256, size=(k, 6, 1, 16, 16), dtype=np.uint8)
              for n, k in (("train", 4), ("val", 2), ("test", 2))}
    write_dataset(root / "data", splits, input_frames=3, output_frames=3, source="tiny-random")
    return root


@pytest.mark.parametrize("name", ["convlstm", "predrnn", "predrnnv2"])  # plain stack, own core, aux + reverse
def test_each_recipe_kind_trains_under_two_process_ddp(ddp_data, name):
    tree = json.loads(json.dumps(TINY))
    tree["model"]["name"] = name
    tree["train"].update({"batch_size": 1, "max_steps": 2,      # per process: global batch 2
                          "amp": "off"})                         # the 1e-5 match below holds in fp32 only
    params = ddp_data / f"{name}.yaml"
    params.write_text(yaml.safe_dump(tree))
    out = ddp_data / name
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mslstm.cli",
           "--params", str(params), "train", "--data-dir", str(ddp_data / "data"), "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 2 and metrics["replica_max_abs_diff"] == 0.0
    if name == "predrnnv2":
        # DDP == one process on the same global batch: reverse masks sliced per rank, aux loss averaged alike
        single = ddp_data / f"{name}-single"
        res = subprocess.run([PY, "-m", "mslstm.cli", "--params", str(params), "--set", "train.batch_size=2",
                              "train", "--data-dir", str(ddp_data / "data"), "--out", str(single)],
                             capture_output=True, text=True, env=_env(), timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        a, b = load_checkpoint(out / "last.pt")["model"], load_checkpoint(single / "last.pt")["model"]
        assert "core.adapter.weight" in a
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    # (a parameter without a gradient would have stopped DDP at step 2: no find_unused_parameters)
