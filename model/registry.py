"""The model registry: every network is one file under ``model/zoo/`` that registers a :class:`ModelSpec` by name.

Listing (``mslstm models``, the ablation, docs), validating (``ModelConfig.name``) and building (``build_model``)
read this registry, so adding a model touches no other file (timm style). ``model/zoo/*.py`` is imported on the
first look-up (``pkgutil`` discovery: a new file there is found without an import line anywhere).

A network is always ``Forecaster`` = 1x1 embedding -> *core* -> 1x1 head, unrolled by the one shared rollout
(teacher forcing, scheduled-sampling mask, ``predict``). A spec says what the core is:

``ModelSpec`` fields
    name: the key of ``model.name`` in params.yaml (lower case, e.g. ``"mslstm"``).
    label: display name for tables and plots (``"MS-LSTM"``).
    description: one line for ``mslstm models``.
    paper: short citation (``"Shi et al., NeurIPS 2015"``).
    arrangement: ``"stack"`` (``layers`` cells at full resolution) or ``"pyramid"`` (the mirrored pyramid of
        ``ModelConfig.scales``: maxpool down, bilinear up + skip from the mirrored encoder layer).
    make_cell: ``make_cell(cfg: ModelConfig, layer: int) -> nn.Module``, one recurrent cell for layer ``layer``
        mapping ``hidden`` channels to ``hidden`` channels. Contract: ``cell(x, state) -> (h, new_state)`` and
        ``cell.init_state(batch, height, width, device, dtype, channels_last) -> state`` (a tuple of tensors).
    core: optional class of the per-time-step module over the layers, built as ``core(cells, scales)`` with the
        cells above and the scale of each layer (all 1 for a stack). Default :class:`model.networks.RecurrentCore`
        (each cell reads the layer below). A model whose layers talk in other ways brings its own, with the same
        contract: ``core(x, states) -> (h_top, states)`` and ``core.init_state(B, H, W, device, dtype,
        channels_last) -> states`` (any structure: e.g. PredRNN adds the zigzag memory M to ``states``; MIM keeps
        the previous layer outputs there for its differential inputs). A core may also define
        ``aux_losses() -> {name: scalar Tensor}`` (loss terms accumulated during the last ``forward``, e.g.
        PredRNN-V2's ``{"decouple": ...}``); ``Forecaster.forward(frames, mask, return_aux=True)`` returns them
        with the prediction (``{}`` when the core has none).
    recipe: optional hints for the training method (``mslstm.training.recipe.RecipeHints``, same keys), read by
        the trainer through ``build_recipe(train_cfg, device, spec.recipe, total_steps)``, never by
        ``model.name``: ``{"aux_loss_weights": {"decouple": 0.01}}`` (weight of each auxiliary loss; 1.0 for a
        name not listed) and ``{"sampling": "reverse"}`` (a registered scheduled-sampling method; PredRNN-V2).
        ``None`` = the default recipe. A model never needs a branch in the training loop.
    tags: free labels; ``"paper"`` marks the four networks of the MS-LSTM paper's ablation (the ablation's default).

Adding a model: write ``model/zoo/<name>.py`` that defines its cell (equations in the docstring) and calls
:func:`register_model` or :func:`register_family` (a flat stack AND its MS- pyramid from the same cells); add the
name to nothing else. ``tests/test_model_zoo.py`` builds every registered model at tiny shapes and runs forward,
backward and ``predict``.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Optional, Sequence

if TYPE_CHECKING:  # model.config imports this module lazily; no import cycle at run time
    from torch import nn

    from model.config import ModelConfig

ARRANGEMENTS = ("stack", "pyramid")
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class ModelSpec:
    """One registered network (see the module docstring for every field)."""

    name: str
    label: str
    description: str
    paper: str
    arrangement: Literal["stack", "pyramid"]
    make_cell: Callable[["ModelConfig", int], "nn.Module"]
    core: Optional[Callable[[Sequence["nn.Module"], Sequence[int]], "nn.Module"]] = None
    recipe: Optional[Mapping[str, Any]] = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"name: {self.name!r} must be lower case letters, digits, '-' or '_'")
        if self.arrangement not in ARRANGEMENTS:
            raise ValueError(f"arrangement: {self.arrangement!r}; use one of {', '.join(ARRANGEMENTS)}")
        if not self.label or not self.description or "\n" in self.description:
            raise ValueError(f"{self.name}: label and a one-line description are required")
        if not callable(self.make_cell):
            raise ValueError(f"{self.name}: make_cell must be callable (cfg, layer) -> nn.Module")
        if self.recipe is not None:
            object.__setattr__(self, "recipe", MappingProxyType(dict(self.recipe)))
        object.__setattr__(self, "tags", tuple(self.tags))

    def layer_scales(self, cfg: "ModelConfig") -> tuple[int, ...]:
        """Scale of each layer: ``cfg.scales`` for a pyramid, all 1 for a stack."""
        return tuple(cfg.scales) if self.arrangement == "pyramid" else (1,) * cfg.layers

    def build_cells(self, cfg: "ModelConfig") -> list["nn.Module"]:
        """One cell per layer, in layer order; ``model.networks.build_model`` puts them in ``core`` (default
        ``RecurrentCore``) with :meth:`layer_scales`."""
        return [self.make_cell(cfg, i) for i in range(cfg.layers)]


_REGISTRY: dict[str, ModelSpec] = {}
_LOCK = threading.Lock()
_LOADED = False
_ZOO_ORDER: dict[str, int] = {}   # zoo module -> position in file-name order (the listing order)


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry; a name registered twice is a ``ValueError``. Returns the spec."""
    with _LOCK:
        if spec.name in _REGISTRY:
            raise ValueError(f"name: model {spec.name!r} is already registered "
                             f"(by {_REGISTRY[spec.name].make_cell.__module__}); pick another name")
        _REGISTRY[spec.name] = spec
    return spec


def register_family(
    name: str,
    label: str,
    description: str,
    paper: str,
    make_cell: Callable[["ModelConfig", int], "nn.Module"],
    *,
    ms_name: Optional[str] = None,
    ms_label: Optional[str] = None,
    ms_description: Optional[str] = None,
    core: Optional[Callable[..., "nn.Module"]] = None,
    recipe: Optional[Mapping[str, Any]] = None,
    tags: Sequence[str] = (),
) -> tuple[ModelSpec, ModelSpec]:
    """Register a flat model (``layers`` cells at full resolution) AND its MS- version (the same cells and core
    through the mirrored pyramid of ``cfg.scales``). ``ms_name`` defaults to ``"ms" + name``, ``ms_label`` to
    ``"MS-" + label``. Returns ``(flat, ms)``."""
    flat = ModelSpec(name=name, label=label, description=description, paper=paper, arrangement="stack",
                     make_cell=make_cell, core=core, recipe=recipe, tags=tuple(tags))
    ms = ModelSpec(
        name=ms_name or f"ms{name}", label=ms_label or f"MS-{label}",
        description=ms_description or f"{description}; mirrored multi-scale pyramid (MS-RNN)",
        paper=f"{paper}; MS-RNN (Ma et al. 2023)", arrangement="pyramid", make_cell=make_cell, core=core,
        recipe=recipe, tags=tuple(tags),
    )
    register_model(flat)
    try:
        register_model(ms)
    except ValueError:
        unregister(flat.name)
        raise
    return flat, ms


def unregister(name: str) -> None:
    """Remove a model (for tests that register a throw-away spec)."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def _load_zoo() -> None:
    """Import every module of ``model/zoo`` once (sorted by file name: the listing order)."""
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        _LOADED = True  # set first: a zoo module calling get_spec during import must not recurse
    try:
        import model.zoo as zoo

        names = sorted(m.name for m in pkgutil.iter_modules(zoo.__path__) if not m.name.startswith("_"))
        _ZOO_ORDER.update({f"{zoo.__name__}.{n}": i for i, n in enumerate(names)})
        for n in names:
            importlib.import_module(f"{zoo.__name__}.{n}")
    except BaseException:
        # A broken zoo file fails now and again on the next look-up (files imported already stay registered:
        # Python caches them), so a half registry is never served silently.
        _LOADED = False
        raise


def list_specs(tag: Optional[str] = None) -> list[ModelSpec]:
    """Registered specs: the paper's networks (tag ``"paper"``) first, then ordered by zoo file name, then
    registration order within a file (whatever order the files happened to be imported in); only those tagged
    ``tag`` if given."""
    _load_zoo()
    seq = {name: i for i, name in enumerate(_REGISTRY)}
    specs = sorted(_REGISTRY.values(),
                   key=lambda s: ("paper" not in s.tags, _ZOO_ORDER.get(s.make_cell.__module__, len(_ZOO_ORDER)),
                                  seq[s.name]))
    return [s for s in specs if tag is None or tag in s.tags]


def model_names(tag: Optional[str] = None) -> tuple[str, ...]:
    """Registered names, same order as :func:`list_specs`."""
    return tuple(s.name for s in list_specs(tag))


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name``; unknown -> ``ValueError("name: ... use one of ...")``."""
    _load_zoo()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"name: {name!r} is not a model; use one of {', '.join(map(repr, model_names()))}") from None


def label_of(name: str) -> str:
    """Display label of ``name`` (the name itself when it is not registered)."""
    _load_zoo()
    spec = _REGISTRY.get(name)
    return spec.label if spec is not None else str(name)


def ms_pairs() -> list[tuple[str, str]]:
    """``(flat, MS-)`` name pairs: each pyramid model with the full-resolution stack built from the same cells
    and core (``register_family``'s two specs; ``convlstm``/``smslstm``, ``tmslstm``/``mslstm``, ...), in
    listing order of the flat model."""
    specs = list_specs()
    pairs = []
    for flat in specs:
        if flat.arrangement != "stack":
            continue
        for ms in specs:
            if ms.arrangement == "pyramid" and ms.make_cell is flat.make_cell and ms.core is flat.core:
                pairs.append((flat.name, ms.name))
                break
    return pairs
