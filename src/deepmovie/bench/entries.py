"""What a bench compares: entries (label, model, optional preset and parameters) and their run configs.

An entry on the command line is ``MODEL``, ``LABEL=MODEL``, ``MODEL@PRESET.yaml`` or
``LABEL=MODEL@PRESET.yaml``. Every entry of a bench is trained on the same data and split (the bench's,
not the preset's), so a preset contributes only how its model is trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepmovie.config import RunConfig, build_config, load_config_file, with_section
from deepmovie.data import catalog
from deepmovie.errors import DeepMovieError

LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
# Fields the bench decides for every entry alike: a preset's values for them are replaced.
SHARED_FIELDS = ("data", "split", "test_file", "seed")


@dataclass(frozen=True)
class Entry:
    """One row of the comparison: a model trained with a preset and parameters, under one label."""

    label: str
    model: str
    preset: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def missing(self) -> str | None:
        """Why this entry cannot run here (an unregistered model or encoder), or None."""
        from deepmovie.models import MODELS

        if self.model not in MODELS:
            return f"model {self.model!r} is not registered"
        encoder = self.params.get("encoder")
        if self.model == "hybrid" and isinstance(encoder, str) and not encoder.startswith("module:"):
            from deepmovie.models.hybrid.encoders import ENCODERS

            if encoder not in ENCODERS:
                return f"hybrid encoder {encoder!r} is not registered"
        return None


def parse_entries(specs: list[str]) -> list[Entry]:
    """``["bias,biased-mf", "fast=biased-mf@configs/x.yaml"]`` -> entries; labels must be unique."""
    entries = []
    for spec in specs:
        for text in spec.split(","):
            text = text.strip()
            if not text:
                raise DeepMovieError(f"model list {spec!r}: empty entry")
            label, sep, rest = text.partition("=")
            if not sep:
                label, rest = "", text
            model, at, preset = rest.partition("@")
            if not model or (at and not preset):
                raise DeepMovieError(f"model entry {text!r}: expected [LABEL=]MODEL[@PRESET.yaml]")
            path = Path(preset) if at else None
            entries.append(Entry(label or default_label(model, path), model, path))
    check_labels(entries)
    return entries


def default_label(model: str, preset: Path | None) -> str:
    """The preset's file name says more than the model's when one model appears with two presets."""
    return preset.stem if preset is not None else model


def check_labels(entries: list[Entry]) -> None:
    seen: set[str] = set()
    for entry in entries:
        if not LABEL.fullmatch(entry.label):
            raise DeepMovieError(
                f"label {entry.label!r}: use letters, digits and . _ + - (it names a folder)"
            )
        if entry.label in seen:
            raise DeepMovieError(f"label {entry.label!r} is used twice; name entries with LABEL=MODEL")
        seen.add(entry.label)


def dataset_name(data: str) -> str:
    """The name tuned presets are filed under: a built-in name, a folder's name, a file's folder's name."""
    if data in catalog.RELEASES:
        return data
    path = Path(data)
    return path.parent.name if path.is_file() else path.name


def tuned_preset(model: str, data: str, config_dir: Path) -> Path:
    path = config_dir / "tuned" / f"{model}-{dataset_name(data)}.yaml"
    if not path.is_file():
        raise DeepMovieError(
            f"--tuned: no tuned preset {path} for {model} on {dataset_name(data)} (create it with "
            f"`deepmovie tune`, or drop --tuned)"
        )
    return path


@dataclass(frozen=True)
class Setting:
    """The bench-wide part of every run config: where the rows come from and what is overridden."""

    data: str
    split: str | None = None
    test_file: str | None = None
    device: str | None = None
    max_memory: int | None = None  # bytes a model may take (None: the default share of free memory)
    params: dict[str, Any] = field(default_factory=dict)  # --set, applied to every entry
    tuned: bool = False
    config_dir: Path = Path("configs")
    rank_k: int | None = None  # a ranking bench: every entry and peer is judged by its top-K
    relevant_rating: float = 4.0

    def config(self, entry: Entry, seed: int) -> RunConfig:
        """The run config of ``entry`` for ``seed``: the preset, then the entry's and the bench's values."""
        preset = entry.preset
        if preset is None and self.tuned:
            preset = tuned_preset(entry.model, self.data, self.config_dir)
        values: dict[str, Any] = load_config_file(preset) if preset is not None else {}
        if values.get("model", entry.model) != entry.model:
            raise DeepMovieError(f"{preset}: is a preset of {values['model']!r}, not of {entry.model!r}")
        values = {k: v for k, v in values.items() if k not in SHARED_FIELDS}
        values.update(self._rows(seed))
        values["model"] = entry.model
        if self.device is not None:
            values["device"] = self.device
        if self.max_memory is not None:
            values["max_memory"] = self.max_memory
        if self.rank_k is not None:
            values.update(rank_k=self.rank_k, relevant_rating=self.relevant_rating)
        return build_config(with_section(values, "params", {**entry.params, **self.params}))

    def rows_config(self, seed: int) -> RunConfig:
        """A config that names only the rows (data, split, seed): what peers are fitted and scored on."""
        return build_config({"model": "global-mean", **self._rows(seed)})

    def _rows(self, seed: int) -> dict[str, Any]:
        rows: dict[str, Any] = {"data": self.data, "seed": seed}
        if self.test_file is not None:
            return {**rows, "test_file": self.test_file}
        return {**rows, "split": self.split or RunConfig.model_fields["split"].default}
