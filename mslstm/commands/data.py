"""Get the raw data (per data.dvc: present, `dvc pull`, or rebuilt from the shipped digits and hash-checked), then
write the processed dataset ({train,val,test}.npy + meta.json) to --out."""
from __future__ import annotations

HELP = "get/verify the raw data (data.dvc) and write the processed dataset"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="artifacts/dataset", help="processed dataset folder (default: %(default)s)")
    parser.add_argument("--raw-only", action="store_true",
                        help="only make data/ match data.dvc (pull or rebuild + verify); write no dataset")


def run(args, cfg) -> int:
    import json

    if args.raw_only:
        from mslstm.data.raw import ensure_raw_data

        print(json.dumps(ensure_raw_data(cfg.data), indent=2))
        return 0
    from mslstm.data.prepare import prepare_data

    summary = prepare_data(cfg, args.out)
    splits = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in summary["splits"].items())
    print(f"dataset {summary['out_dir']}: {splits} (source {summary['source']}, raw data {summary['raw']}, "
          f"hash {summary['raw_hash']}, {summary['seconds']:.1f} s)")
    return 0
