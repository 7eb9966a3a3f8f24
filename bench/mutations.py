"""Mutation check: plant named one-line bugs in the learner, the rollout, the metrics, the validation rules and the
gate; run only the tests that should catch each; print caught / survived.

Not part of CI (minutes of CPU). Each mutation is (name, file, exact old text, new text, pytest arguments). The
repository's files (``git ls-files``, plus untracked files git does not ignore) are copied once into a temporary
folder; each mutation is applied there, its tests run from the copy (``PYTHONPATH`` = the copy, so subprocesses
such as the CLI and torchrun use the mutated code too) with ``-x -q``, and the file is restored. Before any
mutation, the union of the selected tests runs once unmutated: a test that fails on clean code would count every
mutation as caught, so the script stops there.

    python bench/mutations.py                    # all, prints a markdown table (goes in docs/testing.md)
    python bench/mutations.py --list
    python bench/mutations.py --only tf-prob-inverted,lr-x1e-3 --keep-going

Exit status 0 when every mutation marked ``must`` (the ones in the issue's table) is caught and at least 90 % of
all mutations are.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    must: bool = False            # one of the planted bugs of issue 16's table or issue 22's list


SS = "tests/test_sampling.py"
LEARN = "tests/test_learning.py"
LR1 = ("tests/test_lr.py", "-k", "one_process")
LR = ("tests/test_lr.py",)

MUTATIONS: tuple[Mutation, ...] = (
    # ---- the table
    Mutation("tf-prob-inverted", "mslstm/training/recipe.py",
             "    prob = linear_teacher_forcing(tcfg, step)\n    return torch.bernoulli",
             "    prob = 1.0 - linear_teacher_forcing(tcfg, step)\n    return torch.bernoulli",
             (SS, "-k", "masks_the_model_receives"), must=True),
    Mutation("rollout-mask-column-0", "model/networks.py",
             "m = mask[:, t - mask_from].view(b, 1, 1, 1)", "m = mask[:, 0].view(b, 1, 1, 1)",
             (SS, "-k", "rollout"), must=True),
    Mutation("lr-x1e-3", "mslstm/training/train.py",
             "self.lr = tcfg.scaled_lr(self.global_batch)", "self.lr = tcfg.scaled_lr(self.global_batch) * 1e-3",
             LR1, must=True),
    Mutation("lr-x1e-3-in-optimizer", "mslstm/training/recipe.py",
             "return torch.optim.Adam(params, lr=lr, weight_decay=tcfg.weight_decay)",
             "return torch.optim.Adam(params, lr=lr * 1e-3, weight_decay=tcfg.weight_decay)",
             (LEARN,), must=True),
    Mutation("no-optimizer-step", "mslstm/training/recipe.py",
             "    scaler.step(opt)\n", "", (LEARN,), must=True),
    Mutation("validate-min-bound-off", "mslstm/data/validate.py",
             '{"column": "min", "min_value": lo - tol,', '{"column": "min", "min_value": -1e9,',
             ("tests/test_validate.py", "-k", "min_rule"), must=True),
    Mutation("mk-output-gate-one-branch", "model/zoo/mklstm.py",
             "o_sum = term if o_sum is None else o_sum + term", "o_sum = term",
             ("tests/test_model.py", "-k", "mk_cell"), must=True),
    Mutation("ssim-uniform-window", "mslstm/evaluation/metrics.py",
             "gaussian_kernel=True, sigma=SSIM_SIGMA", "gaussian_kernel=False, sigma=SSIM_SIGMA",
             ("tests/test_metrics.py", "-k", "ssim"), must=True),
    # torchmetrics sizes a Gaussian window from sigma and ignores kernel_size: this one changes nothing the
    # metric computes; test_metrics pins SSIM_KERNEL to the size sigma implies so the constant cannot drift
    Mutation("ssim-window-7", "mslstm/evaluation/metrics.py", "SSIM_KERNEL = 11", "SSIM_KERNEL = 7",
             ("tests/test_metrics.py", "-k", "ssim")),
    Mutation("gate-ok-is-last-budget", "mslstm/release/registry.py", "ok = ok and within", "ok = within",
             ("tests/test_registry.py", "-k", "gate"), must=True),
    Mutation("resume-ignores-position", "mslstm/training/train.py",
             "batches[st.position:]", "batches[0:]",
             ("tests/test_train.py", "-k", "sigkill"), must=True),
    # ---- issue 22: five planted bugs the suite let through, and the pipeline's wiring
    Mutation("loss-drops-last-frame", "mslstm/training/recipe.py",
             "total = LOSSES[self.loss_name](pred, target)",
             "total = LOSSES[self.loss_name](pred[:, :-1], target[:, :-1])",
             ("tests/test_train.py", "-k", "last_included"), must=True),
    Mutation("grad-clip-only-with-scaler", "mslstm/training/recipe.py",
             "    if grad_clip > 0:\n        scaler.unscale_(opt)",
             "    if grad_clip > 0 and scaler.is_enabled():\n        scaler.unscale_(opt)",
             ("tests/test_train.py", "-k", "grad_clip"), must=True),
    Mutation("warp-vertical-sign", "model/zoo/_ops.py",
             "gy = (ys + flow[:, 1])", "gy = (ys - flow[:, 1])",
             ("tests/test_zoo_baselines.py", "-k", "warp"), must=True),
    Mutation("rain-threshold-strict", "mslstm/evaluation/metrics.py",
             "clamp(0.0, 1.0).unsqueeze(-1) >= px              # (B, T, C, H, W, K)\n"
             "    y = target.detach().float().unsqueeze(-1) >= px",
             "clamp(0.0, 1.0).unsqueeze(-1) > px              # (B, T, C, H, W, K)\n"
             "    y = target.detach().float().unsqueeze(-1) > px",
             ("tests/test_metrics_precip.py", "-k", "threshold"), must=True),
    Mutation("hss-denominator", "mslstm/evaluation/metrics.py",
             "(a + c) * (c + d) + (a + b) * (b + d)", "(a + c) * (b + d) + (a + b) * (c + d)",
             ("tests/test_metrics_precip.py", "-k", "hss"), must=True),
    Mutation("register-reads-profile", "pipelines/training.py",
             'evaluation=ev.outputs["evaluation"]', 'evaluation=profile_task.outputs["profile_dir"]',
             ("tests/test_kfp.py", "-k", "right_producer"), must=True),
    # ---- scheduled sampling and the rollout
    Mutation("ss-schedule-frozen", "mslstm/training/recipe.py",
             "frac = min(1.0, step / tcfg.ss_decay_steps)", "frac = 0.0", (SS, "-k", "schedule")),
    Mutation("ss-prob-inverted-in-schedule", "mslstm/training/recipe.py",
             "return tcfg.ss_start + (tcfg.ss_end - tcfg.ss_start) * frac",
             "return 1.0 - (tcfg.ss_start + (tcfg.ss_end - tcfg.ss_start) * frac)", (SS, "-k", "schedule")),
    Mutation("ss-rank-rows-ignored", "mslstm/training/recipe.py",
             "return full[rank::world_size][:batch].to(device)", "return full[:batch].to(device)",
             ("tests/test_train.py", "-k", "recipe")),
    Mutation("validation-feeds-truth", "mslstm/training/validation.py",
             "split_output(net(frames, mask=None))",
             "split_output(net(frames, mask=torch.ones(frames.shape[0], frames.shape[1] - mcfg.input_frames - 1)))",
             (SS, "-k", "masks_the_model_receives")),
    Mutation("rollout-mix-swapped", "model/networks.py",
             "x = m * seq[:, t] + (1 - m) * x_gen", "x = m * x_gen + (1 - m) * seq[:, t]", (SS, "-k", "rollout")),
    Mutation("rollout-one-input-short", "model/networks.py",
             "elif t < n_known:", "elif t < n_known - 1:", (SS, "-k", "rollout")),
    Mutation("pyramid-skip-dropped", "model/networks.py",
             "return up + outs[len(scales) - 1 - i]", "return up", ("tests/test_model.py", "-k", "skip")),
    # ---- learning rate, optimizer, loss
    Mutation("lr-scaling-ignored", "mslstm/training/config.py",
             "            return self.lr * ratio\n", "            return self.lr\n", LR1),
    Mutation("global-batch-ignores-world-size", "mslstm/training/config.py",
             "return self.batch_size, self.batch_size * world_size", "return self.batch_size, self.batch_size",
             LR + ("-k", "two_processes")),
    Mutation("scheduler-never-steps", "mslstm/training/recipe.py",
             "        sched.step()\n", "        pass\n", LR1),
    Mutation("cosine-floor-zero", "mslstm/training/recipe.py",
             "eta_min=lr * tcfg.min_lr_ratio", "eta_min=0.0", LR1),
    Mutation("l1l2-without-l1", "mslstm/training/recipe.py",
             "(diff.pow(2) + diff.abs())", "diff.pow(2)", ("tests/test_train.py", "-k", "l1l2")),
    Mutation("grad-not-zeroed", "mslstm/training/recipe.py",
             "    opt.zero_grad(set_to_none=True)\n", "", (LEARN,)),
    # ---- metrics
    Mutation("metrics-no-clip", "mslstm/evaluation/metrics.py",
             "pred = pred.detach().float().clamp(0.0, 1.0)", "pred = pred.detach().float()",
             ("tests/test_metrics.py", "-k", "clipped")),
    Mutation("metrics-mse-mean-not-sum", "mslstm/evaluation/metrics.py",
             "mse = diff.pow(2).sum(dim=(2, 3, 4))", "mse = diff.pow(2).mean(dim=(2, 3, 4))",
             ("tests/test_metrics.py", "-k", "mse_mae")),
    Mutation("ssim-sigma-2", "mslstm/evaluation/metrics.py", "SSIM_SIGMA = 1.5", "SSIM_SIGMA = 2.0",
             ("tests/test_metrics.py", "-k", "ssim")),
    Mutation("accumulator-counts-batches", "mslstm/evaluation/metrics.py",
             "                self.sums[name] = s.clone()\n        self.count += pred.shape[0]",
             "                self.sums[name] = s.clone()\n        self.count += 1", ("tests/test_metrics.py", "-k", "accumulator")),
    # ---- validation rules
    Mutation("validate-max-bound-off", "mslstm/data/validate.py",
             '{"column": "max", "min_value": lo - tol, "max_value": hi + tol}',
             '{"column": "max", "min_value": lo - tol, "max_value": 1e9}',
             ("tests/test_validate.py", "-k", "outside or boundaries")),
    Mutation("validate-blank-rule-off", "mslstm/data/validate.py",
             '"max_value": v.max_blank_fraction}', '"max_value": 1.0}', ("tests/test_validate.py", "-k", "blank")),
    Mutation("validate-nan-rule-off", "mslstm/data/validate.py",
             '{"column": "nan_count", "min_value": 0, "max_value": 0}',
             '{"column": "nan_count", "min_value": 0, "max_value": 1e9}', ("tests/test_validate.py", "-k", "nan")),
    # ---- the registry gate
    Mutation("gate-margin-wrong-way", "mslstm/release/registry.py",   # the gate's rule: meets_margin
             "return new <= champion * (1.0 - margin)", "return new <= champion * (1.0 + margin)",
             ("tests/test_registry.py", "-k", "gate")),
    Mutation("gate-budget-strict", "mslstm/release/registry.py",
             "within = value <= budget", "within = value < budget", ("tests/test_registry.py", "-k", "gate")),
    Mutation("gate-quality-ignored", "mslstm/release/registry.py",
             "        ok = False\n        reasons.append(f\"test {metric}", "        reasons.append(f\"test {metric}",
             ("tests/test_registry.py", "-k", "gate")),
    # ---- FLOPs and the TrainJob
    Mutation("trainjob-name-unchecked", "components/trainjob.py",
             "    check_trainjob_name(name)\n    if num_nodes", "    if num_nodes",
             ("tests/test_trainjob.py", "-k", "names")),
    Mutation("trainjob-gpu-limit-typo", "components/trainjob.py",
             'resources["limits"] = {accelerator: str(gpus_per_node)}',
             'resources["limit"] = {accelerator: str(gpus_per_node)}', ("tests/test_trainjob.py", "-k", "schema")),
)


def repo_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                         text=True, check=True).stdout
    return [f for f in out.split("\0") if f and (root / f).is_file()]


def copy_repo(dest: Path) -> Path:
    for rel in repo_files(ROOT):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


def run_tests(copy: Path, args: tuple[str, ...], timeout: float) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args],
                              cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - t0, "timeout"
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    return proc.returncode, time.perf_counter() - t0, tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--only", default="", help="comma-separated mutation names")
    ap.add_argument("--skip-baseline", action="store_true", help="do not run the selected tests unmutated first")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per test run")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only.split(",")]
    if args.list:
        for m in chosen:
            print(f"{m.name:34s} {'must' if m.must else '    '} {m.file}: {' '.join(m.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutations-") as tmp:
        copy = copy_repo(Path(tmp) / "repo")
        for m in chosen:  # every mutation must apply to exactly one place, or the check is stale
            n = (copy / m.file).read_text(encoding="utf-8").count(m.old)
            if n != 1:
                print(f"STALE {m.name}: {m.file} contains the old text {n} times", file=sys.stderr)
                return 2
        if not args.skip_baseline:
            groups = sorted({m.tests for m in chosen})
            for g in groups:
                rc, secs, tail = run_tests(copy, g, args.timeout)
                print(f"baseline {' '.join(g)}: rc {rc} ({secs:.0f} s) {tail}", flush=True)
                if rc != 0:
                    print("the selected tests fail on unmutated code: fix them first", file=sys.stderr)
                    return 2
        rows = []
        for m in chosen:
            path = copy / m.file
            original = path.read_text(encoding="utf-8")
            path.write_text(original.replace(m.old, m.new, 1), encoding="utf-8")
            try:
                rc, secs, tail = run_tests(copy, m.tests, args.timeout)
            finally:
                path.write_text(original, encoding="utf-8")
            verdict = "caught" if rc != 0 else "SURVIVED"
            rows.append((m, verdict, secs, tail))
            print(f"{verdict:8s} {m.name:34s} {secs:6.1f} s  {tail}", flush=True)
    caught = sum(v == "caught" for _, v, _, _ in rows)
    musts = [(m, v) for m, v, _, _ in rows if m.must]
    print(f"\n{time.strftime('%Y-%m-%d')}: {caught}/{len(rows)} caught ({100 * caught / max(len(rows), 1):.0f} %); "
          f"issue table: {sum(v == 'caught' for _, v in musts)}/{len(musts)}\n")
    print("| mutation | file | tests run | result | seconds |\n|---|---|---|---|---:|")
    for m, v, secs, _ in rows:
        print(f"| {m.name}{' (issue table)' if m.must else ''} | `{m.file}` | `{' '.join(m.tests)}` | {v} | "
              f"{secs:.0f} |")
    ok = all(v == "caught" for _, v in musts) and caught >= 0.9 * len(rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
