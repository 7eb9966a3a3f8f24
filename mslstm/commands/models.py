"""Print the registered models (``model.registry``): name, label, parameters and forward FLOPs per sequence.

By default at the paper's reference configuration (``model.ModelConfig()`` defaults: 64x64 frames, 10 -> 10
frames, hidden 64, 6 layers); with ``--from-params`` at the ``model`` section of the config (params.yaml + --set).
FLOPs are counted by ``torch.utils.flop_counter`` on the meta device (batch 1, T = input + output frames;
a multiply-add counts 2; convolutions only, the element-wise gate math is not counted).
"""
from __future__ import annotations

HELP = "table of the registered models: parameters and forward FLOPs per sequence"

AUTHORS_PARAMS = {"smslstm": 1_772_737, "mslstm": 7_576_897}  # the authors' code: two biases per gate block


def add_arguments(parser) -> None:
    parser.add_argument(
        "--from-params", action="store_true",
        help="use the model section of the config (params.yaml, --set) instead of the paper's reference",
    )
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")


def model_table(config) -> list[dict]:
    """One row per registered model at ``config`` (its name is replaced in turn): name, label, description,
    paper, arrangement, params, FLOPs."""
    import dataclasses

    import torch

    from model import build_model, count_parameters, list_specs, model_flops

    rows = []
    for spec in list_specs():
        cfg = dataclasses.replace(config, name=spec.name)
        with torch.device("meta"):
            params = count_parameters(build_model(cfg))
        rows.append({"name": spec.name, "label": spec.label, "description": spec.description,
                     "paper": spec.paper, "arrangement": spec.arrangement, "parameters": params,
                     "forward_flops": model_flops(cfg, batch=1)})
    return rows


def run(args, cfg) -> int:
    import json

    from model import ModelConfig

    mcfg = cfg.model if args.from_params else ModelConfig()
    rows = model_table(mcfg)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    h, w = mcfg.frame_size
    where = "config model section" if args.from_params else "paper reference configuration"
    print(
        f"{where}: {h}x{w}x{mcfg.in_channels} frames, {mcfg.input_frames} -> {mcfg.output_frames}, "
        f"hidden {mcfg.hidden}, {mcfg.layers} layers, ConvLSTM kernel {mcfg.kernel_size}, "
        f"MK kernels {list(mcfg.mk_kernels)}, scales {list(mcfg.scales)}, patch {mcfg.patch_size}"
    )
    print(f"forward FLOPs per sequence: batch 1, T = {mcfg.total_frames} (torch.utils.flop_counter, MAC = 2 FLOPs)")
    print()
    header = f"{'model':<12} {'label':<12} {'parameters':>12} {'GFLOPs/seq':>12}  description"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<12} {r['label']:<12} {r['parameters']:>12,} {r['forward_flops'] / 1e9:>12.2f}  "
              f"{r['description']}")
    if not args.from_params:
        print()
        print("Gate convs are fused (one conv over [x; h], one bias per gate block); the authors' code keeps a bias")
        print("on both convs: " + ", ".join(f"{k} {v:,}" for k, v in AUTHORS_PARAMS.items()) + " (256 more per fused pair).")
    return 0
