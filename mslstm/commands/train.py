"""Train the model of the ``model`` section on the processed dataset (``train`` + ``tracking`` sections).

This node:           mslstm train --data-dir artifacts/dataset --out artifacts/train
                     (train.processes: 0 = one process per CPU core under DDP for runs of 4,096+ sequences, 1 on
                     a GPU; it starts torchrun)
One node, N workers: torchrun --nproc-per-node N -m mslstm train ...   (train.processes is then ignored)
Several nodes:       torchrun --nnodes 2 --nproc-per-node N --rdzv-backend c10d --rdzv-endpoint HOST:PORT \\
                         --rdzv-id JOB -m mslstm train ...
Writes best.pt, last.pt, metrics.json, history.csv and run.json (rank 0); logs the run to MLflow.
"""
from __future__ import annotations

HELP = "train the model (DDP under torchrun, resumable, tracked in MLflow)"


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", default="artifacts/dataset", help="processed dataset (default: %(default)s)")
    parser.add_argument("--out", default="artifacts/train", help="output folder (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (same final result as an "
                        "uninterrupted run)")


def run(args, cfg) -> int:
    import json
    import os

    from mslstm.training.launch import local_processes, planned_sequences, relaunch, run_batch, under_launcher
    from mslstm.training.train import train

    if not under_launcher():
        nproc = local_processes(cfg.train.processes, cfg.train.device, global_batch=run_batch(cfg.train),
                                planned_sequences=planned_sequences(cfg.train, args.data_dir))
        if nproc > 1:
            flags = ["-q"] if args.quiet else ["-v"] if args.verbose else []
            cli = [*flags, "train", "--data-dir", str(args.data_dir), "--out", str(args.out)]
            return relaunch(cfg, nproc, cli + (["--resume"] if args.resume else []))
    metrics = train(cfg, args.data_dir, args.out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: metrics[k] for k in ("model", "steps", "best_val_mse", "train_loss", "seq_per_s")
                          if k in metrics}))
    return 0
