"""Run configuration: validated with Pydantic, written back fully resolved as ``config.yaml``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deepmovie.data.catalog import DEFAULT_DATASET
from deepmovie.data.dataset import ReadOptions
from deepmovie.data.interactions import RatingScale
from deepmovie.errors import DeepMovieError, where
from deepmovie.files import load_yaml, regular_file

if TYPE_CHECKING:  # the models import torch: only commands that train need it
    from deepmovie.models import ModelParams

EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
# Seeds are below this: models seed each epoch's generator with seed * 1,000,003 + epoch, which
# PyTorch holds in 64 bits.
SEEDS = 2**32
SHOWN_INPUT = 80  # characters of a refused value quoted in its error


class ReadConfig(BaseModel):
    """How to read a generic ratings file (MovieLens layouts need none of this)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sep: str | None = None
    columns: dict[str, str] | None = None
    header: bool | None = None
    encoding: str = "utf-8"
    rating_scale: tuple[float, float] | None = None

    @field_validator("columns")
    @classmethod
    def _known_roles(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        unknown = set(value or {}) - {"user", "item", "rating", "timestamp"}
        if unknown:
            raise ValueError(f"unknown column role(s) {sorted(unknown)} (user, item, rating, timestamp)")
        return value

    def options(self) -> ReadOptions:
        scale = None
        if self.rating_scale is not None:
            low, high = self.rating_scale
            if not low < high:
                raise DeepMovieError(f"read.rating_scale: {low}..{high} is empty")
            scale = RatingScale(low, high, 0.0)
        return ReadOptions(self.sep, self.columns, self.header, self.encoding, scale)


class RunConfig(BaseModel):
    """Everything that determines a training run; ``params`` are the model's own settings."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str
    data: str = DEFAULT_DATASET
    split: str = "random:0.1"
    test_file: str | None = None
    item_docs: str | None = None
    item_docs_with_metadata: bool = Field(
        False, description="put each item's built document (title, year, genres, tags) before its text"
    )
    seed: int = Field(0, ge=0, lt=SEEDS)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_memory: int | None = Field(
        None,
        gt=0,
        description="bytes the model may take with its gradients and optimizer state, e.g. 8GB "
        "(None: 80% of what the device has free); a limit, not part of the run",
    )
    valid_fraction: float = Field(0.1, ge=0, lt=1)
    rank_k: int = Field(0, ge=0, description="also report top-K ranking metrics on the test rows (0: off)")
    relevant_rating: float = Field(
        4.0, description="test ratings at or above this (capped at the top of the scale) count as relevant"
    )
    refit: bool = Field(
        False, description="after early stopping, retrain on train + valid for the best epoch count"
    )
    read: ReadConfig = Field(default_factory=ReadConfig)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("max_memory", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        from deepmovie.machine import parse_size  # imports torch: only when a limit is given

        return parse_size(value) if isinstance(value, str) else value

    def model_params(self) -> ModelParams:
        """The model's validated parameters (defaults filled in)."""
        return parse_params(self.model, self.params)

    def resolved(self) -> dict[str, Any]:
        data = self.model_dump()
        data["params"] = self.model_params().model_dump()
        return data


def parse_params(model: str, params: dict[str, Any]) -> ModelParams:
    from deepmovie.models import MODELS

    cls = MODELS.get(model).Params
    try:
        return cls(**params)
    except ValidationError as exc:
        raise DeepMovieError(_describe(exc, f"model {model!r} parameter", cls)) from None


def build_config(values: dict[str, Any]) -> RunConfig:
    try:
        config = RunConfig(**values)
    except ValidationError as exc:
        raise DeepMovieError(_describe(exc, "config field", RunConfig)) from None
    config.model_params()
    return config


def load_config_file(path: Path) -> dict[str, Any]:
    """A config file's fields: UTF-8 YAML whose top level is a mapping (errors name the line)."""
    raw = regular_file(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DeepMovieError(f"{where(path, line)}: not valid UTF-8 text ({exc.reason})") from None
    try:
        values = load_yaml(text) or {}
    except yaml.YAMLError as exc:  # its message spans lines; the CLI's error is one line
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if mark is not None:
            line = mark.line + 1
        elif isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses (a NUL, a control)
            line = text.count("\n", 0, exc.position) + 1
        else:
            line = None
        raise DeepMovieError(f"{where(path, line)}: not valid YAML ({problem})") from None
    if not isinstance(values, dict):
        raise DeepMovieError(f"{path}: expected a mapping of config fields")
    return values


def with_section(values: dict[str, Any], name: str, updates: dict[str, Any]) -> dict[str, Any]:
    """``values`` with its mapping ``name`` (``params``, ``read``) updated by ``updates``; a section that
    is not a mapping (``params: [1, 2]`` in a config file) is refused naming it."""
    section = values.get(name) or {}
    if not isinstance(section, dict):
        raise DeepMovieError(f"config field {name!r}: expected a mapping (got {section!r})")
    return {**values, name: {**section, **updates}}


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``["lr=0.01", "hidden=[64,32]"]`` -> ``{"lr": 0.01, "hidden": [64, 32]}`` (YAML values)."""
    values: dict[str, Any] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise DeepMovieError(f"--set {text!r}: expected key=value")
        try:
            value = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:  # kept as text: the parameter's own validation names it
            value = raw
        if isinstance(value, str) and EXPONENT_FLOAT.fullmatch(value):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        values[key.strip()] = value
    return values


def dump_yaml(values: dict[str, Any]) -> str:
    return yaml.safe_dump(values, sort_keys=False)


def _describe(exc: ValidationError, what: str, cls: type[BaseModel]) -> str:
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        owner = cls  # the model the unknown key sits in, e.g. ReadConfig for 'read.foo'
        for part in error["loc"][:-1]:
            annotation = getattr(owner.model_fields.get(str(part)), "annotation", None)
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                break
            owner = annotation
        known = ", ".join(owner.model_fields)
        return f"unknown {what} {field!r} (known: {known})"
    shown = repr(error.get("input"))
    if len(shown) > SHOWN_INPUT:  # a 10,000-character --set value is named, not echoed
        shown = f"{shown[:SHOWN_INPUT]}... ({len(shown):,} characters)"
    where = f"{what} {field!r}" if field else f"{what}s"  # no field: a check across several of them
    return f"{where}: {error['msg']} (got {shown})"
