"""Every explainer on the same traces, scored against the demo's ground truth
(``docs/method.md`` §9).

The study reads its partition maps (``inpaint_telea`` masker) as physics. Whether another
masker or a gradient-based explainer would tell the same story, and on the demo data which
of them finds what the generator put there, is what this module measures.

:func:`configurations` turns ``explainers.configurations`` into the ``shap`` parameters of
each run and checks them before any work; :func:`compare_explainers` explains the same
traces (``class`` rows of a selection, e.g.
:func:`quakeshap.selection.most_confident_per_class`) with each, through
:func:`~quakeshap.explain.explain_selection`, and :func:`score_maps` reduces every run's
maps to the table of :mod:`quakeshap.artifacts.explainer_comparison`: per configuration and
class, the mean fraction of ``|SHAP|`` mass in each 10 Hz band, in each time window (before
P, P to S, after S), and, on demo data, inside the generator's discriminative band
(:func:`truth_band`), each beside what a uniform map would put there. :func:`summarize`
makes the stage's metrics.

A faithful explainer of the demo model puts more than the band's share of its mass in the
band; one that puts no more than a uniform map would has not found what separates the
classes. On real data there is no ground truth: the table then compares the explainers
with each other only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quakeshap.artifacts import explainer_comparison as table_owner
from quakeshap.artifacts.shap_set import class_mean_mask
from quakeshap.artifacts.spectrograms import SpectrogramSet
from quakeshap.config import DataConfig, ExplainersConfig, ShapConfig
from quakeshap.explain.explainers import ExplainError, check_max_evals, parse_masker
from quakeshap.explain.maps import (
    BANDS_HZ,
    WINDOWS,
    ShapMaps,
    band_fractions,
    band_key,
    band_share,
    window_fractions,
)
from quakeshap.explain.metrics import faithfulness_metrics, image_timing
from quakeshap.explain.pool import explain_selection
from quakeshap.record import CLASS_NAMES, P_ARRIVAL_S

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Configuration:
    """One explainer configuration: its name as the parameters spell it, and the ``shap``
    parameters it runs with."""

    name: str
    shap: ShapConfig

    @property
    def is_partition(self) -> bool:
        return self.shap.explainer == "partition"


@dataclass(frozen=True)
class TruthBand:
    """The demo generator's discriminative band (Hz, both edges included)."""

    lo_hz: float
    hi_hz: float

    @property
    def region(self) -> str:
        return band_key(self.lo_hz, self.hi_hz)


def _reason(exc: Exception) -> str:
    """An :class:`ExplainError`'s message without its ``parameter shap.<key>:`` prefix."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("parameter ") else text


def configurations(
    cfg: ExplainersConfig, shap_cfg: ShapConfig, image_shape: tuple[int, ...] = (33, 96, 3)
) -> tuple[Configuration, ...]:
    """The ``shap`` parameters of each of ``explainers.configurations``, checked.

    Every configuration shares ``shap_cfg``'s batch size, background, seed, device,
    workers, tolerance and faithfulness checks (those only with ``explainers.faithfulness``);
    a partition configuration takes its masker from its name and ``explainers.max_evals``.
    A bad masker or budget is an :class:`ExplainError` naming the ``explainers`` parameter,
    raised before any work. ``image_shape`` is the masker's ``(H, W, 3)`` layout.
    """
    out = []
    for name, (explainer, masker) in zip(cfg.configurations, cfg.parsed(), strict=True):
        run = dataclasses.replace(shap_cfg, explainer=explainer, max_evals=cfg.max_evals)
        if not cfg.faithfulness:
            checks = dataclasses.replace(shap_cfg.faithfulness, enabled=False)
            run = dataclasses.replace(run, faithfulness=checks)
        if masker is not None:
            try:
                run = dataclasses.replace(run, masker=str(parse_masker(masker)))
            except ExplainError as exc:
                raise ExplainError(
                    f"parameter explainers.configurations: {name!r}: {_reason(exc)}"
                ) from None
            try:
                check_max_evals(cfg.max_evals, image_shape)
            except ExplainError as exc:
                raise ExplainError(f"parameter explainers.max_evals: {_reason(exc)}") from None
        out.append(Configuration(name, run))
    return tuple(out)


def truth_band(data: DataConfig, threshold: float) -> TruthBand | None:
    """The band an explanation of the demo model should find, or None on real data.

    ``threshold`` is ``explainers.truth_threshold``: the band is where the demo's pre and
    post spectra differ by at least that fraction of their largest difference
    (:func:`quakeshap.demo.discriminative_band_hz`).
    """
    if data.source != "demo":
        return None
    from quakeshap.demo import discriminative_band_hz

    return TruthBand(*discriminative_band_hz(data.demo, fraction=threshold))


# --------------------------------------------------------------------------------------
# maps → table rows
# --------------------------------------------------------------------------------------


def _rows(
    configuration: Configuration,
    class_name: str,
    n_maps: int,
    measure: str,
    regions: Sequence[str],
    values: np.ndarray,
    uniform: np.ndarray,
) -> list[dict[str, Any]]:
    shap_cfg = configuration.shap
    partition = configuration.is_partition
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.asarray(values, dtype=np.float64) / np.asarray(uniform, dtype=np.float64)
    return [
        {
            "configuration": configuration.name,
            "explainer": shap_cfg.explainer,
            "masker": str(parse_masker(shap_cfg.masker)) if partition else None,
            "max_evals": shap_cfg.max_evals if partition else None,
            "class_name": class_name,
            "n_maps": n_maps,
            "measure": measure,
            "region": region,
            "value": float(v),
            "uniform": float(u),
            "ratio": float(r),
        }
        for region, v, u, r in zip(regions, values, uniform, ratio, strict=True)
    ]


def score_maps(
    maps: ShapMaps,
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    configuration: Configuration,
    truth: TruthBand | None = None,
    p_arrival_s: float = P_ARRIVAL_S,
) -> pd.DataFrame:
    """One configuration's rows of the comparison table, from its maps.

    Per class, over the maps :func:`~quakeshap.artifacts.shap_set.class_mean_mask` admits
    (correctly classified traces, their own class's map; every trace weighs the same): the
    mean fraction of ``|SHAP|`` mass in each band of
    :data:`~quakeshap.explain.maps.BANDS_HZ`, in each time window, and inside ``truth``.
    ``uniform`` is what a map of equal values would give: a band's share of the image
    rows, a window's share of the columns (per trace, then averaged). A class without maps
    has no rows. Maps that carry faithfulness numbers (``shap.faithfulness``) add the
    areas under their deletion and insertion curves beside those of random orders, and
    the randomisation cascade's correlations (``docs/method.md`` §10).
    """
    values, index = maps.values, maps.index
    s_times = p_arrival_s + index["p_s_diff_sec"].to_numpy(dtype=np.float64)
    flat = np.ones((1, len(frequency_hz), len(time_s), 1))
    checks = None
    if maps.faithfulness is not None:
        checks = faithfulness_metrics(maps, configuration.shap)
    rows: list[dict[str, Any]] = []
    for c, name in enumerate(CLASS_NAMES):
        mask = class_mean_mask(index, c)
        n = int(mask.sum())
        if n == 0:
            log.warning("%s: no %s map to score", configuration.name, name)
            continue
        mine = values[mask]
        bands = band_fractions(mine, frequency_hz).mean(axis=0)
        rows += _rows(
            configuration,
            name,
            n,
            table_owner.BAND,
            [band_key(lo, hi) for lo, hi in BANDS_HZ],
            bands,
            band_share(frequency_hz),
        )
        windows = window_fractions(mine, time_s, s_times[mask], p_arrival_s).mean(axis=0)
        even = window_fractions(np.repeat(flat, n, 0), time_s, s_times[mask], p_arrival_s)
        rows += _rows(
            configuration, name, n, table_owner.WINDOW, WINDOWS, windows, even.mean(axis=0)
        )
        if truth is not None:
            edges = [(truth.lo_hz, truth.hi_hz)]
            inside = band_fractions(mine, frequency_hz, edges)[:, 0].mean()
            share = band_share(frequency_hz, edges)
            rows += _rows(
                configuration, name, n, table_owner.TRUTH, [truth.region], [inside], share
            )
        if checks is not None:
            rows += _faithfulness_rows(configuration, name, n, checks)
    return pd.DataFrame.from_records(rows, columns=list(table_owner.COMPARISON_COLUMNS))


def _faithfulness_rows(
    configuration: Configuration, name: str, n_maps: int, checks: dict[str, Any]
) -> list[dict[str, Any]]:
    """Class ``name``'s rows of :func:`~quakeshap.explain.faithfulness_metrics` ``checks``."""
    areas = ("deletion_auc", "insertion_auc")
    rows = _rows(
        configuration,
        name,
        n_maps,
        table_owner.FAITHFULNESS,
        areas,
        np.array([checks[a][name] for a in areas]),
        np.array([checks[f"random_{a}"][name] for a in areas]),
    )
    spearman = checks["randomisation"].get("spearman", {}).get(name, {})
    if checks["randomisation"]["n_maps"][name] > 0 and spearman:
        rows += _rows(
            configuration,
            name,
            n_maps,
            table_owner.RANDOMISATION,
            list(spearman),
            np.array(list(spearman.values())),
            np.full(len(spearman), np.nan),
        )
    return rows


def compare_explainers(
    sset: SpectrogramSet,
    chosen: pd.DataFrame,
    ckpt: dict[str, Any],
    runs: Sequence[Configuration],
    truth: TruthBand | None = None,
    workers: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """Explain the traces of ``chosen`` with every configuration and score the maps.

    Parameters
    ----------
    sset, ckpt
        The spectrogram set and the model's checkpoint.
    chosen
        ``class`` rows of a selection (:mod:`quakeshap.artifacts.selection`), each trace
        explained for its predicted class.
    runs
        :func:`configurations`.
    truth
        :func:`truth_band` (None on real data).
    workers
        Worker processes of the partition configurations (None = ``shap.workers``); the
        gradient-based ones run in this process.
    progress
        Called with the configuration's name, the traces done and their total.

    Returns
    -------
    The comparison table (:data:`~quakeshap.artifacts.explainer_comparison.COMPARISON_COLUMNS`),
    configurations in the order of ``runs``. Additivity is checked as in ``explain``.
    """
    _, p_arrival_s = image_timing(sset.axes)
    frames = []
    for run in runs:
        report = None if progress is None else (lambda d, t, n=run.name: progress(n, d, t))
        # spawning workers (~10 s each: torch and shap imported anew) costs more than the
        # gradient-based explainers save by them
        n_workers = workers if run.is_partition else 1
        maps = explain_selection(sset, chosen, ckpt, run.shap, n_workers, report)
        log.info("%s: %d map(s) in %.1f s", run.name, len(maps.index), maps.seconds)
        frames.append(score_maps(maps, sset.frequency_hz, sset.time_s, run, truth, p_arrival_s))
    return pd.concat(frames, ignore_index=True)


def summarize(table: pd.DataFrame, truth: TruthBand | None) -> dict[str, Any]:
    """The ``explainers`` stage's metrics (``reports/metrics/explainers.json``).

    ``n_maps`` per class; on demo data the ground-truth band (``truth_band_hz``), its share
    of the image rows (``truth_share``), and per configuration and class the fraction of
    ``|SHAP|`` mass inside it (``truth_fraction``) and that fraction over the share
    (``truth_ratio``: above 1, the explainer finds the band). All ``null`` on real data.
    With ``shap.faithfulness``, ``deletion_gap`` and ``insertion_gap`` per configuration
    and class (positive: the map's order beats random orders).
    """
    first = table.drop_duplicates("class_name").set_index("class_name")
    metrics: dict[str, Any] = {
        "configurations": list(dict.fromkeys(table["configuration"])),
        "n_maps": {c: int(first.loc[c, "n_maps"]) for c in CLASS_NAMES if c in first.index},
        "truth_band_hz": None,
        "truth_share": None,
        "truth_fraction": None,
        "truth_ratio": None,
    }
    checks = table[table["measure"] == table_owner.FAITHFULNESS]
    for key, area, sign in (
        ("deletion_gap", "deletion_auc", -1),
        ("insertion_gap", "insertion_auc", 1),
    ):
        part = checks[checks["region"] == area]
        if not part.empty:
            metrics[key] = {
                name: {r.class_name: sign * float(r.value - r.uniform) for r in rows.itertuples()}
                for name, rows in part.groupby("configuration", sort=False)
            }
    rows = table[table["measure"] == table_owner.TRUTH]
    if truth is None or rows.empty:
        return metrics
    metrics["truth_band_hz"] = {"lo": truth.lo_hz, "hi": truth.hi_hz}
    metrics["truth_share"] = float(rows["uniform"].iloc[0])
    for key, column in (("truth_fraction", "value"), ("truth_ratio", "ratio")):
        metrics[key] = {
            name: {r.class_name: float(getattr(r, column)) for r in part.itertuples()}
            for name, part in rows.groupby("configuration", sort=False)
        }
    return metrics
