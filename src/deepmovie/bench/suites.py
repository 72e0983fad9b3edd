"""Named suites: the seed documents' tables as bench entries (``deepmovie bench --suite NAME``).

Each suite names its data and split; ``--data`` points it at a local copy (e.g. ../shared/data/ml-1m).
Presets are file names in ``--config-dir``. An entry whose model or encoder is not registered here is
reported as missing, never replaced by something else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from deepmovie.bench.entries import Entry
from deepmovie.errors import DeepMovieError


@dataclass(frozen=True)
class Suite:
    """A table to reproduce: its entries, the data and split it was measured on, and its source."""

    name: str
    title: str
    source: str
    data: str
    split: str
    entries: tuple[Entry, ...]

    def resolved(self, config_dir: Path) -> list[Entry]:
        """The entries with their preset file names looked up in ``config_dir``."""
        return [replace(e, preset=config_dir / e.preset) if e.preset is not None else e for e in self.entries]


# The tutorial trains every variant 5 epochs with Adam 1e-3 (MXNet); batch 1024 here, as ML-1M is
# 20x smaller than its ML-20M and a batch of 25,000 would leave too few steps.
_TUTORIAL_DEEPMF = {
    "user_dim": 25,
    "item_dim": 25,
    "hidden": [64, 64],
    "activation": "relu",
    "optimizer": "adam",
    "lr": 0.001,
    "reg": 0.0,
    "batch_size": 1024,
    "epochs": 5,
    "patience": 0,
}

# The notes' SGD vs Adagrad comparison on the like task (features.md): 5 epochs, no early stopping.
_OPTIMIZERS = {"sgd": 0.0001, "adagrad": 0.01}

# The poster's table as in benchmarks/results/hybrid-ml-1m.md: 50 factors, lambda_U 0.1 (PMF's, chosen on
# validation) and each encoder's lambda_V chosen there on validation rows.
_POSTER = {"factors": 50, "epochs": 40, "patience": 3, "reg_user": 0.1}
HYBRID_REG_ITEM = {
    "cnn": 0.15,
    "cnn-kan": 0.1,
    "lstm": 0.1,
    "resnet": 0.15,
    "transformer": 0.1,
    "minilm": 0.05,
}

SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite(
            "tutorial",
            "Deep matrix factorization tutorial: MF SGD vs Adam, deep MF and its variants",
            "deep-matrix-factorization-tutorial.txt",
            "ml-1m",
            "random:0.1",
            (
                Entry("mf-sgd", "mf", Path("mf-sgd-ml-1m.yaml")),
                Entry("mf-adam", "mf", Path("mf-adam-ml-1m.yaml")),
                Entry("deepmf", "deepmf", params=_TUTORIAL_DEEPMF),
                Entry("deepmf-batchnorm", "deepmf", params={**_TUTORIAL_DEEPMF, "batch_norm": True}),
                Entry(
                    "deepmf-classification", "deepmf", params={**_TUTORIAL_DEEPMF, "head": "classification"}
                ),
                Entry("deepmf-asymmetric", "deepmf", params={**_TUTORIAL_DEEPMF, "user_dim": 15}),
                Entry(
                    "deepmf-genres",
                    "deepmf",
                    params={**_TUTORIAL_DEEPMF, "user_dim": 15, "item_dim": 20, "genre_dim": 5},
                ),
            ),
        ),
        Suite(
            "lecture",
            "AutoRec lecture: the f (decoder) / g (encoder) table, I-AutoRec",
            "autoencoders-lecture.txt",
            "ml-1m",
            "random:0.1",
            tuple(
                Entry(
                    f"autorec-f-{f}-g-{g}",
                    "autorec",
                    Path("autorec-ml-1m.yaml"),
                    {"decoder": f, "encoder": g},
                )
                for f in ("identity", "sigmoid")
                for g in ("identity", "sigmoid")
            ),
        ),
        Suite(
            "dlrm",
            "DLRM notes: fm, dlrm and dcn; SGD vs Adagrad on the like task",
            "dlrm-notes.txt",
            "ml-1m",
            "random:0.1",
            (
                Entry("fm", "fm", Path("fm-ml-1m.yaml")),
                Entry("dlrm", "dlrm", Path("dlrm-ml-1m.yaml")),
                Entry("dcn", "dcn", Path("dcn-ml-1m.yaml")),
                *(
                    Entry(
                        f"{model}-like-{optimizer}",
                        model,
                        Path(f"{model}-ml-1m.yaml"),
                        {"task": "like", "optimizer": optimizer, "lr": lr, "epochs": 5, "patience": 0},
                    )
                    for model in ("dlrm", "dcn")
                    for optimizer, lr in _OPTIMIZERS.items()
                ),
            ),
        ),
        Suite(
            "deepmovie",
            "DeepMovie poster: PMF and the hybrid with each text encoder",
            "deepmovie-poster.txt",
            "ml-1m",
            "convmf",
            (
                Entry("pmf", "pmf", params={**_POSTER, "reg_item": 0.1}),
                *(
                    Entry(f"hybrid-{name}", "hybrid", params={**_POSTER, "encoder": name, "reg_item": reg})
                    for name, reg in HYBRID_REG_ITEM.items()
                ),
            ),
        ),
    )
}


def get_suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise DeepMovieError(f"unknown suite {name!r} (known: {', '.join(SUITES)})") from None
