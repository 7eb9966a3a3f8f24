"""The embedded default's training speed, idle and beside a competing CPU-bound process, per way of using the cores.

    .venv/bin/python bench/bench_first_run.py [--steps 60] [--modes auto,threads,passive,one] [--amp off,bf16]
                                              [--emulate-avx2] [--data-dir artifacts/dataset]

Every figure is the real ``mslstm train`` door on the embedded default (``params.yaml``; tracking off), run for
``--steps`` optimizer steps on the processed dataset: sequences/s = sequences trained / time in the training loop,
all processes together (``train.json``). Modes (C = the cores this process may use):

- ``auto``: what ``train.processes: 0`` (the default) starts for the full run: C processes under DDP, one thread
  each, splitting the batch (set explicitly: a run of ``--steps`` steps alone is below the size where auto starts
  them);
- ``threads``: one process with C OpenMP threads (the previous default);
- ``passive``: ``threads`` with ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep instead of spinning at each barrier);
- ``one``: one process, one thread.

Each mode runs idle, then beside ``python -c 'while True: pass'`` that this script starts (and stops); the ratio
loaded / idle is what a user keeps when something else runs on the machine. ``--amp`` off = fp32; bf16 only where
the CPU has it natively. ``--emulate-avx2`` runs the trainings as on an AVX2-only CPU (``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2``; ``amp: auto`` is then fp32). Measure on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "auto": ({"train.processes": "CORES"}, {}),
    "threads": ({"train.processes": 1}, {}),
    "passive": ({"train.processes": 1}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "one": ({"train.processes": 1}, {"MSLSTM_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}),
}


def train_rate(data_dir: Path, out: Path, steps: int, amp: str, overrides: dict, env_extra: dict,
               emulate_avx2: bool) -> tuple[float, int]:
    """(sequences/s, processes) of one ``mslstm train`` run of ``steps`` steps."""
    from mslstm.devices import default_threads

    sets = {"train.max_steps": steps, "train.amp": f"'{amp}'", "train.progress": "quiet",
            "train.log_every_steps": 1000, "tracking.enabled": "false", **overrides}
    if sets.get("train.processes") == "CORES":
        sets["train.processes"] = default_threads()
    cmd = [sys.executable, "-m", "mslstm", "-q", "--params", str(ROOT / "params.yaml")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    cmd += ["train", "--data-dir", str(data_dir), "--out", str(out)]
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MSLSTM_NUM_THREADS", "OMP_WAIT_POLICY"):
        env.pop(var, None)
    env.update(env_extra)
    if emulate_avx2:
        env.update({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    info = json.loads((out / "train.json").read_text())
    return float(info["seq_per_s"]), int(info.get("world_size", 1))


def capability(emulate_avx2: bool) -> str:
    env = dict(os.environ, **({"ATEN_CPU_CAPABILITY": "avx2"} if emulate_avx2 else {}))
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--modes", default="auto,threads,passive,one")
    ap.add_argument("--amp", default="off,bf16", help="precisions: off (fp32) and/or bf16 (skipped without it)")
    ap.add_argument("--emulate-avx2", action="store_true", help="run as on an AVX2-only CPU (see the docstring)")
    ap.add_argument("--data-dir", default=str(ROOT / "artifacts" / "dataset"))
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from mslstm.training.recipe import cpu_supports_bf16

    data_dir = Path(args.data_dir)
    if not (data_dir / "meta.json").is_file():
        sys.exit(f"error: no processed dataset in {data_dir}: run `mslstm data` (or make run) first")
    if args.emulate_avx2:
        os.environ.update({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    amps = [a for a in args.amp.split(",") if a == "off" or (a == "bf16" and cpu_supports_bf16())]
    cap = capability(args.emulate_avx2)
    print(f"CPU capability {cap}{' (emulated: ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2)' if args.emulate_avx2 else ''}"
          f", {os.cpu_count()} CPUs, {args.steps} steps of the embedded default per figure, load average at start "
          f"{os.getloadavg()[0]:.2f}")
    print("| precision | mode | processes | idle seq/s | beside 1 busy process seq/s | kept |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-first-run-") as tmp:
        for amp in amps:
            for mode in args.modes.split(","):
                overrides, env_extra = MODES[mode]
                idle, nproc = train_rate(data_dir, Path(tmp) / "idle", args.steps, amp, overrides, env_extra,
                                         args.emulate_avx2)
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    time.sleep(0.5)
                    loaded, _ = train_rate(data_dir, Path(tmp) / "load", args.steps, amp, overrides, env_extra,
                                           args.emulate_avx2)
                finally:
                    hog.kill()
                    hog.wait()
                name = "fp32" if amp == "off" else amp
                print(f"| {name} | {mode} | {nproc} | {idle:.1f} | {loaded:.1f} | {loaded / idle:.0%} |", flush=True)


if __name__ == "__main__":
    main()
