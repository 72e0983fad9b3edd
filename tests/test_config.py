"""Run configuration: errors that name the field, YAML round trips and ``--set`` value parsing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepmovie.config import (
    RunConfig,
    build_config,
    dump_yaml,
    load_config_file,
    parse_assignments,
    parse_params,
)
from deepmovie.data.interactions import RatingScale
from deepmovie.errors import DeepMovieError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def error_of(values: dict) -> str:
    with pytest.raises(DeepMovieError) as info:
        build_config(values)
    return str(info.value)


def test_unknown_param_key_is_named_with_the_valid_keys():
    message = error_of({"model": "bias", "params": {"lr": 0.1}})
    assert "'lr'" in message
    assert "known: epochs, patience, tol, reg_user, reg_item" in message


def test_unknown_config_field_lists_the_fields_of_its_own_level():
    message = error_of({"model": "bias", "spilt": "random:0.1"})
    assert "'spilt'" in message and "split" in message and "valid_fraction" in message
    message = error_of({"model": "bias", "read": {"delimiter": ","}})
    assert "'read.delimiter'" in message
    assert "known: sep, columns, header, encoding, rating_scale" in message


@pytest.mark.parametrize(
    ("values", "field", "shown"),
    [
        ({"params": {"epochs": 0}}, "'epochs'", "(got 0)"),
        ({"params": {"epochs": "abc"}}, "'epochs'", "(got 'abc')"),
        ({"params": {"reg_user": -1}}, "'reg_user'", "(got -1)"),
        ({"valid_fraction": 1.5}, "'valid_fraction'", "(got 1.5)"),
        ({"seed": "x"}, "'seed'", "(got 'x')"),
        ({"device": "tpu"}, "'device'", "(got 'tpu')"),
        ({"read": {"columns": {"usr": "a"}}}, "'read.columns'", "usr"),
        ({"read": {"rating_scale": ["a", 5]}}, "'read.rating_scale.0'", "(got 'a')"),
    ],
)
def test_bad_values_name_the_field(values, field, shown):
    message = error_of({"model": "bias", **values})
    assert field in message and shown in message and "\n" not in message


def test_unknown_model():
    message = error_of({"model": "nope"})
    assert "unknown model 'nope'" in message and "bias" in message


def test_empty_rating_scale_is_refused():
    config = build_config({"model": "bias", "read": {"rating_scale": [5, 1]}})
    with pytest.raises(DeepMovieError, match=r"read\.rating_scale"):
        config.read.options()
    options = build_config({"model": "bias", "read": {"rating_scale": ["1", "5"]}}).read.options()
    assert (options.scale.low, options.scale.high) == (1.0, 5.0)


def test_yaml_round_trip(tmp_path):
    config = build_config(
        {
            "model": "biased-mf",
            "data": "some/ratings.tsv",
            "split": "kfold:5:2",
            "seed": 7,
            "valid_fraction": 0.2,
            "read": {
                "sep": "\t",
                "columns": {"user": "u", "item": "i", "rating": "r"},
                "rating_scale": [1, 10],
            },
            "params": {"lr": 0.01, "factors": 8},
        }
    )
    resolved = config.resolved()
    assert resolved["params"]["factors"] == 8 and resolved["params"]["reg_bias"] == 0.01  # defaults filled
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(resolved))
    again = build_config(load_config_file(path))
    assert again.resolved() == resolved
    assert dump_yaml(again.resolved()) == path.read_text()
    assert again.read.options().sep == "\t"
    assert again.read.options().scale == RatingScale(1.0, 10.0, 0.0)


@pytest.mark.parametrize("name", ["biased-mf-ml-100k.yaml", "svdpp-ml-100k.yaml"])
def test_shipped_presets_are_valid(name):
    config = build_config(load_config_file(CONFIGS / name))
    assert config.split == "fold:u1" and config.model_params().epochs == 200


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_preset_builds(path):
    """A preset the README points at must load as it is: a renamed parameter would strand it."""
    config = build_config(load_config_file(path))
    assert config.model and config.model_params() is not None


def test_load_config_file_errors(tmp_path):
    with pytest.raises(DeepMovieError, match=re.escape(f"{tmp_path / 'none.yaml'}: no such file")):
        load_config_file(tmp_path / "none.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: bias\nseed: 1\nparams: [1, 2\n")
    with pytest.raises(DeepMovieError) as info:
        load_config_file(broken)
    message = str(info.value)
    assert message.startswith(f"{broken}:4: not valid YAML") and "\n" not in message
    listed = tmp_path / "list.yaml"
    listed.write_text("- model\n- bias\n")
    with pytest.raises(DeepMovieError, match="mapping"):
        load_config_file(listed)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config_file(empty) == {}


def test_set_value_parsing():
    values = parse_assignments(
        [
            "epochs=5",
            "lr=0.01",
            "small=1e-3",
            "big=-2E+4",
            "hidden=[64, 32]",
            "refit=true",
            "optimizer=adam",
            "version=1.0.2",
            "empty=",
            " spaced = 3 ",
            "expr=a=b",
            "bad={",
        ]
    )
    assert values == {
        "epochs": 5,
        "lr": 0.01,
        "small": 0.001,
        "big": -20000.0,
        "hidden": [64, 32],
        "refit": True,
        "optimizer": "adam",
        "version": "1.0.2",
        "empty": None,
        "spaced": 3,
        "expr": "a=b",
        "bad": "{",
    }
    assert type(values["epochs"]) is int and type(values["small"]) is float
    for text in ("noequals", "=1", " =1"):
        with pytest.raises(DeepMovieError, match="expected key=value"):
            parse_assignments([text])


def test_set_values_reach_the_model_params():
    params = parse_params("biased-mf", parse_assignments(["lr=1e-3", "factors=16"]))
    assert params.lr == 0.001 and params.factors == 16
    with pytest.raises(DeepMovieError, match="'factors'"):
        parse_params("biased-mf", parse_assignments(["factors=many"]))


def test_defaults():
    config = build_config({"model": "bias"})
    assert config.data == RunConfig.model_fields["data"].default == "ml-latest-small"
    assert (config.split, config.seed, config.valid_fraction, config.refit) == ("random:0.1", 0, 0.1, False)
