"""Predict future frames from a .npy of input frames with a registered model or a checkpoint.

    mslstm predict --model models:/mslstm@champion --input frames.npy --output pred.npy --gif pred.gif
    mslstm predict --model artifacts/train/best.pt --input frames.npy --output pred.npy --n-future 20

Input: float32 in [0, 1] (or uint8) of shape (B, T_in, C, H, W) or (T_in, C, H, W). Output: float32
(B, N, C, H, W). The GIF shows the first sequence: its inputs, then the predicted frames. The input is
memory-mapped and predicted --batch-size sequences at a time (a progress bar on a terminal), the output written as
it goes and renamed into place at the end; an input over --max-input-gb is refused.
"""
from __future__ import annotations

HELP = "predict future frames from a .npy with a registered model (models:/...) or a checkpoint"
NEEDS_CONFIG = False


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="models:/mslstm@champion",
                        help="models:/<name>@<alias>, models:/<name>/<version> or a checkpoint .pt "
                        "(default: %(default)s)")
    parser.add_argument("--input", required=True, help="input frames (.npy)")
    parser.add_argument("--output", required=True, help="predicted frames (.npy)")
    parser.add_argument("--gif", default=None, help="also write an animated GIF of the first sequence")
    parser.add_argument("--n-future", type=int, default=None, help="frames to predict (default: the model's "
                        "output_frames)")
    # defaults None = the library's (mslstm.release.predict DEFAULT_*; not imported here: --help stays instant)
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per forward pass (default: 16)")
    parser.add_argument("--max-input-gb", type=float, default=None,
                        help="refuse an input file larger than this many GB; 0 = no limit (default: 8)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking/registry URI for models:/ "
                        "(default: env MLFLOW_TRACKING_URI, else the project's sqlite:///mlflow.db, found from any folder: "
                        "see docs/training.md)")


def run(args, cfg) -> int:
    import os

    from mslstm.release.predict import predict_file

    if str(args.model).startswith(("models:/", "runs:/")):
        import mlflow

        from mslstm.errors import RegistryError
        from mslstm.tracking import absolute_sqlite_uri, resolve_tracking_uri

        uri = absolute_sqlite_uri(args.tracking_uri) if args.tracking_uri else resolve_tracking_uri(None)
        if uri.startswith("sqlite:///") and not os.path.isfile(uri[len("sqlite:///"):]):
            # MLflow would create an empty store here and then say the model does not exist
            raise RegistryError(f"{args.model}: no MLflow store at {uri[len('sqlite:///'):]} (run where the "
                                "project's runs are, or give --tracking-uri / MLFLOW_TRACKING_URI)")
        mlflow.set_tracking_uri(uri)
    from mslstm.errors import ConfigError
    from mslstm.release.predict import DEFAULT_BATCH_SIZE, DEFAULT_MAX_INPUT_GB

    batch_size = DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    max_input_gb = DEFAULT_MAX_INPUT_GB if args.max_input_gb is None else args.max_input_gb
    if args.n_future is not None and args.n_future < 1:
        raise ConfigError(f"--n-future: must be >= 1 (got {args.n_future})")
    if batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1 (got {batch_size})")
    if not max_input_gb >= 0:
        raise ConfigError(f"--max-input-gb: must be >= 0, 0 = no limit (got {max_input_gb})")
    res = predict_file(args.model, args.input, args.output, gif_path=args.gif, n_future=args.n_future,
                       batch_size=batch_size, max_input_gb=max_input_gb, progress=not args.quiet)
    print(f"{res['input']} -> {res['output']} shape {tuple(res['shape'])}" + (f", {res['gif']}" if res["gif"] else ""))
    return 0 if os.path.exists(args.output) else 1
