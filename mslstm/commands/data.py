"""Get the raw data (per data.dvc: present, `dvc pull`, or rebuilt from the shipped digits and hash-checked), then
write the processed dataset ({train,val,test}.npy + meta.json) to --out. `--list` prints the registered sources."""
from __future__ import annotations

HELP = "get/verify the raw data (data.dvc) and write the processed dataset"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="artifacts/dataset", help="processed dataset folder (default: %(default)s)")
    parser.add_argument("--raw-only", action="store_true",
                        help="only make data/ match data.dvc (pull or rebuild + verify); write no dataset")
    parser.add_argument("--list", action="store_true", help="list the registered data sources (data.source) and exit")


def run(args, cfg) -> int:
    import json

    if args.list:
        from mslstm.data.sources import list_sources

        for src in list_sources():
            path = " (reads data.path)" if src.needs_path else ""
            print(f"{src.name:<18} {src.kind:<10} {src.description}{path}")
        return 0
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
