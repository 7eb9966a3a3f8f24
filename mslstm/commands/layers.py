"""The paper's layer-output figure (Figure 5) from a trained checkpoint: for one sequence, the hidden output of
every layer at every step (channel mean or first PCA component), between the ground truth and the prediction.

    mslstm layers --checkpoint artifacts/train/best.pt --out layers.png
    mslstm layers --checkpoint artifacts/compare/mslstm/train/best.pt --out mslstm.png --reduce pca --index 3

Run it on ConvLSTM, SMS-LSTM, TMS-LSTM and MS-LSTM checkpoints (e.g. ``mslstm ablation``'s
``artifacts/ablation/<model>/train/best.pt``) and set the pictures side by side: the paper's Figure 5.
"""
from __future__ import annotations

HELP = "layer-output figure (paper Figure 5): what each layer of a trained model holds for one sequence"
NEEDS_CONFIG = False


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint (best.pt / last.pt) or its folder")
    parser.add_argument("--data-dir", default="artifacts/dataset", help="processed dataset (default: %(default)s)")
    parser.add_argument("--out", default="layers.png", help="PNG to write; the maps go beside it as .npz")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--index", type=int, default=0, help="sequence of the split (default 0)")
    parser.add_argument("--reduce", default="mean", choices=("mean", "pca"),
                        help="channels -> one map: their mean or the first principal component")


def run(args, cfg) -> int:
    from pathlib import Path

    from mslstm.evaluation.layers import layer_figure
    from mslstm.training.checkpoint import find_checkpoint

    ckpt = Path(args.checkpoint)
    if ckpt.is_dir():
        ckpt = find_checkpoint(ckpt)
    r = layer_figure(ckpt, args.data_dir, args.out, args.split, args.index, args.reduce)
    print(f"{r['model']}: {r['layers']} layers {r['shapes']} -> {r['figure']} (maps: {r['maps']})")
    return 0
