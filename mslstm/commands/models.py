"""Print the registered models (``model.registry``): name, label, parameters and forward cost per sequence in two
conventions, each MS- model next to its flat twin with its FLOPs as a share of the twin's.

By default at the paper's reference configuration (``model.ModelConfig()`` defaults: 64x64 frames, 10 -> 10
frames, hidden 64, 6 layers); with ``--from-params`` at the ``model`` section of the config (params.yaml + --set).
FLOPs are counted by ``torch.utils.flop_counter`` on the meta device (batch 1, T = input + output frames;
a multiply-add counts 2; convolutions and matmuls, the element-wise gate math is not counted): a two-step
rollout extrapolated to T - 1 steps (every step runs the same ops; ``--exact`` counts the whole rollout).
Beside them, MACs: the same operations with a multiply-add counted once (``model.flops.model_macs``), the convention
of ``thop.profile``, which the authors' ``train_and_test.py`` reports as "FLOPs(G)" in their tables (thop counts a
convolution as output elements x C_in / groups x k_h x k_w, no bias term): the paper's figures set beside MACs.

    mslstm models                          # every model, ~0.3 s per model
    mslstm models --tag paper              # the paper's four
    mslstm models --names predrnn,mspredrnn --exact
"""
from __future__ import annotations

HELP = "table of the registered models: parameters, forward FLOPs and MACs (thop, the paper's) per sequence"

AUTHORS_PARAMS = {"smslstm": 1_772_737, "mslstm": 7_576_897}  # the authors' code: two biases per gate block


def add_arguments(parser) -> None:
    parser.add_argument(
        "--from-params", action="store_true",
        help="use the model section of the config (params.yaml, --set) instead of the paper's reference",
    )
    parser.add_argument("--names", default=None, help="comma-separated models to list (default: all)")
    parser.add_argument("--tag", default=None, help="only models with this registry tag (e.g. paper)")
    parser.add_argument("--exact", action="store_true",
                        help="count FLOPs over the whole rollout instead of extrapolating two steps (slower)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")


def model_table(config, names=None, tag=None, exact: bool = False) -> list[dict]:
    """One row per registered model (or per name of ``names`` / models tagged ``tag``) at ``config`` (its name
    replaced in turn): name, label, description, paper, arrangement, flat twin (``ms_of``: the flat model an MS-
    model pyramids), params, forward FLOPs (a multiply-add = 2) and forward MACs (= 1: thop's convention, the
    authors' "FLOPs"). Unknown names -> ``ValueError("name: ...")``."""
    import dataclasses

    import torch

    from model import build_model, count_parameters, get_spec, list_specs, model_flops
    from model.registry import ms_pairs

    specs = [get_spec(n) for n in names] if names else list_specs(tag)
    if names and tag:
        specs = [s for s in specs if tag in s.tags]
    flat_of = {ms: flat for flat, ms in ms_pairs()}
    rows = []
    for spec in specs:
        cfg = dataclasses.replace(config, name=spec.name)
        with torch.device("meta"):
            net = build_model(cfg)
        flops = model_flops(cfg, batch=1, exact=exact, net=net)
        rows.append({"name": spec.name, "label": spec.label, "description": spec.description,
                     "paper": spec.paper, "arrangement": spec.arrangement, "ms_of": flat_of.get(spec.name),
                     "parameters": count_parameters(net),
                     "forward_flops": flops, "forward_macs": flops // 2})  # = model.flops.model_macs
    return rows


def format_table(rows: list[dict]) -> str:
    """Fixed-width text table; columns as wide as their longest entry."""
    flops = {r["name"]: r["forward_flops"] for r in rows}
    cells = []
    for r in rows:
        twin = r["ms_of"]
        share = f"{r['forward_flops'] / flops[twin]:.0%} of {twin}" if twin in flops and flops[twin] else ""
        cells.append((r["name"], r["label"], f"{r['parameters']:,}", f"{r['forward_flops'] / 1e9:,.2f}",
                      f"{r['forward_macs'] / 1e9:,.2f}", share, r["description"]))
    head = ("model", "label", "parameters", "GFLOPs/seq", "GMACs/seq (thop)", "MS- vs flat", "description")
    n = len(head) - 1
    width = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(n)]
    right = (False, False, True, True, True, False)

    def line(c) -> str:
        parts = [c[i].rjust(width[i]) if right[i] else c[i].ljust(width[i]) for i in range(n)]
        return "  ".join(parts) + "  " + c[n]

    out = [line(head), "-" * (sum(width) + 2 * n + len(head[n]))]
    out += [line(c) for c in cells]
    return "\n".join(out)


def run(args, cfg) -> int:
    import json

    from model import ModelConfig

    mcfg = cfg.model if args.from_params else ModelConfig()
    names = [n.strip() for n in args.names.split(",") if n.strip()] if args.names else None
    try:
        rows = model_table(mcfg, names, args.tag, args.exact)
    except ValueError as exc:
        from mslstm.errors import ConfigError

        raise ConfigError(f"--names: {exc}") from None
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
    how = "whole rollout" if args.exact else "two steps extrapolated"
    print(f"forward cost per sequence: batch 1, T = {mcfg.total_frames} ({how}); GFLOPs: torch.utils.flop_counter, "
          "a multiply-add = 2 FLOPs; GMACs: a multiply-add = 1, thop's convention, which the paper's tables call "
          "FLOPs")
    print()
    print(format_table(rows))
    if not args.from_params and (names is None or set(AUTHORS_PARAMS) & set(names)):
        print()
        print("Gate convs are fused (one conv over [x; h], one bias per gate block); the authors' code keeps a bias")
        print("on both convs: " + ", ".join(f"{k} {v:,}" for k, v in AUTHORS_PARAMS.items()) + " (256 more per fused pair).")
    return 0
