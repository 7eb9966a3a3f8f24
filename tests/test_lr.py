"""The learning rate the optimizer actually uses, read back from it at every step, against the config.

Effective lr = ``train.lr`` scaled to the global batch (``lr_scaling``: linear lr * B / base_batch, sqrt
lr * sqrt(B / base_batch)), then the schedule (cosine from it to ``min_lr_ratio`` of it over all steps) — written
out here by hand. A global optimizer step pre-hook records ``param_groups[0]["lr"]`` just before each update; with
2 processes (torchrun, gloo) a small driver installs the same hook in each rank.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from torch.optim.optimizer import register_optimizer_step_pre_hook

from mslstm.config import load_config

TINY = {
    "data.input_frames": 3, "data.output_frames": 3, "model.name": "convlstm", "model.frame_size": [16, 16],
    "model.input_frames": 3, "model.output_frames": 3, "model.hidden": 4, "model.layers": 1, "model.scales": [1],
    "model.patch_size": 4, "train.progress": "quiet", "train.val_batches": 1, "train.device": "cpu",
    "tracking.enabled": False,
}


def expected_lrs(lr: float, base: int, global_batch: int, scaling: str, schedule: str, min_ratio: float,
                 total: int) -> list[float]:
    peak = {"none": lr, "linear": lr * global_batch / base, "sqrt": lr * math.sqrt(global_batch / base)}[scaling]
    if schedule == "none":
        return [peak] * total
    floor = peak * min_ratio
    return [floor + (peak - floor) * (1 + math.cos(math.pi * k / total)) / 2 for k in range(total)]


@pytest.fixture
def seen_lrs():
    lrs: list[float] = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    yield lrs
    handle.remove()


@pytest.mark.parametrize("scaling, schedule, batch", [("linear", "cosine", 4), ("sqrt", "none", 8),
                                                      ("none", "cosine", 2)])
def test_one_process_lr_read_back_from_the_optimizer(tiny_dataset, tmp_path, seen_lrs, scaling, schedule, batch):
    from mslstm.training.train import train

    torch.set_num_threads(1)
    cfg = load_config(None, {**TINY, "train.epochs": 2, "train.batch_size": batch, "train.lr": 1e-3,
                             "train.base_batch": 2, "train.lr_scaling": scaling, "train.schedule": schedule,
                             "train.min_lr_ratio": 0.1})
    metrics = train(cfg, tiny_dataset, tmp_path / "train")
    total = 2 * (8 // batch)
    assert len(seen_lrs) == total == metrics["steps"]
    want = expected_lrs(1e-3, 2, batch, scaling, schedule, 0.1, total)
    assert seen_lrs == pytest.approx(want, rel=1e-7, abs=0)
    assert metrics["lr"] == pytest.approx(want[0], rel=1e-12)


DRIVER = textwrap.dedent("""
    import json, os, sys
    from torch.optim.optimizer import register_optimizer_step_pre_hook
    import model
    lrs, masks = [], []
    register_optimizer_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    build = model.build_model

    def watched(config):
        net = build(config)
        def hook(module, args, kwargs):
            if module.training:
                masks.append(None if kwargs.get("mask") is None else kwargs["mask"].tolist())
        net.register_forward_pre_hook(hook, with_kwargs=True)
        return net

    model.build_model = watched
    from mslstm.cli import main
    rc = main(sys.argv[2:])
    with open(os.path.join(sys.argv[1], f"lrs-{os.environ['RANK']}.json"), "w") as f:
        json.dump({"rc": rc, "lrs": lrs, "masks": masks, "world_size": int(os.environ["WORLD_SIZE"])}, f)
    sys.exit(rc)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_two_processes_lr_is_scaled_to_the_global_batch(tiny_dataset, tmp_path):
    """2 processes x batch 2 = global batch 4: linear scaling doubles lr at base_batch 2; cosine over 4 steps.
    The same run records each rank's scheduled-sampling masks: this rank's rows, different from the other's."""
    params = tmp_path / "params.yaml"
    tree: dict = {}
    for key, value in {**TINY, "train.epochs": 2, "train.batch_size": 2, "train.lr": 1e-3, "train.base_batch": 2,
                       "train.lr_scaling": "linear", "train.schedule": "cosine", "train.min_lr_ratio": 0.1,
                       "train.ss_decay_steps": 8}.items():
        sec, k = key.split(".", 1)
        tree.setdefault(sec, {})[k] = value
    params.write_text(yaml.safe_dump(tree))
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSLSTM_FAULT", "TORCHELASTIC", "RANK",
                                                                     "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
           "--master-addr=127.0.0.1", f"--master-port={_free_port()}", str(tmp_path / "driver.py"), str(tmp_path),
           "--params", str(params), "train", "--data-dir", str(tiny_dataset), "--out", str(tmp_path / "train")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=280)
    assert proc.returncode == 0, proc.stderr[-4000:]
    want = expected_lrs(1e-3, 2, 4, "linear", "cosine", 0.1, total=4)   # 8 sequences / global 4 = 2 steps x 2 epochs
    masks = {}
    for rank in (0, 1):
        got = json.loads((tmp_path / f"lrs-{rank}.json").read_text())
        assert got["rc"] == 0 and got["world_size"] == 2
        assert got["lrs"] == pytest.approx(want, rel=1e-7, abs=0), rank
        masks[rank] = torch.tensor(got["masks"])                           # (steps, batch 2, n_mask 2)
        assert masks[rank].shape == (4, 2, 2)
    # ss 1 -> 0 over 8 steps: prob 1, 7/8, 3/4, 5/8 at steps 0-3; 8 draws per step over both ranks
    probs = torch.tensor([1.0, 0.875, 0.75, 0.625])
    both = torch.cat([masks[0], masks[1]], dim=1)                          # (steps, global batch 4, 2)
    assert both[0].eq(1).all()
    assert abs(float(both.sum()) - 8 * float(probs.sum())) <= 4 * math.sqrt(8 * float((probs * (1 - probs)).sum()))
    assert not torch.equal(masks[0][1:], masks[1][1:])                     # each rank draws its own rows
    metrics = json.loads((tmp_path / "train" / "train.json").read_text())  # metrics.json holds the numbers DVC diffs
    assert metrics["global_batch"] == 4 and metrics["lr"] == pytest.approx(2e-3, rel=1e-12)
