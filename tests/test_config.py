"""The config loader (mslstm/config.py) and every door refusing bad values with a message that names the key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mslstm.cli import main
from mslstm.config import config_from_dict, load_config, parse_override
from mslstm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
SECTIONS = ("data", "validate", "model", "train", "tracking", "evaluate", "profile", "register", "ablation", "pipeline")


# --------------------------------------------------------------------------------------------- shipped configs
@pytest.mark.parametrize("path", [PARAMS, ROOT / "configs" / "paper.yaml"], ids=lambda p: p.name)
def test_shipped_configs_load_and_name_every_section(path):
    import yaml

    tree = yaml.safe_load(path.read_text())
    assert set(tree) == set(SECTIONS), f"{path.name}: sections {sorted(tree)}"
    cfg = load_config(path)
    assert cfg.source == str(path)
    # every value written in the file is the value the config holds (nothing silently dropped)
    flat = cfg.flat()
    for section, values in tree.items():
        for key, value in values.items():
            got = flat.get(f"{section}.{key}", cfg.to_dict()[section].get(key))
            if (section, key) == ("pipeline", "image"):  # no tag in the file: the project version is the tag
                from mslstm.pipeline_config import image_with_version

                value = image_with_version(value)
            assert got == value, f"{path.name}: {section}.{key}: file {value!r}, config {got!r}"


def test_embedded_default_is_small_and_paper_is_large():
    small, paper = load_config(PARAMS), load_config(ROOT / "configs" / "paper.yaml")
    assert small.model.name == "mslstm" and small.model.patch_size == 8 and small.model.hidden <= 32
    # the CPU budget, the same on every CPU (no test encodes one CPU's speed): make run < 10 min with the install
    # on 2 cores with or without bf16 (bench/quality_log.md, bench/bench_first_run.py)
    assert small.data.train_sequences * small.train.epochs <= 12300
    assert paper.model.hidden > small.model.hidden and paper.data.train_sequences > small.data.train_sequences
    assert paper.pipeline.gpus >= 1


def test_params_yaml_is_the_dataclass_defaults_key_for_key():
    """One source of truth: params.yaml writes out every key of every section, with the values of ``Config()``."""
    import yaml

    from mslstm.config import SECTIONS as CONFIG_SECTIONS
    from mslstm.config import Config

    tree = yaml.safe_load(PARAMS.read_text())
    defaults = Config().to_dict()
    assert tuple(CONFIG_SECTIONS) == SECTIONS == tuple(tree)
    for section in SECTIONS:
        assert set(tree[section]) == set(defaults[section]), (
            f"params.yaml {section}: missing {sorted(set(defaults[section]) - set(tree[section]))}, "
            f"extra {sorted(set(tree[section]) - set(defaults[section]))}")
    assert load_config(PARAMS).to_dict() == defaults == load_config(None).to_dict()


def test_config_sections_are_typed_with_their_classes():
    from typing import get_type_hints

    from model.config import ModelConfig
    from mslstm.config import Config, embedded_model
    from mslstm.pipeline_config import PipelineConfig
    from mslstm.training.config import TrainConfig

    hints = get_type_hints(Config)
    assert hints["model"] is ModelConfig and hints["train"] is TrainConfig and hints["pipeline"] is PipelineConfig
    cfg = load_config(PARAMS)
    assert isinstance(cfg.pipeline, PipelineConfig) and isinstance(cfg.model, ModelConfig)
    # the model library's own default is the paper's network; the embedded default a small variant of it
    assert ModelConfig().hidden == 64 and embedded_model() == cfg.model
    # a partial model section starts from the embedded default, not the paper's
    assert config_from_dict({"model": {"hidden": 8}}).model.layers == embedded_model().layers


# ---------------------------------------------------------------------------------------------- the loader
def test_unknown_key_names_it_and_lists_known_ones(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  lr: 0.1\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert str(p) in msg and "train.learning_rate: unknown key" in msg and "lr" in msg


def test_unknown_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("trainer:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="trainer: unknown section"):
        load_config(p)


@pytest.mark.parametrize(
    "tree, key, what",
    [
        ({"train": {"epochs": "two"}}, "train.epochs", "expected an integer"),
        ({"train": {"epochs": True}}, "train.epochs", "expected an integer"),
        ({"train": {"lr": "fast"}}, "train.lr", "expected a number"),
        ({"train": {"deterministic": "yes"}}, "train.deterministic", "expected true/false"),
        ({"model": {"frame_size": [64]}}, "model.frame_size", "expected 2 items"),
        ({"model": {"frame_size": 64}}, "model.frame_size", "expected a list"),
        ({"pipeline": {"image": 3}}, "pipeline.image", "expected a string"),
    ],
)
def test_wrong_types_name_the_key(tree, key, what):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(tree, "params.yaml")
    assert f"{key}: {what}" in str(exc.value)


def test_literal_choices_are_listed():
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"model": {"name": "transformer"}}, "params.yaml")
    msg = str(exc.value)
    assert "model.name" in msg and "'convlstm'" in msg and "'mslstm'" in msg and "transformer" in msg


def test_integral_floats_become_ints_and_optional_accepts_null():
    cfg = config_from_dict({"train": {"epochs": 3.0, "global_batch_size": None}})
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.global_batch_size is None


def test_overrides_parse_yaml_values_and_scientific_notation():
    assert parse_override("train.lr=1e-3") == ("train.lr", 0.001)
    assert parse_override("model.frame_size=[32, 32]") == ("model.frame_size", [32, 32])
    assert parse_override("pipeline.register=false") == ("pipeline.register", False)
    cfg = load_config(PARAMS, ["train.lr=1e-3", "model.name=convlstm", "pipeline.gpus=2"])
    assert (cfg.train.lr, cfg.model.name, cfg.pipeline.gpus) == (0.001, "convlstm", 2)
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(PARAMS, ["lr=1e-3"])
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        load_config(PARAMS, ["trian.lr=1e-3"])


def test_replace_validates_again():
    cfg = load_config(PARAMS)
    assert cfg.replace({"train.epochs": 7}).train.epochs == 7
    assert cfg.train.epochs != 7  # the original is untouched
    with pytest.raises(ConfigError, match="train.epochs"):
        cfg.replace({"train.epochs": 0})


def test_round_trip_to_dict_and_flat():
    cfg = load_config(PARAMS)
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()
    assert cfg.flat()["train.lr"] == cfg.train.lr


def test_cross_section_frame_counts():
    with pytest.raises(ConfigError, match="model.input_frames .* data.input_frames"):
        load_config(PARAMS, ["model.input_frames=5"])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(bad)


# ------------------------------------------------------------------------- every door refuses bad values
STEP_CASES = [
    (["data"], "data.train_sequences=0", "data.train_sequences"),
    (["data"], "data.source=imagenet", "data.source"),
    (["validate"], "validate.max_blank_fraction=2", "validate.max_blank_fraction"),
    (["train"], "train.lr=-1", "train.lr"),
    (["train"], "train.optimizer=sgd", "train.optimizer"),
    (["train"], "tracking.uri=", "tracking.uri"),
    (["evaluate"], "evaluate.batch_size=0", "evaluate.batch_size"),
    (["evaluate"], "evaluate.split=dev", "evaluate.split"),
    (["profile"], "profile.repeats=0", "profile.repeats"),
    (["profile"], "profile.device=tpu", "profile.device"),
    (["register"], "register.min_improvement=1.5", "register.min_improvement"),
    (["register"], "register.metric=accuracy", "register.metric"),
    (["ablation"], "ablation.models=[convlstm, gru]", "ablation.models"),
    (["train"], "model.hidden=0", "model.hidden"),
    (["train"], "model.frame_size=[60, 60]", "model.frame_size"),
    (["pipeline", "compile"], "pipeline.gpus=-1", "pipeline.gpus"),
    (["pipeline", "compile"], "pipeline.train_memory_request=lots", "pipeline.train_memory_request"),
    (["pipeline", "compile"], "pipeline.image=", "pipeline.image"),
    (["pipeline", "compile"], "pipeline.nodes=0", "pipeline.nodes"),
]


@pytest.mark.parametrize("command, override, key", STEP_CASES, ids=[c[1] for c in STEP_CASES])
def test_every_step_refuses_bad_values_naming_the_key(command, override, key, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the repository
    rc = main(["--params", str(PARAMS), "--set", override, *command])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and key in err, err
    assert err.count("\n") == 1  # one line, no traceback
    assert not any(tmp_path.iterdir())


def test_kfp_door_refuses_bad_values_naming_the_key():
    from components.runtime import load_config_json

    good = json.dumps(load_config(PARAMS).to_dict())
    assert load_config_json(good, {"train.epochs": 3}).train.epochs == 3
    with pytest.raises(ConfigError, match="pipeline parameter config: train.batch_size"):
        load_config_json(good, {"train.batch_size": 0})
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_json("{train:", {})
    tree = json.loads(good)
    tree["train"]["lrate"] = 1
    with pytest.raises(ConfigError, match="train.lrate: unknown key"):
        load_config_json(json.dumps(tree))


def test_run_overrides_keep_zero_and_cast_collected_floats():
    from components.runtime import run_overrides

    assert run_overrides(model_name="", epochs=0, batch_size=0, lr=0.0) == {}
    # locally, numbers that went through dsl.Collected / JSON arrive as floats
    assert run_overrides(model_name="convlstm", epochs=3.0, batch_size=8.0, lr=1) == {
        "model.name": "convlstm", "train.epochs": 3, "train.batch_size": 8, "train.lr": 1.0,
    }
    out = run_overrides(epochs=3.0)
    assert isinstance(out["train.epochs"], int)


def test_a_bare_off_is_the_word_off_where_a_choice_expects_it():
    """YAML reads `--set train.amp=off` as false; a choice that lists 'off' takes the word back, others refuse."""
    assert load_config(None, ["train.amp=off"]).train.amp == "off"
    with pytest.raises(ConfigError, match="train.progress"):
        load_config(None, ["train.progress=off"])


def test_every_help_text_formats(capsys):
    """`mslstm --help` and each sub-command's --help render (argparse %-formats help strings: a bare % breaks it)."""
    from mslstm.cli import COMMANDS

    for args in ([], *([name] for name in COMMANDS)):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--help"])
        assert exc.value.code == 0, args
    assert "study" in capsys.readouterr().out
