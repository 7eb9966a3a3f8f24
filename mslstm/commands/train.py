"""Train the model of the ``model`` section on the processed dataset (``train`` + ``tracking`` sections).

Single process:      mslstm train --data-dir artifacts/dataset --out artifacts/train
One node, N workers: torchrun --nproc-per-node N -m mslstm train ...
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

    from mslstm.training.train import train

    metrics = train(cfg, args.data_dir, args.out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: metrics[k] for k in ("model", "steps", "best_val_mse", "train_loss", "seq_per_s")
                          if k in metrics}))
    return 0
