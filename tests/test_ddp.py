"""DDP through torchrun (gloo on CPU): 2 processes == 1 process on the same effective batch, two "nodes" with a c10d
rendezvous on 127.0.0.1, and a worker killed under ``--max-restarts 1`` recovering from the last checkpoint."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mslstm.training.checkpoint import load_checkpoint

PY = sys.executable
TINY = {
    "data": {"input_frames": 3, "output_frames": 3},
    "model": {"name": "mslstm", "frame_size": [16, 16], "input_frames": 3, "output_frames": 3, "hidden": 8,
              "layers": 2, "scales": [1, 1]},
    # per-process batch 1 on 2 processes: 4 steps/epoch; scheduled sampling on (masks must agree across layouts);
    # fp32: the layouts agree to 1e-5 in fp32, bf16 autocast (amp auto on a bf16 CPU) rounds batch 1 and 2 apart
    "train": {"epochs": 3, "batch_size": 1, "ss_decay_steps": 8, "checkpoint_every_steps": 3, "progress": "quiet",
              "schedule": "cosine", "lr": 1e-3, "amp": "off"},
    "tracking": {"enabled": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from mslstm.data.dataset import write_dataset

    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    splits = {n: rng.integers(0, 256, size=(k, 6, 1, 16, 16), dtype=np.uint8)
              for n, k in (("train", 8), ("val", 4), ("test", 2))}
    write_dataset(root / "data", splits, input_frames=3, output_frames=3, source="tiny-random")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(TINY))
    return root, params


def env(**extra: str) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MSLSTM_FAULT", "TORCHELASTIC", "RANK", "WORLD_SIZE",
                                                                     "LOCAL_RANK", "MASTER_"))}
    return {**e, "OMP_NUM_THREADS": "1", **extra}


def torchrun(args: list[str], params: Path, data: Path, out: Path, *extra: str, environ: dict | None = None,
             wait: bool = True):
    cmd = [PY, "-m", "torch.distributed.run", *args, "-m", "mslstm.cli", "--params", str(params), "train",
           "--data-dir", str(data), "--out", str(out), *extra]
    # own session: on a timeout the agent *and* its workers are killed (no orphaned workers left behind)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ or env(),
                            start_new_session=True)
    if not wait:
        return proc
    return finish(proc)


def finish(proc: subprocess.Popen, timeout: float = 240) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n[test] killed after {timeout}s"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def ddp_run(setup):
    root, params = setup
    out = root / "ddp2"
    res = torchrun(["--standalone", "--nproc-per-node", "2"], params, root / "data", out)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_two_processes_match_one_process_on_the_same_effective_batch(setup, ddp_run):
    root, params = setup
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_batch"] == 2 and metrics["steps"] == 12
    # every rank ends with the same weights (broadcast + all-reduced max |w_rank - w_0|)
    assert metrics["replica_max_abs_diff"] == 0.0
    ck = load_checkpoint(ddp_run / "last.pt")
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in ck["model"])
    single = root / "single"
    res = subprocess.run([PY, "-m", "mslstm.cli", "--params", str(params), "--set", "train.batch_size=2", "train",
                          "--data-dir", str(root / "data"), "--out", str(single)], capture_output=True, text=True,
                         timeout=300, env=env())
    assert res.returncode == 0, res.stderr[-3000:]
    assert load_checkpoint(single / "last.pt")["step"] == 12
    assert max_diff(weights(ddp_run / "last.pt"), weights(single / "last.pt")) < 1e-5
    m1 = json.loads((single / "metrics.json").read_text())
    assert m1["best_val_mse"] == pytest.approx(metrics["best_val_mse"], rel=1e-5)


def test_two_nodes_with_c10d_rendezvous(setup, ddp_run):
    root, params = setup
    out = root / "nodes"
    port = free_port()
    common = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "mslstm-test", "--max-restarts", "0"]
    agents = [torchrun([*common, "--rdzv-conf", f"is_host={int(i == 0)}", "--local-addr", "127.0.0.1"], params,
                       root / "data", out, wait=False, environ=env(MASTER_ADDR="127.0.0.1"))
              for i in range(2)]
    results = [finish(a) for a in agents]
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["replica_max_abs_diff"] == 0.0
    # same computation as the single-node 2-process run
    assert max_diff(weights(out / "last.pt"), weights(ddp_run / "last.pt")) < 1e-6


def test_worker_killed_under_max_restarts_recovers_from_last_checkpoint(setup, ddp_run):
    root, params = setup
    out = root / "restart"
    res = torchrun(["--standalone", "--nproc-per-node", "2", "--max-restarts", "1"], params, root / "data", out,
                   environ=env(MSLSTM_FAULT_STEP="7", MSLSTM_FAULT_RANK="1", MSLSTM_FAULT_MODE="exit"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "fault injection: rank 1 dies after step 7" in res.stderr
    assert "resumed from" in res.stderr and "step 6" in res.stderr  # the restart continued from last.pt at step 6
    ck = load_checkpoint(out / "last.pt")
    assert ck["step"] == 12
    assert max_diff(ck["model"], weights(ddp_run / "last.pt")) <= 1e-6
