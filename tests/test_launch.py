"""``train.processes``: how many local processes ``mslstm train`` starts, and that starting them trains the same run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mslstm.config import load_config
from mslstm.errors import ConfigError
from mslstm.training.launch import (
    MIN_SEQUENCES_FOR_PROCESSES,
    local_processes,
    planned_sequences,
    run_batch,
    torchrun_command,
    under_launcher,
    worker_env,
)

PY = sys.executable
TINY = {
    "data": {"input_frames": 3, "output_frames": 3},
    "model": {"name": "mslstm", "frame_size": [16, 16], "input_frames": 3, "output_frames": 3, "hidden": 8,
              "layers": 2, "scales": [1, 1], "patch_size": 4},
    "train": {"epochs": 2, "batch_size": 4, "ss_decay_steps": 4, "progress": "quiet", "lr": 0.003},
    "tracking": {"enabled": False},
}


# ------------------------------------------------------------------------------------------------ the rule (pure)
def test_auto_is_one_process_per_core_on_cpu_and_one_on_gpu():
    assert local_processes(0, cores=2, cuda=False) == 2
    assert local_processes(0, cores=1, cuda=False) == 1
    assert local_processes(0, cores=8, cuda=True) == 1
    assert local_processes(3, cores=2, cuda=False) == 3      # an explicit count is taken as it is
    assert local_processes(1, cores=16, cuda=False) == 1
    assert local_processes(0, device="cpu", cores=4) == 4    # device cpu: no CUDA probe, the cores decide


def test_auto_splits_the_batch_evenly_and_skips_small_runs():
    assert local_processes(0, cores=3, cuda=False, global_batch=16) == 2   # 16 does not split over 3
    assert local_processes(0, cores=4, cuda=False, global_batch=6) == 3
    assert local_processes(0, cores=2, cuda=False, global_batch=16,
                           planned_sequences=MIN_SEQUENCES_FOR_PROCESSES - 1) == 1
    assert local_processes(0, cores=2, cuda=False, global_batch=16,
                           planned_sequences=MIN_SEQUENCES_FOR_PROCESSES) == 2


def test_planned_sequences_and_run_batch(tiny_dataset):
    cfg = load_config(None, {"train.epochs": 3, "train.batch_size": 4})
    assert run_batch(cfg.train) == 4
    assert planned_sequences(cfg.train, tiny_dataset) == 3 * 8      # 8 training sequences x 3 epochs
    capped = load_config(None, {"train.epochs": 3, "train.batch_size": 4, "train.max_steps": 1})
    assert planned_sequences(capped.train, tiny_dataset) == 4
    glob = load_config(None, {"train.global_batch_size": 6})
    assert run_batch(glob.train) == 6
    assert planned_sequences(cfg.train, tiny_dataset / "missing") is None   # train() reports the missing dataset


def test_embedded_default_trains_with_one_process_per_core():
    """The default run (params.yaml) is big enough for the processes: 2,048 x 6 sequences."""
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    assert cfg.train.processes == 0
    assert cfg.data.train_sequences * cfg.train.epochs >= MIN_SEQUENCES_FOR_PROCESSES
    assert local_processes(cfg.train.processes, "cpu", cores=2, global_batch=run_batch(cfg.train),
                           planned_sequences=cfg.data.train_sequences * cfg.train.epochs) == 2


def test_workers_split_the_cores_and_the_command_is_torchrun():
    env = worker_env(2, 2, env={"PATH": "/bin"})
    assert env["OMP_NUM_THREADS"] == env["MSLSTM_NUM_THREADS"] == "1" and env["PATH"] == "/bin"
    assert worker_env(2, 8, env={})["OMP_NUM_THREADS"] == "4"
    assert worker_env(4, 2, env={})["OMP_NUM_THREADS"] == "1"
    cmd = torchrun_command(2, "p.yaml", ["train", "--out", "o"])
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc-per-node=2" in cmd
    assert cmd[-5:] == ["--params", "p.yaml", "train", "--out", "o"]
    assert under_launcher({"WORLD_SIZE": "2"}) and under_launcher({"TORCHELASTIC_RUN_ID": "x"})
    assert not under_launcher({"PATH": "/bin"})


def test_negative_processes_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="train.processes"):
        load_config(None, {"train.processes": -1})


# --------------------------------------------------------------------------------------------- the door, for real
def _train(tmp: Path, data: Path, name: str, processes: int) -> dict:
    tree = json.loads(json.dumps(TINY))
    tree["train"]["processes"] = processes
    params = tmp / f"{name}.yaml"
    params.write_text(yaml.safe_dump(tree))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["MSLSTM_NUM_THREADS"] = "2"   # two cores to split, whatever this machine has
    res = subprocess.run([PY, "-m", "mslstm.cli", "--params", str(params), "train", "--data-dir", str(data),
                          "--out", str(tmp / name)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((tmp / name / "train.json").read_text())


def test_two_processes_train_the_run_one_process_trains(tmp_path, tiny_dataset):
    """``processes: 2`` starts torchrun with 2 workers that split the batch of 4 (2 each): the same optimizer steps,
    global batch and losses as one process, up to float summation order."""
    two = _train(tmp_path, tiny_dataset, "two", 2)
    one = _train(tmp_path, tiny_dataset, "one", 1)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["global_batch"] == one["global_batch"] == 4
    assert two["steps"] == one["steps"] == 4                 # 8 sequences / 4 x 2 epochs
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert two["best_val_mse"] == pytest.approx(one["best_val_mse"], rel=1e-4)
    assert not any(tmp_path.glob("two/*.yaml"))               # the launcher's params file is not left in the output


def test_bf16_counts_as_missing_when_aten_runs_at_avx2():
    """``ATEN_CPU_CAPABILITY=avx2`` runs as an AVX2-only CPU does: ``amp: auto`` is fp32 there."""
    code = ("import torch; from mslstm.training.recipe import amp_settings; "
            "print(amp_settings('auto', torch.device('cpu'))[0])")
    out = subprocess.run([PY, "-c", code], env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


def test_training_metrics_say_which_cpu_produced_the_throughput(tmp_path, tiny_dataset):
    info = _train(tmp_path, tiny_dataset, "facts", 1)
    import torch

    assert info["cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert info["cpu_native_bf16"] in (0, 1) and info["amp_bf16"] in (0, 1) and info["threads_per_process"] == 2
    numbers = json.loads((tmp_path / "facts" / "metrics.json").read_text())
    assert {"cpu_native_bf16", "amp_bf16", "threads_per_process"} <= set(numbers)   # in the dvc metrics too
