"""``deepmovie auto``: from a ratings file to the best model found in a time budget, servable.

1. Profile the training rows and pick candidates by rule (:mod:`deepmovie.auto.candidates`).
2. Successive halving over candidates: each round splits its share of the search time equally among
   the candidates still in, each continuing its own Optuna study (:func:`deepmovie.tuning.tune`, trials
   judged on validation rows only, pruned by the median rule, cut at the round's deadline); after a
   round the better half goes on.
3. The finalists are trained once more with their best settings (early-stopped on the same validation
   rows), then blended by ridge on those rows (:func:`deepmovie.blend.blend`). Where time allows, each
   also gets a refit twin (retrained on train + valid for its best epoch count) that predicts the test
   rows and is served, the weights staying those fitted on the members' validation predictions. The
   test rows are scored once. For ranking, the best model by validation NDCG@10 is the result.
4. ``OUT/best`` is a servable run directory; ``leaderboard.md/json`` lists every trial.

The budget is wall time: the search stops where the finalists' time begins (30% of the budget until
their cost is known from their best trials' seconds, then that cost, for a member and a twin each,
with a margin); a finalist or twins that would not fit in what is left are skipped, and say so.
Every step is recorded in ``auto.json`` as it ends, so the same command resumes an interrupted run
where it stopped, with the time already spent counted against the budget.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import optuna

from deepmovie import machine
from deepmovie.auto.candidates import Candidate, candidates
from deepmovie.auto.profile import DataProfile, Task, profile
from deepmovie.auto.report import leaderboard_markdown, leaderboard_rows, markdown, plot_leaderboard
from deepmovie.blend import blend
from deepmovie.config import RunConfig
from deepmovie.data.dataset import Dataset
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import data_info, fit_valid, monitor, run, select_device, single_split
from deepmovie.files import write_text
from deepmovie.rundir import SUMMARY, claim, read_summary
from deepmovie.splits import Split
from deepmovie.tuning import tune
from deepmovie.tuning.study import STUDY_DB

STATE = "auto.json"
BEST = "best"
STUDIES = "studies"
MEMBERS = "members"
SEARCH_SHARE = 0.7
MAX_FINALISTS = {"rating": 4, "ranking": 1}
FITS_PER_FINALIST = 3  # a member, then its twin (trained early-stopped, then refit on train + valid)
FLOOR_SHARE = 0.05  # of the budget, kept for the finalists however cheap they look
MIN_SHARE = 0.25  # of its planned slot, the least time a candidate gets in a round that has overrun
MARGIN = 1.2  # a finalist's refit is expected to take its best trial's seconds, times this
CUT = "cut by the time budget"


def parse_budget(text: str) -> float:
    """Seconds in ``30m``, ``90s``, ``1h30m`` or a plain number of seconds."""
    value = str(text).strip().lower()
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", value)
    if not value or parts is None or not any(parts.groups()):
        raise DeepMovieError(f"--budget {text!r}: expected a duration such as 30m, 90s or 1h30m")
    seconds = sum(float(n) * unit for n, unit in zip(parts.groups(), (3600, 60, 1), strict=True) if n)
    if seconds <= 0:
        raise DeepMovieError(f"--budget {text!r}: must be more than 0 seconds")
    return seconds


def auto(
    config: RunConfig,
    out: Path,
    *,
    budget: float,
    task: Task | None = None,
    jobs: int = 1,
    command: str | None = None,
    overwrite: bool = False,
    quiet: bool = True,
) -> dict[str, Any]:
    """Search, refit, blend and write ``out`` within ``budget`` seconds; the summary (also in
    ``auto.json``). ``config`` gives the data, split, seed and limits; its model is ignored."""
    began = time.time()
    if budget <= 0 or jobs < 1:
        raise DeepMovieError(f"--budget {budget:g} s and --jobs {jobs} must be positive")
    dataset, split = single_split(config, verb="run auto", noun="auto")
    data_profile = profile(dataset, split)
    task = task or data_profile.task
    if task == "rating" and data_profile.implicit:
        raise DeepMovieError(
            f"{config.data}: {data_profile.distinct_ratings} distinct rating value(s): nothing to "
            "regress; use --task ranking"
        )
    settings = {"config": config.model_dump(exclude={"model"}), "task": task, "budget": budget, "jobs": jobs}
    state = _start(out, settings, overwrite)
    if state.get("summary"):
        return state["summary"]
    spent_before = state.get("spent", 0.0)
    clock = Clock(began, budget - spent_before, spent_before)
    found, skipped = candidates(data_profile, task, data_info(dataset, split), config.max_memory)
    if not found:
        raise DeepMovieError(f"no candidate model fits this data: {'; '.join(skipped)}")
    search = Search(config, out, found, jobs, quiet, (dataset, split))
    goal, higher_is_better = monitor(search.config_of(found[0]), dataset, split)
    state.update(profile=data_profile.to_dict(), candidates=[c.__dict__ for c in found], skipped=skipped)
    state.update(monitor=goal, direction="maximize" if higher_is_better else "minimize")
    _save(out, state, clock)
    search.run(state, clock, lambda: _save(out, state, clock), MAX_FINALISTS[task])
    finals = _finalists(search, task, state, clock, out)
    _save(out, state, clock)
    result = _result(finals, task, out, command)
    summary = {
        "task": task,
        "data": config.data,
        "split": "file" if config.test_file else config.split,
        "seed": config.seed,
        "monitor": goal,
        "profile": data_profile.to_dict(),
        "skipped": skipped,
        "finalists": finals,
        "result": result,
        "budget_seconds": budget,
        "wall_seconds": clock.spent(),
        "command": command,
        "machine": machine.describe(),
        "load_average": os.getloadavg(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    rows = leaderboard_rows(search.trials(state), higher_is_better)
    write_text(out / "leaderboard.json", json.dumps(rows, indent=2) + "\n")
    write_text(out / "leaderboard.md", leaderboard_markdown(rows, goal))
    write_text(out / "auto.md", markdown(summary, state, rows))
    plot_leaderboard(rows, goal, out / "leaderboard.png", higher_is_better)
    state["summary"] = summary
    _save(out, state, clock)
    return summary


class Clock:
    """Wall time against the budget, across resumed runs."""

    def __init__(self, began: float, left: float, spent_before: float) -> None:
        self.began, self.deadline, self.spent_before = began, began + left, spent_before

    def spent(self) -> float:
        return self.spent_before + time.time() - self.began

    def left(self) -> float:
        return self.deadline - time.time()


class Search:
    """The candidates' studies: successive halving rounds, each study continued where it stopped."""

    def __init__(
        self,
        config: RunConfig,
        out: Path,
        found: list[Candidate],
        jobs: int,
        quiet: bool,
        data: tuple[Dataset, Split],
    ) -> None:
        self.config, self.out, self.found, self.data = config, out, found, data
        self.jobs, self.quiet = jobs, quiet
        self._rows: dict[str, list[dict[str, Any]]] = {}  # each study's trials, read once per search

    def config_of(self, candidate: Candidate, params: dict[str, Any] | None = None) -> RunConfig:
        """The run config of a candidate with a trial's settings (as it ran: learning rates scaled)."""
        return self.config.model_copy(
            update={"model": candidate.model, "params": {**candidate.params, **(params or {})}}
        )

    def run(self, state: dict, clock: Clock, save: Any, finalists: int) -> None:
        """Successive halving until the time the finalists will need is all that is left."""
        alive = [c.model for c in self.found]
        rounds = state.setdefault("rounds", [])
        total = max(1, math.ceil(math.log2(len(alive)))) if len(alive) > 1 else 1
        if rounds:  # resumed: continue with the candidates the last finished round kept
            alive = rounds[-1]["kept"]
        for number in range(len(rounds), total):
            search_end = clock.deadline - self.reserve(state, finalists, clock)
            now = time.time()
            if now >= search_end:
                break
            round_end = now + (search_end - now) / (total - number)
            slot = (round_end - now) / len(alive)
            for position, model in enumerate(alive):
                # The finalists' cost grows as better (often longer) trials are found: the round ends
                # no later than the time they now need.
                round_end = min(round_end, clock.deadline - self.reserve(state, finalists, clock))
                left = round_end - time.time()
                if left <= 0 and number > 0:  # the finalists' time: the rest keep their last round's figure
                    break
                # What the round has left, shared by the candidates still to go: one that overran its
                # slot (a long epoch) does not take the last one's whole turn.
                share = max(left / (len(alive) - position), MIN_SHARE * slot)
                self.search(self._candidate(model), time.time() + share, state)
                save()
            scored = sorted(alive, key=lambda m: self.rank_key(state, m))
            kept = scored[: max(2, math.ceil(len(alive) / 2))] if number < total - 1 else scored
            if number < total - 1:  # one epoch longer than its next share would only overrun the budget
                share = (clock.deadline - self.reserve(state, finalists, clock) - time.time()) / (
                    (total - number - 1) * len(kept)
                )
                kept = [m for m in kept if self.epoch_seconds(m, state) <= share] or kept[:1]
            rounds.append({"round": number + 1, "slot_seconds": slot, "searched": alive, "kept": kept})
            alive = kept
            save()

    def ranked_finalists(self, state: dict, count: int) -> list[str]:
        """The ``count`` best candidates with a figure, best first, from every round (one left behind
        early may still rank among them): whom :func:`_finalists` trains and the reserve is kept for."""
        ranked = sorted((c.model for c in self.found), key=lambda m: self.rank_key(state, m))
        return [m for m in ranked if self.best(state, m) is not None][:count]

    def reserve(self, state: dict, finalists: int, clock: Clock) -> float:
        """Seconds kept for the finalists: a fixed share of the budget until their cost is known,
        then what their best trials took, for a member and a refit twin each (with a margin)."""
        budget = clock.deadline - clock.began + clock.spent_before
        best = [self.best(state, m) for m in self.ranked_finalists(state, finalists)]
        best = [b for b in best if b.get("seconds")]
        if not best:
            return (1 - SEARCH_SHARE) * budget
        return max(FLOOR_SHARE * budget, MARGIN * FITS_PER_FINALIST * sum(b["seconds"] for b in best))

    def _candidate(self, model: str) -> Candidate:
        return next(c for c in self.found if c.model == model)

    def search(self, candidate: Candidate, until: float, state: dict) -> None:
        """Spend until ``until`` on ``candidate``: trials of its study, or its one fit."""
        config = self.config_of(candidate)
        if not candidate.searchable:
            self._fit_once(candidate, config, until, state)
            return
        self._rows.pop(candidate.model, None)  # its study is about to grow
        folder = self.out / STUDIES / candidate.model
        try:
            tune(
                config,
                folder,
                10**6,
                jobs=self.jobs,
                timeout=max(until - time.time(), 1.0),
                deadline=until,
                quiet=self.quiet,
                data=self.data if self.jobs == 1 else None,
                lr_scale=candidate.lr_scale,
            )
        except DeepMovieError as exc:  # no trial finished in its slot: its epochs' figures still count
            state.setdefault("notes", {})[candidate.model] = str(exc)

    def _fit_once(self, candidate: Candidate, config: RunConfig, until: float, state: dict) -> None:
        fixed = state.setdefault("fixed", {})
        earlier = fixed.get(candidate.model)
        # Fitted already, unless the budget cut it and this round gives it longer (a Gibbs sampler's
        # first slot may hold only a few sweeps): then it is fitted again from the start.
        if earlier is not None and (earlier["note"] != CUT or until - time.time() <= earlier["seconds"]):
            return
        dataset, split = self.data
        began = time.time()
        figures: list[float] = []

        def cut(epoch: int, score: float) -> None:
            figures.append(score)
            if time.time() > until:
                raise _OutOfTime

        try:
            fit = fit_valid(config, dataset, split, select_device(config.device), cut)
            value, epoch, note = fit.best_valid, fit.best_epoch, None
        except _OutOfTime:
            finite = [f for f in figures if math.isfinite(f)]
            value = (max if state.get("direction") == "maximize" else min)(finite) if finite else None
            epoch, note = len(figures), CUT
        except DeepMovieError as exc:
            value, epoch, note = None, 0, str(exc)
        fixed[candidate.model] = {
            "value": value,
            "best_epoch": epoch,
            "epochs": len(figures),
            "seconds": time.time() - began,
            "params": candidate.params,
            "note": note,
        }

    def best(self, state: dict, model: str) -> dict[str, Any] | None:
        """The best validation figure ``model`` reached, its settings and the seconds its trial took."""
        if model in state.get("fixed", {}):
            entry = state["fixed"][model]
            return entry if entry["value"] is not None else None
        trials = [t for t in self._study_trials(model) if t["value"] is not None]
        if not trials:
            return None
        pick = max if state.get("direction") == "maximize" else min
        return pick(trials, key=lambda t: t["value"])

    def epoch_seconds(self, model: str, state: dict) -> float:
        """The fastest epoch ``model``'s trials took: the smallest step a budget can cut it at."""
        fixed = state.get("fixed", {})
        rows = [fixed[model]] if model in fixed else self._study_trials(model)
        rows = [t for t in rows if t.get("seconds") and t.get("epochs")]
        return min((t["seconds"] / t["epochs"] for t in rows), default=0.0)

    def rank_key(self, state: dict, model: str) -> float:
        best = self.best(state, model)
        if best is None:
            return math.inf
        return -best["value"] if state.get("direction") == "maximize" else best["value"]

    def _study_trials(self, model: str) -> list[dict[str, Any]]:
        """``model``'s trials as leaderboard rows (a study of thousands takes a while to read: once)."""
        if model not in self._rows:
            db = self.out / STUDIES / model / STUDY_DB
            if not db.is_file():
                return []
            study = optuna.load_study(study_name=model, storage=f"sqlite:///{db}")
            self._rows[model] = [_trial_row(model, t, study.direction.name.lower()) for t in study.trials]
        return self._rows[model]

    def trials(self, state: dict) -> list[dict[str, Any]]:
        rows = [row for c in self.found for row in self._study_trials(c.model)]
        rows += [
            {"model": model, "trial": 0, "state": "fitted once", "searched": {}, **entry}
            for model, entry in state.get("fixed", {}).items()
        ]
        return rows


class _OutOfTime(Exception):
    """Raised from the epoch callback of a one-off fit when its time is up."""


def _trial_row(model: str, trial: optuna.trial.FrozenTrial, direction: str) -> dict[str, Any]:
    """One trial as a leaderboard row; a pruned trial counts by the best figure its epochs reached."""
    value = trial.value
    if value is None and trial.intermediate_values:
        values = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
        value = (max if direction == "maximize" else min)(values) if values else None
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None
    )
    return {
        "model": model,
        "trial": trial.number,
        "state": trial.state.name.lower(),
        "value": value,
        "best_epoch": trial.user_attrs.get("best_epoch"),
        "epochs": len(trial.intermediate_values),
        "seconds": seconds,
        "params": trial.user_attrs.get("params", trial.params),
        "searched": trial.params,
        "note": trial.user_attrs.get("error"),
    }


def _finalists(search: Search, task: Task, state: dict, clock: Clock, out: Path) -> list[dict[str, Any]]:
    """Train the best candidates once more with their best settings; those that fit in the time left."""
    ranked = search.ranked_finalists(state, MAX_FINALISTS[task])
    if not ranked:
        raise DeepMovieError("no candidate finished a trial within the budget; give it more time (--budget)")
    finals = state.setdefault("finalists", [])
    done = {f["model"] for f in finals}
    cost = {m: (search.best(state, m).get("seconds") or 0.0) * MARGIN for m in ranked}
    for position, model in enumerate(ranked):
        if model in done:
            continue
        # What this one may take: the time left, less what the finalists after it are expected to need;
        # but a better one is not cut for worse ones: they give way.
        room = clock.left() - sum(cost[m] for m in ranked[position + 1 :])
        if room < cost[model]:
            room = min(clock.left(), cost[model])
        epochs = _epochs_that_fit(search.best(state, model), room)
        if epochs == 0:
            finals.append({"model": model, "skipped": f"needs about {cost[model]:.0f} s, {room:.0f} s left"})
            continue
        finals.append(_train_finalist(search, model, task, state, out, epochs, time.time() + room))
    if not any("run" in f for f in finals):  # none fits the time left: the quickest one, late
        model = min(ranked, key=lambda m: search.best(state, m).get("seconds") or 0.0)
        finals[:] = [f for f in finals if f["model"] != model]
        finals.append(
            _train_finalist(search, model, task, state, out, search.best(state, model).get("epochs"))
        )
    if task == "rating":
        _train_twins(search, [f for f in finals if "run" in f], clock, out)
    return finals


def _train_twins(search: Search, members: list[dict[str, Any]], clock: Clock, out: Path) -> None:
    """Each member's twin: the same config with ``refit`` (retrained on train + valid for the best
    epoch count), whose test predictions the blend uses while its weights stay fitted on the members'
    validation predictions, as ``deepmovie blend --twin`` does. All or none: one per member."""
    if len(members) < 2:
        return
    expected = MARGIN * (FITS_PER_FINALIST - 1) * sum(m.get("fit_seconds") or 0.0 for m in members)
    if not all("twin" in m for m in members) and expected > clock.left():
        for m in members:
            m["twin_skipped"] = f"twins need about {expected:.0f} s, {clock.left():.0f} s left"
        return
    for m in members:
        folder = out / MEMBERS / f"{m['model']}-refit"
        if not (folder / SUMMARY).is_file():
            config = search.config_of(search._candidate(m["model"]), m["params"]).model_copy(
                update={"refit": True}
            )
            run(config, folder, overwrite=True, quiet=search.quiet, until=clock.deadline)
        m["twin"] = str(folder)
        m["twin_test_rmse"] = read_summary(folder).get("test_rmse")


def _epochs_that_fit(best: dict[str, Any], room: float) -> int | None:
    """The epochs a finalist trains: its best trial's (None: as configured, where the trial does not
    say), fewer where those would not fit in ``room`` seconds, 0 where not even one would."""
    epochs, seconds = best.get("epochs") or None, (best.get("seconds") or 0.0) * MARGIN
    if seconds <= room:
        return epochs
    if not epochs:
        return 0
    return min(epochs, max(int(room / (seconds / epochs)), 0))


def _train_finalist(
    search: Search,
    model: str,
    task: Task,
    state: dict,
    out: Path,
    epochs: int | None = None,
    until: float | None = None,
) -> dict[str, Any]:
    """Trained as its best trial was, for that trial's epochs (so its figure and time are the trial's),
    or for ``epochs`` where the time left holds no more; its epochs slower than its trial's (a busy
    machine) stop at ``until``."""
    best = search.best(state, model)
    params = {**best["params"], **({"epochs": epochs} if epochs else {})}
    folder = out / BEST if task == "ranking" else out / MEMBERS / model  # one ranker: the result
    summary = read_summary(folder) if (folder / SUMMARY).is_file() else None
    if summary is None:
        config = search.config_of(search._candidate(model), params)
        summary = run(config, folder, overwrite=True, quiet=search.quiet, until=until)
    figures = ("test_rmse", "test_mae", "fit_seconds") + (("test_ndcg@10",) if task == "ranking" else ())
    trial_epochs = best.get("epochs") or 0
    cut = (
        f"cut to {epochs} of its trial's {trial_epochs} epochs to fit the budget"
        if epochs and epochs < trial_epochs
        else None
    )
    return {
        "model": model,
        "run": str(folder),
        "valid": best["value"],
        "params": params,
        **({"cut": cut} if cut else {}),
        **{k: summary.get(k) for k in figures},
    }


def _result(finals: list[dict[str, Any]], task: Task, out: Path, command: str | None) -> dict[str, Any]:
    """Blend the trained finalists into ``out/best`` (rating), or point at the best ranker."""
    trained = [f for f in finals if "run" in f]
    if task == "ranking":  # the one ranker was trained in out/best
        return {"kind": "single", "run": str(out / BEST), "test_ndcg@10": trained[0].get("test_ndcg@10")}
    if len(trained) < 2:  # the time left trained one member: it is the result
        shutil.copytree(trained[0]["run"], out / BEST, dirs_exist_ok=True)
        return {"kind": "single", "run": str(out / BEST), "test_rmse": trained[0].get("test_rmse")}
    twins = [Path(f["twin"]) for f in trained] if all("twin" in f for f in trained) else None
    runs = [Path(f["run"]) for f in trained]
    summary = blend(runs, out / BEST, twins=twins, command=command, overwrite=True)
    return {
        "kind": "blend" + (" of refit twins" if twins else ""),
        "run": str(out / BEST),
        "valid_rmse": summary["valid_rmse"],
        "test_rmse": summary["test_rmse"],
        "test_mae": summary["test_mae"],
        "weights": {m["model"]: m["weight"] for m in summary["members"]},
        "intercept": summary["intercept"],
    }


def _start(out: Path, settings: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """The state of an earlier run of the same command in ``out`` (to resume), or a fresh one."""
    held = claim(out, (STATE,), "an auto folder", overwrite=overwrite)
    if not held:
        return {"settings": settings}
    try:
        state = json.loads((out / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise DeepMovieError(f"{out / STATE}: damaged ({exc}); pass --overwrite to start afresh") from None
    if state.get("settings") != json.loads(json.dumps(settings)):
        if not overwrite:
            raise DeepMovieError(
                f"{out}: an auto run with other settings; run the same command to resume it, choose "
                "another --out, or pass --overwrite to start afresh"
            )
        return {"settings": settings}
    return state


def _save(out: Path, state: dict[str, Any], clock: Clock) -> None:
    state["spent"] = clock.spent()
    write_text(out / STATE, json.dumps(state, indent=2, default=str) + "\n")


__all__ = ["DataProfile", "auto", "parse_budget"]
