"""Faults a real cluster meets (issue 15): full disks and read-only mounts (real tmpfs mounts), two runs starting
together on a new SQLite MLflow store, a checkpoint whose weights no longer fit, forged checkpoints carrying code,
a hung DDP worker (SIGSTOP) and the metric history after a resume.

Mounting needs root (CI has it); where ``mount`` is impossible those tests are skipped and say why.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mslstm.errors import CheckpointError, OutputError
from mslstm.training.checkpoint import _unpickler_reason, load_checkpoint, save_checkpoint

PY = sys.executable
TINY = {
    "data": {"input_frames": 3, "output_frames": 3},
    "model": {"name": "mslstm", "frame_size": [16, 16], "input_frames": 3, "output_frames": 3, "hidden": 8,
              "layers": 2, "scales": [1, 1]},
    "train": {"epochs": 3, "batch_size": 2, "progress": "quiet"},
    "tracking": {"enabled": False},
}


def params(path: Path, **overrides) -> Path:
    tree = json.loads(json.dumps(TINY))
    for key, value in overrides.items():
        sec, k = key.split(".", 1)
        tree.setdefault(sec, {})[k] = value
    path.write_text(yaml.safe_dump(tree))
    return path


def clean_env(**extra: str) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MSLSTM_FAULT", "TORCHELASTIC", "RANK", "WORLD_SIZE",
                                                                     "LOCAL_RANK", "MASTER_", "MLFLOW_"))}
    return {**e, "OMP_NUM_THREADS": "1", **extra}


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "mslstm.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env or clean_env(), timeout=timeout)


def one_error_line(res: subprocess.CompletedProcess) -> str:
    """The CLI failed with exit 2 and exactly one ``error:`` line, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, res.stderr[-3000:]
    return errors[0]


@pytest.fixture
def tmpfs(tmp_path):
    """``make(size, ro=False) -> Path``: a fresh tmpfs of ``size`` mounted under tmp_path (unmounted afterwards)."""
    mounts: list[Path] = []

    def make(size: str, ro: bool = False) -> Path:
        mnt = tmp_path / f"mnt{len(mounts)}"
        mnt.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                             text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip() or res.returncode}")
        mounts.append(mnt)
        if ro:
            (mnt / "existing").mkdir()
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        return mnt

    yield make
    for m in reversed(mounts):
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


@pytest.fixture
def dataset(tmp_path) -> Path:
    from mslstm.data.dataset import write_dataset

    rng = np.random.default_rng(0)
    splits = {n: rng.integers(0, 256, size=(k, 6, 1, 16, 16), dtype=np.uint8)
              for n, k in (("train", 8), ("val", 4), ("test", 2))}
    write_dataset(tmp_path / "data", splits, input_frames=3, output_frames=3, source="tiny-random")
    return tmp_path / "data"


def fill(mnt: Path, leave: int) -> Path:
    """Fill the tmpfs ``mnt`` until about ``leave`` bytes are free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


# ------------------------------------------------------------------------------------ 1. full disk, data step
def test_full_disk_in_the_data_step_fails_before_writing_and_leaves_no_staging(tmp_path, tmpfs):
    mnt = tmpfs("2m")
    res = cli("--set", "data.train_sequences=64", "data", "--out", str(mnt / "ds"), cwd=tmp_path)
    line = one_error_line(res)
    assert str(mnt / "ds") in line and "needs" in line and "free" in line, line
    assert list(mnt.iterdir()) == []  # no .ds.<random>.tmp staging folder


def test_memory_mapped_split_write_on_a_full_disk_is_enospc_not_a_bus_error(tmp_path, tmpfs):
    mnt = tmpfs("1m")
    code = ("import errno, numpy as np, pathlib\n"
            "from mslstm.data.sources import write_split_chunks\n"
            "try:\n"
            f"    write_split_chunks(pathlib.Path({str(mnt)!r}), 'train', (64, 20, 1, 64, 64), np.uint8, iter(()))\n"
            "except OSError as e:\n"
            "    print('errno', e.errno == errno.ENOSPC)\n")
    res = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=120)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])  # -7 (SIGBUS) on the old code
    assert "errno True" in res.stdout


def test_full_disk_with_a_source_of_unknown_size_is_one_error_and_no_staging(tmp_path, tmpfs):
    from mslstm.config import load_config
    from mslstm.data.dataset import make_meta
    from mslstm.data.prepare import prepare_data
    from mslstm.data.sources import DataSource, register_source, unregister_source
    from mslstm.data.sources._frames import SplitWriter

    def build(ctx):  # grows .npy files block by block like the kth / dwd sources
        with SplitWriter(ctx.staging, np.uint8) as w:
            for _ in range(200):
                w.append("train", np.zeros((4, 6, 1, 64, 64), np.uint8))
            infos = w.close()
        return make_meta(infos, dtype="uint8", input_frames=10, output_frames=10)

    name = f"grow-{uuid.uuid4().hex[:6]}"
    register_source(DataSource(name, "test source growing its files", "generated", build))
    mnt = tmpfs("1m")
    try:
        cfg = load_config(None, {"data.source": name})
        with pytest.raises(OutputError, match=f"{mnt / 'ds'}.*no space left.*free"):
            prepare_data(cfg, mnt / "ds")
    finally:
        unregister_source(name)
    assert list(mnt.iterdir()) == []


# ----------------------------------------------------------------------------------- 2. concurrent SQLite store
def test_two_trainings_starting_together_on_a_new_sqlite_store_are_both_recorded(tmp_path, dataset):
    import mlflow

    p = params(tmp_path / "p.yaml", **{"train.max_steps": 1, "tracking.enabled": True,
                                       "tracking.system_metrics": False, "tracking.log_model": False,
                                       "tracking.log_checkpoint": False})
    procs = [subprocess.Popen([PY, "-m", "mslstm.cli", "--params", str(p), "train", "--data-dir", str(dataset),
                               "--out", str(tmp_path / f"run{i}")], cwd=tmp_path, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [(pr.wait(timeout=300), pr.stderr.read()) for pr in procs]
    for rc, err in results:
        assert rc == 0, err[-3000:]  # "table experiments already exists" / "duplicate column name" before
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mslstm").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]


# ------------------------------------------------------------------------------------ 3. full disk, training
def test_checkpoint_write_on_a_full_disk_names_the_file_and_free_space(tmpfs):
    mnt = tmpfs("1m")
    payload = {"model_config": {}, "model": {f"w{i}": torch.zeros(1) for i in range(400)}}
    save_checkpoint(mnt / "last.pt", payload)
    before = (mnt / "last.pt").read_bytes()
    fill(mnt, 8192)  # more than the tensors' bytes, less than the file: torch's writer fails mid-file
    with pytest.raises(OutputError, match=r"last\.pt.*free"):
        save_checkpoint(mnt / "last.pt", {**payload, "step": 2})
    assert (mnt / "last.pt").read_bytes() == before
    assert [p.name for p in mnt.iterdir() if p.name.endswith(".tmp")] == []


def test_full_disk_while_training_is_one_error_line_and_resume_works(tmp_path, tmpfs, dataset):
    mnt = tmpfs("2m")
    out = mnt / "train"
    p = params(tmp_path / "p.yaml", **{"train.max_steps": 2})
    assert cli("--params", str(p), "train", "--data-dir", str(dataset), "--out", str(out), cwd=tmp_path).returncode == 0
    filler = fill(mnt, 4096)
    p4 = params(tmp_path / "p4.yaml", **{"train.max_steps": 4, "train.checkpoint_every_steps": 1})
    res = cli("--params", str(p4), "train", "--data-dir", str(dataset), "--out", str(out), "--resume", cwd=tmp_path)
    line = one_error_line(res)
    assert str(out / "last.pt") in line and "free" in line, line
    assert load_checkpoint(out / "last.pt")["step"] == 2  # the previous last.pt is intact
    filler.unlink()
    res = cli("--params", str(p4), "train", "--data-dir", str(dataset), "--out", str(out), "--resume", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert load_checkpoint(out / "last.pt")["step"] == 4


# ------------------------------------------------------------------------------------ 4. read-only output folder
def test_read_only_output_folder_is_one_error_line_for_data_and_train(tmp_path, tmpfs, dataset):
    mnt = tmpfs("1m", ro=True)
    line = one_error_line(cli("data", "--out", str(mnt / "existing" / "ds"), cwd=tmp_path))
    assert "read-only" in line and str(mnt / "existing" / "ds") in line, line
    p = params(tmp_path / "p.yaml", **{"train.max_steps": 1})
    for out in (mnt / "train", mnt / "existing"):
        line = one_error_line(cli("--params", str(p), "train", "--data-dir", str(dataset), "--out", str(out),
                                  cwd=tmp_path))
        assert "read-only" in line and str(out) in line, line


# ------------------------------------------------------------------------- 5. weights that no longer fit the code
def test_checkpoint_with_matching_config_but_other_weights_touches_nothing(tmp_path, dataset, monkeypatch):
    import mlflow

    from mslstm.config import load_config
    from mslstm.training.train import train

    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    torch.set_num_threads(1)
    flat = {f"{s}.{k}": v for s, sec in TINY.items() for k, v in sec.items()}
    flat.update({"tracking.enabled": True, "tracking.system_metrics": False, "tracking.log_model": False,
                 "tracking.log_checkpoint": False, "train.max_steps": 2})
    cfg = load_config(None, flat)
    out = tmp_path / "train"
    train(cfg, dataset, out)
    run_json = (out / "run.json").read_bytes()
    run_id = json.loads(run_json)["run_id"]
    ck = torch.load(out / "last.pt", weights_only=True)
    key = sorted(ck["model"])[0]
    ck["model"][key] = torch.zeros(3, 3)  # as after a code change: same model config, other weights
    ck["model"]["new.extra"] = torch.zeros(1)
    torch.save(ck, out / "last.pt")
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(CheckpointError, match=r"last\.pt: weights do not fit") as info:
        train(cfg.replace({"train.max_steps": 4}), dataset, out, resume=True)
    assert f"{key} (3, 3)" in str(info.value) and "new.extra" in str(info.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot
    assert mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id).info.status == "FINISHED"


# ------------------------------------------------------------------------------------- 6. forged checkpoints
class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __reduce__(self):
        return eval, ("__import__('os').getpid()",)


def _forge(path: Path, how: str, marker: Path) -> None:
    evil = {"format_version": 1, "model_config": {}, "model": {"w": _System(marker)}}
    if how == "zip-global":       # torch.save (protocol 2): "unsupported GLOBAL posix.system ... is blocked"
        torch.save(evil, path)
    elif how == "zip-stack-global":  # protocol 4 inside torch's zip: STACK_GLOBAL
        torch.save(evil, path, pickle_protocol=4)
    elif how == "zip-builtin":    # "WeightsUnpickler error: Unsupported global: GLOBAL eval was not an allowed global"
        torch.save({"format_version": 1, "model": {"w": _Eval()}}, path)
    else:                         # a bare pickle, not torch's format: "Unsupported operand 149"
        path.write_bytes(pickle.dumps(evil, protocol=4))


@pytest.mark.parametrize("how", ["zip-global", "zip-stack-global", "zip-builtin", "raw-pickle"])
def test_forged_checkpoint_is_refused_as_holding_code_without_weights_only_advice(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "forged.pt"
    _forge(path, how, marker)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "holds code" in msg and ("system" in msg or "eval" in msg), msg
    assert "weights_only" not in msg.replace(" ", "_").lower() and "\n" not in msg, msg
    assert not marker.exists()


@pytest.mark.parametrize("text", [
    "Weights only load failed. In PyTorch 2.6, we changed the default value of the `weights_only` argument in "
    "`torch.load` from `False` to `True`. Re-running `torch.load` with `weights_only` set to `False` will likely "
    "succeed.\n\n\nTrying to load unsupported GLOBAL posix.system whose module posix is blocked.\n\nCheck the "
    "documentation of torch.load",
    "Weights only load failed. This file can still be loaded:\n\t(1) Re-running `torch.load` with `weights_only` set"
    " to `False` will likely succeed\n\tWeightsUnpickler error: Unsupported global: GLOBAL builtins.open was not an "
    "allowed global by default.",
    "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed.\n"
    "Please file an issue with the following so that we can make `weights_only=True` compatible with your use case:"
    " WeightsUnpickler error: \n\nUnsupported operand 149\n\nCheck the documentation",
])
def test_torch_refusal_wordings_never_leak_the_weights_only_advice(text):
    reason = _unpickler_reason(text)
    assert "weights_only" not in reason.replace(" ", "_").lower() and reason
    assert any(w in reason for w in ("posix.system", "builtins.open", "operand 149")), reason


# ------------------------------------------------------------------------------------------- 7. hung worker
def test_hung_ddp_worker_ends_the_job_naming_the_rank_and_the_run_failed(tmp_path, dataset):
    import mlflow

    from mslstm.tracking import prepare_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_store(uri)  # the store's creation must not eat into the short timeout below
    p = params(tmp_path / "p.yaml", **{"train.batch_size": 1, "train.collective_timeout": 15,
                                       "tracking.enabled": True, "tracking.system_metrics": False,
                                       "tracking.log_model": False, "tracking.log_checkpoint": False})
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mslstm.cli",
           "--params", str(p), "train", "--data-dir", str(dataset), "--out", str(tmp_path / "out")]
    env = clean_env(MSLSTM_FAULT_STEP="2", MSLSTM_FAULT_RANK="1", MSLSTM_FAULT_MODE="stop")
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):  # the stopped worker and anything left of the job
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        proc.communicate() if proc.poll() is None else None
    assert proc.returncode != 0
    assert time.time() - t0 < 240
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert errors and "rank 1 stopped answering" in errors[0] and "collective_timeout" in errors[0], err[-3000:]
    run_id = json.loads((tmp_path / "out" / "run.json").read_text())["run_id"]
    assert mlflow.MlflowClient(uri).get_run(run_id).info.status == "FAILED"


# ------------------------------------------------------------------------------ 8. metric history after resume
def test_metric_history_after_sigkill_and_resume_has_one_point_per_step(tmp_path, dataset):
    import mlflow

    p = params(tmp_path / "p.yaml", **{"train.checkpoint_every_steps": 3, "train.log_every_steps": 1,
                                       "tracking.enabled": True, "tracking.system_metrics": False,
                                       "tracking.log_model": False, "tracking.log_checkpoint": False,
                                       "tracking.log_every_steps": 1})
    args = ("--params", str(p), "train", "--data-dir", str(dataset), "--out", str(tmp_path / "out"))
    killed = cli(*args, cwd=tmp_path, env=clean_env(MSLSTM_FAULT_STEP="5"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = cli(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run_id = json.loads((tmp_path / "out" / "run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
    assert sorted(steps) == list(range(1, 13)), steps  # steps 4 and 5 were logged twice before
    assert client.get_run(run_id).info.status == "FINISHED"
