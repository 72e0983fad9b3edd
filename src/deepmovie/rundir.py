"""The file names of a run directory, in one place: every layer that reads or writes a run uses these.

A run directory holds its resolved config, per-epoch metrics, a resumable checkpoint, the final
weights, the raw id maps, the serving artifacts (manifest, item and user metadata, the seen ratings
per fold) and the summary. A k-fold run has one ``fold-N`` directory per fold for the per-fold files.
"""

CONFIG = "config.yaml"  # the fully resolved RunConfig
METRICS = "metrics.jsonl"  # one line per epoch
CHECKPOINT = "checkpoint.pt"  # written atomically each epoch; what --resume reads
WEIGHTS = "model.pt"  # {"format": 1, "model": name, "state": state_dict}
ID_MAPS = "ids.npz"  # raw user and item ids by index
SUMMARY = "summary.json"  # test figures, timings, machine, config
MANIFEST = "serving.json"  # serving format version, rating scale, genre names, user vocabularies
ITEMS = "items.npz"  # titles, years, genres, documents
USERS = "users.npz"  # user feature codes
SEEN = "seen.npz"  # per fold: the train + valid ratings as CSR, and the training mean
REFIT = "refit"  # per fold: the refit's checkpoint and metrics
FOLD_PREFIX = "fold-"
