"""``reports/controls.html``: the study's controls side by side, from ``dvc exp show --json``.

Each control is a named DVC experiment, ``control-<name>`` (``make controls``;
``docs/dvc.md``). This module reads what DVC recorded for them — the parameters and the
metrics files of every experiment derived from the current commit — and writes one
self-contained page (inline CSS, figures as ``data:`` URIs, no script) with:

* a table: per control, its state (done, queued, failed, running), the parameters it
  changes against the commit it was run from, test accuracy, balanced accuracy, F1, ROC AUC
  and chance (the majority class's share of its test set);
* the SHAP measures of every run (fraction of ``|SHAP|`` per 10 Hz band and per time
  window, per class) beside the study's published ones (:mod:`quakeshap.published`);
* every scalar under ``faithfulness`` in ``explain.json``, whatever the explainer wrote;
* a figure of accuracy per control with the ``study`` control's line and chance, and a
  figure of band fractions per control with the study's published fractions.

Nothing here reruns anything: a control that has not finished shows its state and no
numbers. Command line::

    python -m quakeshap.control_report [--exp-json FILE] [--out reports/controls.html]

without ``--exp-json`` it runs ``dvc exp show --json`` in the current directory.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from quakeshap import files, published, report
from quakeshap.artifacts import metrics
from quakeshap.controls import EXPERIMENT_PREFIX
from quakeshap.explain.maps import BANDS_HZ
from quakeshap.record import CLASS_NAMES

log = logging.getLogger(__name__)

#: the control every other is read against (the study as it is)
REFERENCE = "study"
PAGE = Path("reports/controls.html")
FIGURES = Path("reports/controls")
TEST_METRICS = ("accuracy", "balanced_accuracy", "f1", "roc_auc")
BAND_KEYS = tuple(f"{lo:g}_{hi:g}hz" for lo, hi in BANDS_HZ)


class ControlReportError(ValueError):
    """``dvc exp show --json`` output that is not what this module reads."""


@dataclass(frozen=True)
class ControlRun:
    """One control as DVC recorded it."""

    name: str
    state: str  # done | queued | running | failed
    params: Mapping[str, Any] = field(default_factory=dict)
    #: stage name → that stage's metrics file (``quakeshap.artifacts.metrics.PATHS``)
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def _files_data(data: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {path: (entry or {}).get("data") or {} for path, entry in data.get(kind, {}).items()}


def _run_from(
    entry: Mapping[str, Any], name: str, executor: Mapping[str, Any] | None
) -> ControlRun:
    data = entry.get("data") or {}
    by_path = _files_data(data, "metrics")
    stage_metrics = {
        stage: by_path[str(path)] for stage, path in metrics.PATHS.items() if str(path) in by_path
    }
    params = _files_data(data, "params").get("params.yaml", {})
    if executor and executor.get("state"):
        state = str(executor["state"])
        state = "done" if state == "success" else state
    elif entry.get("error"):
        state = "failed"
    else:
        state = "done" if stage_metrics else "queued"
    # a run not done yet may hold some stages' metrics and not others: show none of them
    shown = stage_metrics if state == "done" else {}
    return ControlRun(name.removeprefix(EXPERIMENT_PREFIX), state, params, shown)


def read_experiments(
    exp_show: Sequence[Mapping[str, Any]],
) -> tuple[list[ControlRun], Mapping[str, Any]]:
    """The controls in ``dvc exp show --json`` output, in name order, and the parameters
    of the commit they were run from (the first commit listed, ``HEAD``).
    """
    if not isinstance(exp_show, list):
        raise ControlReportError("dvc exp show --json: expected a list of commits")
    runs: dict[str, ControlRun] = {}
    baseline: Mapping[str, Any] = {}
    for commit in exp_show:
        if commit.get("rev") == "workspace":
            continue
        if not baseline:
            baseline = _files_data(commit.get("data") or {}, "params").get("params.yaml", {})
        for experiment in commit.get("experiments") or []:
            name = experiment.get("name") or ""
            revs = experiment.get("revs") or []
            if (
                name.startswith(EXPERIMENT_PREFIX)
                and revs
                and name.removeprefix(EXPERIMENT_PREFIX) not in runs
            ):
                run = _run_from(revs[0], name, experiment.get("executor"))
                runs[run.name] = run
    return [runs[k] for k in sorted(runs)], baseline


def changed_params(run: ControlRun, baseline: Mapping[str, Any]) -> str:
    """``key=value`` for every parameter the run sets differently from ``baseline``."""
    mine, base = _flat(run.params), _flat(baseline)
    diff = [f"{k}={report.format_value(v)}" for k, v in mine.items() if base.get(k) != v]
    return ", ".join(diff) if diff else "—"


def _chance(evaluate: Mapping[str, Any]) -> float | None:
    counts = [evaluate.get(f"n_{c}") for c in CLASS_NAMES]
    n_test = evaluate.get("n_test")
    if not n_test or any(not isinstance(c, int) for c in counts):
        return None
    return max(counts) / n_test


def summary_table(runs: Sequence[ControlRun], baseline: Mapping[str, Any]) -> pd.DataFrame:
    """One row per control: state, changed parameters, test metrics and chance."""
    rows = []
    for run in runs:
        evaluate = run.metrics.get("evaluate", {})
        rows.append(
            {
                "control": run.name,
                "state": run.state,
                "changes": changed_params(run, baseline),
                **{k: evaluate.get(k) for k in TEST_METRICS},
                "chance": _chance(evaluate),
                "n_test": evaluate.get("n_test"),
            }
        )
    frame = pd.DataFrame(
        rows, columns=["control", "state", "changes", *TEST_METRICS, "chance", "n_test"]
    )
    frame["n_test"] = frame["n_test"].astype("Int64")
    return frame


def shap_table(runs: Sequence[ControlRun], key: str) -> pd.DataFrame:
    """``explain.json``'s per-class matrix ``key`` (``band_fraction``, ``window_fraction``,
    ``time_fraction``) as one row per control and class, with the study's published
    fractions as the last rows where :mod:`quakeshap.published` has them."""
    rows = []
    for run in runs:
        matrix = run.metrics.get("explain", {}).get(key) or {}
        for c in CLASS_NAMES:
            if isinstance(matrix.get(c), Mapping):
                rows.append({"control": run.name, "class": c, **matrix[c]})
    reference = published.BY_METRIC.get(key)
    if reference is not None:
        for c in CLASS_NAMES:
            rows.append({"control": "study (published)", "class": c, **reference[c]})
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["control", "class"])


def faithfulness_table(runs: Sequence[ControlRun]) -> pd.DataFrame:
    """Every scalar under ``faithfulness`` in each run's ``explain.json``, one row per run."""
    rows = []
    for run in runs:
        found = run.metrics.get("explain", {}).get("faithfulness")
        if isinstance(found, Mapping):
            rows.append({"control": run.name, **_flat(found)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------


def plot_accuracy(fig: Figure, table: pd.DataFrame) -> None:
    """Test accuracy per control (bars), the ``study`` control's accuracy (dashed), the
    study's published accuracy on the real record (dotted) and each control's chance level
    (ticks)."""
    ax = fig.add_subplot()
    done = table[table["accuracy"].notna()]
    y = np.arange(len(done))
    ax.barh(y, done["accuracy"].astype(float), color="#4c72b0", label="test accuracy")
    chance = done["chance"].astype(float)
    ax.plot(chance, y, "k|", markersize=14, label="chance (majority share)")
    reference = done.loc[done["control"] == REFERENCE, "accuracy"]
    if len(reference):
        ax.axvline(float(reference.iloc[0]), color="#c44e52", ls="--", label="the study as it is")
    ax.axvline(published.ACCURACY, color="black", ls=":", label="the study's (real record)")
    ax.set_yticks(y, done["control"])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")


def plot_band_fractions(fig: Figure, table: pd.DataFrame) -> None:
    """Fraction of ``|SHAP|`` per 10 Hz band, one line per control, one panel per class;
    the study's published fractions in black."""
    axes = fig.subplots(1, len(CLASS_NAMES), sharey=True)
    x = np.arange(len(BAND_KEYS))
    for ax, c in zip(np.atleast_1d(axes), CLASS_NAMES, strict=True):
        mine = table[table["class"] == c] if len(table) else table
        for _, row in mine.iterrows():
            ours = row["control"] != "study (published)"
            values = [float(row.get(k, np.nan)) for k in BAND_KEYS]
            style = {"lw": 1, "alpha": 0.8, "marker": "o", "ms": 3} if ours else {
                "color": "black", "lw": 2.5, "marker": "s", "label": "study (published)"
            }  # fmt: skip
            ax.plot(x, values, label=row["control"] if ours else style.pop("label"), **style)
        share = [published.BAND_SHARE[k] for k in BAND_KEYS]
        ax.plot(x, share, color="grey", ls=":", lw=1.5, label="band's share of the image")
        ax.set_xticks(x, [k.removesuffix("hz").replace("_", "–") for k in BAND_KEYS])
        ax.set_xlabel("band (Hz)")
        ax.set_title(c)
    np.atleast_1d(axes)[0].set_ylabel("fraction of |SHAP|")
    np.atleast_1d(axes)[-1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1, 1))


# --------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------

TOC = (
    ("summary", "Controls"),
    ("shap", "SHAP fractions"),
    ("faithfulness", "Faithfulness"),
    ("figures", "Figures"),
)


def _frame_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return '<p class="note">No run has these metrics.</p>'
    rows = [[None if _missing(v) else v for v in row] for row in frame.itertuples(index=False)]
    return report.html_table([str(c) for c in frame.columns], rows)


def _missing(value: Any) -> bool:
    return value is pd.NA or (isinstance(value, float) and np.isnan(value))


def render(
    runs: Sequence[ControlRun], baseline: Mapping[str, Any], figures: Sequence[report.ReportFigure]
) -> str:
    """The page's HTML (escaped; no script, no network request)."""
    summary = summary_table(runs, baseline)
    shap_parts = "".join(
        f"<h3>{html.escape(key)}</h3>" + _frame_html(shap_table(runs, key))
        for key in ("band_fraction", "time_fraction", "window_fraction")
    )
    sections = [
        report.section(
            "summary",
            "Controls",
            '<p class="note">One DVC experiment per control (<code>make controls</code>), '
            "read from <code>dvc exp show --json</code>; <em>changes</em> lists the "
            "parameters a control sets differently from the commit it ran from. Chance is "
            "the majority class's share of that run's test set.</p>" + _frame_html(summary),
        ),
        report.section(
            "shap",
            "SHAP fractions",
            '<p class="note">Mean fraction of |SHAP| per band and window over each class\'s '
            "maps. The rows <em>study (published)</em> are the same measures of the study's "
            "released maps of the real record (300 traces per class).</p>" + shap_parts,
        ),
        report.section("faithfulness", "Faithfulness", _frame_html(faithfulness_table(runs))),
        report.section(
            "figures",
            "Figures",
            "".join(report.figure_html(fig, FIGURES) for fig in figures),
        ),
    ]
    return report.page("quakeshap: the study's controls", sections, TOC)


def write_page(
    runs: Sequence[ControlRun], baseline: Mapping[str, Any], root: Path, dpi: int = 110
) -> Path:
    """Draw the figures into ``root/reports/controls/`` and write ``root/reports/controls.html``."""
    summary = summary_table(runs, baseline)
    drawn: list[report.ReportFigure] = []
    specs = (
        ("accuracy.png", "Accuracy per control", plot_accuracy, summary, (8, 0.4 * len(runs) + 1.5),
         "test accuracy of each control; the dashed line is the study as it is, the ticks each "
         "run's chance level: a control whose bar reaches its tick has lost the signal."),
        ("band_fractions.png", "Band fractions per control", plot_band_fractions,
         shap_table(runs, "band_fraction"), (11, 4),
         "fraction of |SHAP| in each 10 Hz band per class; black: the study's released maps "
         "of the real record; dotted: a uniform map."),
    )  # fmt: skip
    with files.atomic_dir(root / FIGURES) as tmp:
        for filename, title, draw, table, size, caption in specs:
            fig = Figure(figsize=size, layout="constrained")
            draw(fig, table)
            files.save_figure(fig, tmp / filename, dpi)
            drawn.append(
                report.ReportFigure(filename, title, caption, (tmp / filename).read_bytes())
            )
    out = root / PAGE
    files.write_text(out, render(runs, baseline, drawn))
    return out


def _markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    def cell(value: Any) -> str:
        if value is None or _missing(value):
            return "–"
        if isinstance(value, np.integer):
            return str(int(value))
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def render_markdown(
    runs: Sequence[ControlRun], baseline: Mapping[str, Any], command: str = ""
) -> str:
    """The comparison as Markdown tables (for a committed record such as docs/controls-demo.md)."""
    faith = faithfulness_table(runs)
    keep = [c for c in faith.columns if c == "control" or c.split(".")[0] in FAITH_SUMMARY]
    parts = [
        "# The controls on the demo data",
        "",
        "Generated by `python -m quakeshap.control_report --markdown` from `dvc exp show "
        "--json`; do not edit by hand."
        + (f" The experiments were made with:\n\n```bash\n{command}\n```" if command else ""),
        "",
        "## Test metrics",
        "",
        _markdown_table(summary_table(runs, baseline)),
        "",
        "## Fraction of |SHAP| per 10 Hz band",
        "",
        _markdown_table(shap_table(runs, "band_fraction")),
        "",
        "## Fraction of |SHAP| per time window",
        "",
        _markdown_table(shap_table(runs, "time_fraction")),
        "",
        _markdown_table(shap_table(runs, "window_fraction")),
        "",
        "## Faithfulness",
        "",
        _markdown_table(faith[keep]) if len(faith) else "No run has faithfulness metrics.",
        "",
    ]
    return "\n".join(parts)


#: the faithfulness numbers the Markdown record keeps (the page shows every one)
FAITH_SUMMARY = ("deletion_gap", "insertion_gap", "deletion_auc", "insertion_auc")


def exp_show_json(cwd: Path) -> list[Any]:
    """``dvc exp show --json`` run in ``cwd``, parsed."""
    done = subprocess.run(
        ["dvc", "exp", "show", "--json"], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ControlReportError(f"dvc exp show --json failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--exp-json", type=Path, help="dvc exp show --json output (default: run it)"
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="project root")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    parser.add_argument("--command", default="", help="the command that made the experiments")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    matplotlib.use("Agg")
    try:
        data = json.loads(args.exp_json.read_text()) if args.exp_json else exp_show_json(args.root)
        runs, baseline = read_experiments(data)
        if not runs:
            raise ControlReportError(
                f"no experiment named {EXPERIMENT_PREFIX}<name>: run `make controls` first"
            )
        out = write_page(runs, baseline, args.root)
        if args.markdown:
            files.write_text(args.markdown, render_markdown(runs, baseline, args.command))
    except (ControlReportError, OSError, json.JSONDecodeError) as exc:
        log.error("%s", exc)
        return 1
    log.info("wrote %s: %d control(s)", out, len(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
