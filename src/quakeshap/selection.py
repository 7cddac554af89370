"""Which test traces to explain (``docs/method.md`` §4).

Four groups, picked from the test set's predictions (``reports/evaluate/predictions.csv``):

``class``
    ``per_class`` correctly classified traces of each class, drawn at random (seeded).
``misclassified``
    Every misclassified trace (the study); with ``max_misclassified`` set, the most
    confidently wrong ones first.
``example``
    The traces named in ``examples``; when none are named, the most confidently correct
    trace of each class (largest logit margin).
``week``
    ``per_week`` traces per ISO week ``week_min .. week_max``: that week's ``class`` picks
    first, topped up at random from the week's other correctly classified traces.

A trace may sit in several groups: the result has one row per (trace, group), each with the
reason it was picked. Asking for more traces than exist is not an error: the group is
capped, the shortfall logged and counted in :attr:`Selection.summary`. Nothing is copied;
later stages look the traces up by name.

For time-to-failure classes the groups are the same over the N classes (``margin`` is
then the top logit's lead over the second). For a magnitude regression the classes are
magnitude bins (``task.magnitude.bin_width``), a trace is "correct" when its predicted
magnitude falls in its catalogue magnitude's bin, the ``class`` and ``example`` picks are
per bin (the example: the smallest residual) and the ``misclassified`` group holds the
worst residuals first.

Randomness comes from ``seed`` through one independent stream per (group, class or week), so
changing ``per_week`` does not change the ``class`` picks and vice versa; the input rows are
put in trace-name order first, so the row order of the predictions does not matter.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quakeshap.artifacts import predictions as prediction_table
from quakeshap.artifacts.selection import (
    CLASS_GROUP,
    EXAMPLE_GROUP,
    GROUPS,
    MISCLASSIFIED_GROUP,
    SELECTION_COLUMNS,
    WEEK_GROUP,
)
from quakeshap.config import SelectConfig
from quakeshap.record import CLASS_NAMES

log = logging.getLogger(__name__)


class SelectionError(ValueError):
    """The predictions table or the ``select`` parameters cannot give a selection."""


@dataclass(frozen=True)
class Selection:
    """``table``: the rows of ``data/selection.csv``; ``summary``: counts per group,
    including how many requested traces did not exist (``capped``)."""

    table: pd.DataFrame
    summary: dict[str, Any]


def _stream(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _sample(frame: pd.DataFrame, k: int, rng: np.random.Generator) -> pd.DataFrame:
    """``min(k, len(frame))`` rows drawn without replacement, returned in input order."""
    if k >= len(frame):
        return frame
    chosen = np.sort(rng.choice(len(frame), size=k, replace=False))
    return frame.iloc[chosen]


def _rows(frame: pd.DataFrame, group: str, reasons: list[str] | str) -> pd.DataFrame:
    """Rows of the selection (:data:`SELECTION_COLUMNS`) for the traces of ``frame``."""
    return frame.assign(
        group=group,
        reason=reasons if isinstance(reasons, list) else [reasons] * len(frame),
        explain_both=group in (MISCLASSIFIED_GROUP, EXAMPLE_GROUP),
    )[list(SELECTION_COLUMNS)]


def _regression_frame(predictions: pd.DataFrame, bin_width: float) -> pd.DataFrame:
    """A magnitude regression's predictions as the classes' frame: ``label`` = the
    catalogue magnitude's bin, ``predicted`` = the predicted magnitude's bin, ``correct`` =
    the same bin, ``margin`` = how well the trace stands for its group (−|residual| for the
    correct ones: the best first; |residual| for the others: the worst first), ``detail``
    the two magnitudes (for the reasons)."""
    magnitude = predictions["magnitude"].to_numpy(dtype=np.float64)
    residual = predictions["residual"].to_numpy(dtype=np.float64)

    def bins(values: np.ndarray) -> list[str]:
        lo = np.floor(values / bin_width) * bin_width
        return [f"M{v:.2f}-{v + bin_width:.2f}" for v in lo]

    label, predicted = bins(magnitude), bins(magnitude + residual)
    correct = np.array(label) == np.array(predicted)
    detail = [f"M {m:.2f} predicted {m + r:.2f}" for m, r in zip(magnitude, residual, strict=True)]
    return predictions.assign(
        label=label,
        predicted=predicted,
        correct=correct,
        margin=np.where(correct, -np.abs(residual), np.abs(residual)),
        detail=detail,
    )


def _class_frame(predictions: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    """Classes' predictions with ``margin`` (the top logit's lead over the next: the two
    logits' difference for the study) and ``detail`` (the logits, for the reasons)."""
    logits = predictions[[f"logit_{n}" for n in names]].to_numpy(dtype=np.float64)
    top2 = np.sort(logits, axis=1)[:, -2:]
    if names == CLASS_NAMES:  # the study's: |post - pre| exactly as before
        margin = (predictions["logit_post"] - predictions["logit_pre"]).abs().to_numpy()
    else:
        margin = top2[:, 1] - top2[:, 0]
    detail = [
        "logits " + ", ".join(f"{n} {v:.3f}" for n, v in zip(names, row, strict=True))
        for row in logits
    ]
    return predictions.assign(margin=margin, detail=detail)


def _check_predictions(predictions: pd.DataFrame, bin_width: float = 0.5) -> pd.DataFrame:
    regression = prediction_table.is_regression(predictions)
    names = prediction_table.class_names(predictions)
    if regression:
        expected = prediction_table.REGRESSION_COLUMNS
    else:
        expected = prediction_table.prediction_columns(names or CLASS_NAMES)
    absent = [c for c in expected if c not in predictions.columns]
    if absent:
        raise SelectionError(
            f"the predictions table lacks column(s) {absent}; re-run `dvc repro evaluate`"
        )
    duplicated = predictions["trace_name"][predictions["trace_name"].duplicated()]
    if len(duplicated):
        raise SelectionError(
            f"trace(s) listed twice in the predictions: {sorted(set(duplicated))[:5]}"
        )
    if not regression:
        labels = set(predictions["label"]) | set(predictions["predicted"])
        if not labels <= set(names):
            raise SelectionError(
                f"unknown class name(s) {sorted(labels - set(names))}; expected {list(names)}"
            )
    frame = predictions.sort_values("trace_name", kind="stable").reset_index(drop=True)
    frame = _regression_frame(frame, bin_width) if regression else _class_frame(frame, names)
    frame["correct"] = frame["correct"].astype(bool)
    frame["week"] = frame["week"].astype(np.int64)
    return frame


def _classes(frame: pd.DataFrame) -> list[str]:
    """The classes of a checked frame in output order (magnitude bins ascending)."""
    names = prediction_table.class_names(frame)
    return list(names) if names else sorted(frame["label"].unique())


def pick_per_class(
    frame: pd.DataFrame, per_class: int, seed: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``per_class`` random correctly classified traces of each class (capped)."""
    picks, summary = [], {}
    for c, name in enumerate(_classes(frame)):
        pool = frame[frame["correct"] & (frame["label"] == name)]
        chosen = _sample(pool, per_class, _stream(seed, 0, c))
        capped = per_class - len(chosen)
        if capped:
            log.warning(
                "select.per_class = %d but only %d correctly classified '%s' test traces "
                "exist: taking all of them", per_class, len(pool), name,
            )  # fmt: skip
        summary[name] = {"requested": per_class, "selected": len(chosen), "capped": capped}
        picks.append(_rows(chosen, CLASS_GROUP, f"random correctly classified '{name}' trace"))
    return pd.concat(picks, ignore_index=True), summary


def pick_misclassified(
    frame: pd.DataFrame, max_misclassified: int | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every misclassified trace; at most ``max_misclassified`` (most confident first)."""
    wrong = frame[~frame["correct"]]
    if max_misclassified is not None and len(wrong) > max_misclassified:
        wrong = wrong.sort_values(["margin", "trace_name"], ascending=[False, True])
        wrong = wrong.iloc[:max_misclassified].sort_values("trace_name")
        log.info(
            "select.max_misclassified = %d: keeping the %d most confidently wrong of %d",
            max_misclassified, len(wrong), int((~frame["correct"]).sum()),
        )  # fmt: skip
    reasons = [
        f"'{r.label}' classified as '{r.predicted}' ({r.detail})" for r in wrong.itertuples()
    ]
    summary = {"available": int((~frame["correct"]).sum()), "selected": len(wrong)}
    return _rows(wrong, MISCLASSIFIED_GROUP, reasons), summary


def pick_examples(
    frame: pd.DataFrame, examples: Collection[str], known_traces: Collection[str] | None = None
) -> pd.DataFrame:
    """The named example traces, or the most confidently correct trace of each class.

    Parameters
    ----------
    examples
        Trace names; each must be in the test set. A name that is not is a
        :class:`SelectionError` listing close matches.
    known_traces
        All trace names of the data set (optional): lets the error say that a name exists
        but is not a test trace.
    """
    if examples:
        names = list(dict.fromkeys(examples))
        present = set(frame["trace_name"])
        missing = [n for n in names if n not in present]
        if missing:
            raise SelectionError(_unknown_example_message(missing, present, known_traces))
        chosen = frame.set_index("trace_name").loc[names].reset_index()
        return _rows(chosen, EXAMPLE_GROUP, "example named in select.examples")
    rows = []
    for name in _classes(frame):
        pool = frame[frame["correct"] & (frame["label"] == name)]
        if pool.empty:
            log.warning("no correctly classified '%s' test trace: no example for that class", name)
            continue
        best = _most_confident(pool, 1)
        margin = float(best["margin"].iloc[0])
        rows.append(
            _rows(
                best,
                EXAMPLE_GROUP,
                f"most confidently correct '{name}' (logit margin {margin:.3f})",
            )
        )
    if not rows:
        return _rows(frame.iloc[:0], EXAMPLE_GROUP, [])
    return pd.concat(rows, ignore_index=True)


def _most_confident(pool: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` rows of ``pool`` with the largest logit margin, ties by trace name."""
    return pool.sort_values(["margin", "trace_name"], ascending=[False, True]).iloc[:k]


def most_confident_per_class(
    predictions: pd.DataFrame, per_class: int, bin_width: float = 0.5
) -> pd.DataFrame:
    """The ``per_class`` most confidently correct test traces of each class, as ``class``
    rows of a selection (:data:`SELECTION_COLUMNS`), most confident first.

    What the ``explainers`` stage explains with every configuration: the traces whose
    label the model is surest of. A class with fewer correct traces gives all it has
    (logged).
    """
    frame = _check_predictions(predictions, bin_width)
    rows = []
    for name in _classes(frame):
        best = _most_confident(frame[frame["correct"] & (frame["label"] == name)], per_class)
        if len(best) < per_class:
            log.warning(
                "%d most confidently correct '%s' test traces asked for, %d exist",
                per_class, name, len(best),
            )  # fmt: skip
        reasons = [f"correct '{name}', logit margin {m:.3f}" for m in best["margin"]]
        rows.append(_rows(best, CLASS_GROUP, reasons))
    table = pd.concat(rows, ignore_index=True)
    return table.astype({"week": "int64", "explain_both": bool})


def _unknown_example_message(
    missing: list[str], present: set[str], known: Collection[str] | None
) -> str:
    parts = []
    for name in missing:
        if known is not None and name in set(known):
            parts.append(f"{name!r} is in the data set but not in the test set")
            continue
        close = _close_matches(name, present)
        hint = f"close matches: {', '.join(close)}" if close else "no close match"
        parts.append(f"{name!r} is not a test trace ({hint})")
    return (
        "select.examples: "
        + "; ".join(parts)
        + ". Name test traces (reports/evaluate/predictions.csv) or leave the list empty."
    )


def _close_matches(name: str, candidates: Collection[str], n: int = 5) -> list[str]:
    """Up to ``n`` candidates most similar to ``name`` (case ignored; ties by name)."""
    matcher = difflib.SequenceMatcher(b=name.lower(), autojunk=False)
    scored = []
    for candidate in candidates:
        matcher.set_seq1(candidate.lower())
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
            ratio = matcher.ratio()
            if ratio >= 0.6:
                scored.append((-ratio, candidate))
    return [candidate for _, candidate in sorted(scored)[:n]]


def pick_per_week(
    frame: pd.DataFrame,
    class_picks: pd.DataFrame,
    per_week: int,
    week_min: int,
    week_max: int,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``per_week`` traces per ISO week: the week's ``class`` picks first, then a seeded
    top-up from the week's other correctly classified traces (capped)."""
    rows, short = [], {}
    picked = set(class_picks["trace_name"])
    correct = frame[frame["correct"]]
    for week in range(week_min, week_max + 1):
        rng = _stream(seed, 1, week)
        in_week = correct[correct["week"] == week]
        reuse = _sample(in_week[in_week["trace_name"].isin(picked)], per_week, rng)
        pool = in_week[~in_week["trace_name"].isin(picked)]
        top_up = _sample(pool, per_week - len(reuse), rng)
        if len(reuse) + len(top_up) < per_week:
            short[week] = len(reuse) + len(top_up)
        block = pd.concat(
            [
                _rows(reuse, WEEK_GROUP, f"week {week}: per-class pick re-used"),
                _rows(top_up, WEEK_GROUP, f"week {week}: top-up from the week's correct traces"),
            ]
        )
        rows.append(block.sort_values("trace_name", kind="stable"))
    n_weeks = week_max - week_min + 1
    table = pd.concat(rows, ignore_index=True)
    if short:
        log.warning(
            "select.per_week = %d: %d week(s) have fewer correctly classified test traces: %s",
            per_week, len(short), ", ".join(f"week {w}: {n}" for w, n in short.items()),
        )  # fmt: skip
    summary = {
        "requested": per_week * n_weeks,
        "selected": len(table),
        "capped": per_week * n_weeks - len(table),
        # astype(str): an empty table's reason column has no string dtype to call .str on
        "reused": int(table["reason"].astype(str).str.endswith("re-used").sum()),
        "short_weeks": {str(w): n for w, n in short.items()},
    }
    return table, summary


def select_traces(
    predictions: pd.DataFrame,
    cfg: SelectConfig,
    known_traces: Collection[str] | None = None,
    bin_width: float = 0.5,
) -> Selection:
    """The whole selection (module docstring) from a predictions table.

    Parameters
    ----------
    predictions
        ``reports/evaluate/predictions.csv`` (test traces only): ``trace_name``, ``label``,
        ``predicted``, ``correct``, ``week``, ``logit_pre``, ``logit_post``.
    cfg
        The ``select`` parameters.
    known_traces
        Every trace name of the data set, to word the error for an example that is not a
        test trace; optional.
    bin_width
        ``task.magnitude.bin_width``: the magnitude bins of a regression's predictions.
    """
    frame = _check_predictions(predictions, bin_width)
    by_class, class_summary = pick_per_class(frame, cfg.per_class, cfg.seed)
    wrong, wrong_summary = pick_misclassified(frame, cfg.max_misclassified)
    examples = pick_examples(frame, cfg.examples, known_traces)
    weeks, week_summary = pick_per_week(
        frame, by_class, cfg.per_week, cfg.week_min, cfg.week_max, cfg.seed
    )
    table = pd.concat([by_class, wrong, examples, weeks], ignore_index=True)
    table = table[list(SELECTION_COLUMNS)].astype({"week": "int64", "explain_both": bool})
    summary = {
        "n_rows": len(table),
        "n_traces": int(table["trace_name"].nunique()),
        CLASS_GROUP: class_summary,
        MISCLASSIFIED_GROUP: wrong_summary,
        EXAMPLE_GROUP: {"selected": len(examples)},
        WEEK_GROUP: week_summary,
        "capped": sum(s["capped"] for s in class_summary.values()) + week_summary["capped"],
    }
    log.info(
        "selected %d traces in %d rows: %s",
        summary["n_traces"], summary["n_rows"],
        ", ".join(f"{g} {int((table['group'] == g).sum())}" for g in GROUPS),
    )  # fmt: skip
    return Selection(table=table, summary=summary)
