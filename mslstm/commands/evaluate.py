"""Score a checkpoint on the test split: metrics per predicted frame and averaged (MSE/MAE as per-frame pixel sums
and per-pixel means, SSIM, PSNR), example PNG strips and GIFs, per-frame plots; logged to MLflow into the training
run (``run.json`` beside the checkpoint, or --run-id).

    mslstm evaluate --checkpoint artifacts/train --data-dir artifacts/dataset --out artifacts/eval
    mslstm evaluate --set evaluate.weights=last      # the folder's last.pt (what the authors test), not best.pt
    mslstm evaluate --set evaluate.frames=all        # also the teacher-forced frames (the authors' averaging)
"""
from __future__ import annotations

HELP = "score a checkpoint on the test split (metrics.json, per_frame.csv, pictures, MLflow)"


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", default="artifacts/train", help="a training folder (evaluate.weights picks "
                        "best.pt or last.pt) or a .pt file (default: %(default)s)")
    parser.add_argument("--data-dir", default="artifacts/dataset", help="processed dataset (default: %(default)s)")
    parser.add_argument("--out", default="artifacts/eval", help="output folder (default: %(default)s)")
    parser.add_argument("--run-id", default=None, help="MLflow run to log into (default: the run of run.json "
                        "beside the checkpoint, else a new run)")


def run(args, cfg) -> int:
    import json

    from mslstm.evaluation.evaluate import evaluate

    res = evaluate(cfg, args.checkpoint, args.data_dir, args.out, run_id=args.run_id)
    print(json.dumps({"model": res["model"], "frames": res["frames_mode"], "sequences": res["sequences"],
                      **{k: round(v, 6) for k, v in res["metrics"].items()}, "out": args.out}))
    return 0
