"""``reports/index.html``: the one page a researcher opens first.

A single self-contained HTML file: CSS inline, every figure embedded as a base64 ``data:``
URI, no script and no network request, so it opens from the file system, from a DVC
remote or as a CI artefact alike. Every piece of text that comes from data or parameters
is escaped with :func:`html.escape`.

The page holds, in order: key numbers, the run's parameters (the whole ``params.yaml``),
the data summary (traces per class, split and ISO week) with the rejected traces, training
metrics, test metrics, the SHAP metrics (additivity and the band / time-window tables), the
explainers compared on the same traces, and every figure with a one-line caption saying
what to look for.

Metrics files are rendered generically, so a new key shows up without a change here:
scalars (and lists of scalars) go into a key–value table with dotted names; a mapping of
mappings of scalars (such as ``band_fraction: {pre: {0_10hz: …}, post: {…}}``) becomes a
matrix with one column per outer key.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from quakeshap import published
from quakeshap.artifacts import explainer_comparison, metrics
from quakeshap.record import CLASS_NAMES

#: the ``plots`` stage's outputs: the figures, and the page that embeds them
FIGURES_DIR = Path("reports/figures")
REPORT_FILE = Path("reports/index.html")
#: rejected traces listed one by one up to this many; beyond it, only counts per reason
MAX_REJECTED_ROWS = 200

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d2330; background: #fafbfc; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #d6dae1; padding-bottom: 0.2rem;
     margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin-bottom: 0.3rem; }
nav a { margin-right: 0.9rem; }
table { border-collapse: collapse; margin: 0.4rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #d6dae1; padding: 0.2rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.key-numbers td { font-size: 1rem; }
.note { color: #5a6272; font-size: 0.9rem; }
figure { margin: 1.2rem 0 2rem; background: #fff; border: 1px solid #e3e6eb;
         padding: 0.8rem; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { margin-top: 0.5rem; font-size: 0.92rem; }
code { font-size: 0.88rem; }
summary { cursor: pointer; color: #5a6272; }
.params { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
.params table { font-size: 0.82rem; }
"""


@dataclass(frozen=True)
class ReportFigure:
    """A figure as the report embeds it."""

    filename: str
    title: str
    caption: str
    png: bytes


def format_value(value: Any) -> str:
    """A parameter or metric value as short text (floats to 6 significant digits)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _is_matrix(value: Any) -> bool:
    """A non-empty mapping of non-empty mappings of scalars (e.g. per class, per band)."""
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(
            isinstance(v, Mapping) and len(v) > 0 and all(_is_scalar(x) for x in v.values())
            for v in value.values()
        )
    )


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as ``(dotted.key, value)`` pairs, in the mapping's order."""
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(flatten(value, f"{name}."))
        else:
            out.append((name, value))
    return out


def html_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], css_class: str | None = None
) -> str:
    """An escaped HTML table; numbers are right-aligned."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            numeric = isinstance(cell, int | float) and not isinstance(cell, bool)
            text = html.escape(format_value(cell))
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = f' class="{html.escape(css_class)}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def metrics_html(
    stage_metrics: Mapping[str, Any],
    source: str,
    reference: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> str:
    """A metrics file as a key–value table plus one matrix table per matrix-like key.

    ``reference`` adds columns to the matrix of the same key: ``{matrix key: {column
    label: {row key: value}}}`` (the study's published fractions beside a run's).
    """
    if not stage_metrics:
        return f'<p class="note">{html.escape(source)} holds no metrics.</p>'
    matrices = {k: v for k, v in stage_metrics.items() if _is_matrix(v)}
    scalars: dict[str, Any] = {}
    extra_columns: dict[str, dict[str, Mapping[str, Any]]] = {k: {} for k in matrices}
    for key, value in stage_metrics.items():
        if key in matrices:
            continue
        # a flat mapping over a matrix's row keys (band_share beside band_fraction) joins it
        host = next(
            (
                m
                for m, matrix in matrices.items()
                if isinstance(value, Mapping)
                and value
                and all(_is_scalar(v) for v in value.values())
                and set(value) == {r for inner in matrix.values() for r in inner}
            ),
            None,
        )
        if host is not None:
            extra_columns[host][key] = value
        else:
            scalars[key] = value
    parts: list[str] = []
    for key, value in matrices.items():
        columns = list(value)
        if set(columns) <= set(CLASS_NAMES):  # classes in their fixed order: pre, post
            columns = [c for c in CLASS_NAMES if c in value]
        row_keys = list(dict.fromkeys(k for inner in value.values() for k in inner))
        extra = {**extra_columns[key], **(reference or {}).get(key, {})}
        rows = [
            [r, *(value[c].get(r) for c in columns), *(col.get(r) for col in extra.values())]
            for r in row_keys
        ]
        header = [key, *columns, *extra]
        parts.append(f"<h3>{html.escape(str(key))}</h3>" + html_table(header, rows))
    table = html_table(["metric", "value"], flatten(scalars)) if scalars else ""
    note = f'<p class="note">From <code>{html.escape(source)}</code>.</p>'
    return note + table + "".join(parts)


def params_html(params: Mapping[str, Any]) -> str:
    """``params.yaml`` as one table per top-level section, laid out side by side."""
    tables = []
    loose = {k: v for k, v in params.items() if not isinstance(v, Mapping)}
    sections = [(k, v) for k, v in params.items() if isinstance(v, Mapping)]
    if loose:
        sections.insert(0, ("", loose))
    for name, section in sections:
        title = f"<h3>{html.escape(str(name))}</h3>" if name else ""
        body = html_table(["parameter", "value"], flatten(section, f"{name}." if name else ""))
        tables.append(f'<div class="params-section">{title}{body}</div>')
    return f'<div class="params">{"".join(tables)}</div>'


def data_summary(metadata: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Traces per class × split (with totals) and per ISO week × class.

    Returns two tables: ``split`` rows (train, test, all) × class columns (+ ``all``), and
    one row per week with a column per class.
    """
    labels = pd.Categorical(metadata["label"], categories=list(CLASS_NAMES))
    by_split = pd.crosstab(
        metadata["split"], labels, margins=True, margins_name="all", dropna=False
    )
    order = [s for s in ("train", "test") if s in by_split.index]
    order += [s for s in by_split.index if s not in (*order, "all")] + ["all"]
    by_split = by_split.loc[order]
    by_week = pd.crosstab(metadata["week"], labels, dropna=False).sort_index()
    return by_split, by_week


def _frame_table(frame: pd.DataFrame, index_name: str) -> str:
    rows = [
        [idx, *(int(v) for v in row)]
        for idx, row in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    return html_table([index_name, *map(str, frame.columns)], rows)


def _figure_id(filename: str) -> str:
    return "fig-" + "".join(ch if ch.isalnum() else "-" for ch in filename.removesuffix(".png"))


def _key_numbers(
    metadata: pd.DataFrame,
    rejected: pd.DataFrame,
    evaluate_metrics: Mapping[str, Any],
    explain_metrics: Mapping[str, Any],
) -> list[tuple[str, Any]]:
    counts = metadata["label"].value_counts()
    rows: list[tuple[str, Any]] = [
        ("traces used", len(metadata)),
        *((f"{name} traces", int(counts.get(name, 0))) for name in CLASS_NAMES),
        ("traces rejected", len(rejected)),
    ]
    keys = ("accuracy", "balanced_accuracy", "chance_balanced", "precision", "recall", "f1",
            "n_misclassified", "mae", "rmse", "r2", "residual_std")  # fmt: skip
    for key in keys:
        if _is_scalar(evaluate_metrics.get(key)) and key in evaluate_metrics:
            rows.append((f"test {key}", evaluate_metrics[key]))
    for name, scores in (evaluate_metrics.get("baselines") or {}).items():
        if isinstance(scores, Mapping) and "mae" in scores and _is_scalar(scores["mae"]):
            rows.append((f"baseline {name.replace('_', ' ')} MAE", scores["mae"]))
    for key in ("n_maps", "additivity_error_max"):
        if _is_scalar(explain_metrics.get(key)) and key in explain_metrics:
            rows.append((f"SHAP {key}", explain_metrics[key]))
    return rows


#: the page's sections: anchor and the name shown in its table of contents
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Key numbers"),
    ("parameters", "Parameters"),
    ("data", "Data"),
    ("training", "Training"),
    ("test", "Test metrics"),
    ("shap", "SHAP"),
    ("explainers", "Explainers"),
    ("figures", "Figures"),
)


def render_report(
    *,
    params: Mapping[str, Any],
    metadata: pd.DataFrame,
    rejected: pd.DataFrame,
    train_metrics: Mapping[str, Any],
    evaluate_metrics: Mapping[str, Any],
    explain_metrics: Mapping[str, Any],
    figures: Sequence[ReportFigure],
    comparison: pd.DataFrame | None = None,
    explainers_metrics: Mapping[str, Any] | None = None,
    title: str = "quakeshap: what the CNN learned from foreshocks and aftershocks",
    study_columns: bool = True,
    study_maps: Mapping[str, Any] | None = None,
    stations_pages: Sequence[tuple[str, str]] = (),
) -> str:
    """The whole page as a string (deterministic: same inputs, same bytes).

    Parameters
    ----------
    params
        ``params.yaml`` as read (the run's parameters, shown in full).
    metadata
        The spectrogram set's metadata (:mod:`quakeshap.artifacts.spectrograms`).
    rejected
        The traces the ``spectrograms`` stage left out
        (:data:`~quakeshap.artifacts.metrics.REJECTED_COLUMNS`).
    train_metrics, evaluate_metrics, explain_metrics
        Those stages' metrics files (:mod:`quakeshap.artifacts.metrics`).
    figures
        In display order; each is embedded as a PNG ``data:`` URI.
    comparison, explainers_metrics
        The ``explainers`` stage's table (:mod:`quakeshap.artifacts.explainer_comparison`)
        and metrics; None = not computed.
    title
        The page's heading.
    study_columns
        Set the study's released pre/post numbers beside the SHAP metrics (for the study's
        task; off for the time-to-failure classes and magnitude bins, which it never had).
    study_maps
        The study's released SHAP maps beside this run's
        (:func:`quakeshap.interop.study_shap.compare`), shown at the end of the SHAP
        section; None (the default) = no such part, the page as before.
    stations_pages
        ``(network split, link relative to this page)`` of each stations page
        (``docs/stations.md``) when the run lists stations: a last section links them;
        empty (the default) = no such section, the page as before.
    """
    shap_note = (
        '<p class="note">Fractions of |SHAP| mass per frequency band and per time window '
        "(before P, P to S, after S), per class, and the additivity check "
        "|Σ SHAP − (f(x) − E[f(x)])| in logits."
    )
    if study_columns:
        shap_note += (
            " Columns marked <em>(study)</em> hold "
            "the same measures of the study's released maps of the real record (300 traces "
            "per class; <code>quakeshap.published</code>), to compare with at a glance: on "
            "demo data they show how far the demo is from the real sequence."
        )
    sections = [
        section(
            "summary",
            "Key numbers",
            html_table(
                ["", "value"],
                _key_numbers(metadata, rejected, evaluate_metrics, explain_metrics),
                css_class="key-numbers",
            ),
        ),
        section(
            "parameters",
            "Parameters",
            "<details open><summary>The whole <code>params.yaml</code> of this run, one table "
            "per section</summary>" + params_html(params) + "</details>",
        ),
        section("data", "Data", _data_html(metadata, rejected)),
        section("training", "Training", _stage_metrics_html(train_metrics, "train")),
        section("test", "Test metrics", _stage_metrics_html(evaluate_metrics, "evaluate")),
        section(
            "shap",
            "SHAP explanations",
            shap_note
            + "</p>"
            + _stage_metrics_html(explain_metrics, "explain", study_columns)
            + ("" if study_maps is None else study_maps_html(study_maps)),
        ),
        section(
            "explainers", "Explainers compared", explainers_html(comparison, explainers_metrics)
        ),
        section("figures", "Figures", "".join(figure_html(fig) for fig in figures)),
    ]
    if not stations_pages:
        return page(title, sections)
    links = "".join(
        f'<li><a href="{html.escape(href)}">network model split by {html.escape(split)}</a></li>'
        for split, href in stations_pages
    )
    sections.append(
        section(
            "stations",
            "Stations",
            "<p>Every station's model, the network-wide model and the transfer matrix of "
            "every model on every station's test set, with the stations' SHAP maps, are on "
            f"pages of their own, one per network split:</p><ul>{links}</ul>",
        )
    )
    return page(title, sections, (*SECTIONS, ("stations", "Stations")))


def section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{heading}</h2>{body}</section>'


def study_maps_html(comparison: Mapping[str, Any]) -> str:
    """The study's released SHAP maps beside this run's: the same measures per class,
    the correlation of the mean maps, and of the maps of the traces both explained
    (``docs/study-release.md``); the per-trace list is left out."""
    shown = {k: v for k, v in comparison.items() if k != "traces"}
    return (
        "<h3 id=\"study-maps\">The study's released maps beside this run's</h3>"
        '<p class="note">Columns marked <em>(study)</em> are measured on the study\'s own '
        "SHAP maps, imported from its release; <code>mean_map_correlation</code> is the "
        "Pearson correlation of the two sets' mean maps, <code>trace_correlation</code> "
        "that of the maps of each trace both explained for the same class.</p>"
        + metrics_html(shown, "the study's shap_tensors.zip (quakeshap.interop.study_shap)")
    )


def _stage_metrics_html(values: Mapping[str, Any], stage: str, study: bool = True) -> str:
    reference = published_columns() if stage == "explain" and study else None
    return metrics_html(values, str(metrics.PATHS[stage]), reference)


def published_columns() -> dict[str, dict[str, Mapping[str, float]]]:
    """The study's published numbers (:mod:`quakeshap.published`) as extra columns of the
    ``explain`` metrics' matrices of the same name, labelled ``<class> (study)``."""
    columns: dict[str, dict[str, Mapping[str, float]]] = {}
    for key, per_class in published.BY_METRIC.items():
        columns[key] = {f"{c} (study)": per_class[c] for c in CLASS_NAMES if c in per_class}
    columns["band_fraction"]["band_share (study)"] = published.BAND_SHARE
    return columns


def explainers_html(
    comparison: pd.DataFrame | None, stage_metrics: Mapping[str, Any] | None = None
) -> str:
    """The explainers compared on the same traces: per class, one row per configuration
    (and first what a uniform map gives), one column per region of each measure; the
    ground-truth band first, with its ratio to the uniform map (``docs/method.md`` §9)."""
    path = html.escape(str(explainer_comparison.PATH))
    if comparison is None or comparison.empty:
        return '<p class="note">Not computed: run <code>dvc repro explainers</code>.</p>'
    truth = explainer_comparison.TRUTH
    rank = {m: k for k, m in enumerate(dict.fromkeys((truth, *explainer_comparison.MEASURES)))}
    columns = sorted(
        dict.fromkeys(zip(comparison["measure"], comparison["region"], strict=True)),
        key=lambda pair: rank.get(pair[0], len(rank)),
    )
    header = ["class", "configuration", "maps"]
    for measure, region in columns:
        if measure == truth:
            header += [f"{region} (truth)", "× uniform"]
        else:
            header.append(
                f"ρ {region}" if measure == explainer_comparison.RANDOMISATION else region
            )
    keyed = comparison.set_index(list(explainer_comparison.KEY_COLUMNS))
    rows: list[list[Any]] = []
    for name in CLASS_NAMES:
        mine = comparison[comparison["class_name"] == name]
        if mine.empty:
            continue
        first = mine["configuration"].iloc[0]
        uniform = _cells(keyed, (first, name), columns, "uniform")
        rows.append([name, "uniform map (random order)", "", *uniform])
        for config, part in mine.groupby("configuration", sort=False):
            n_maps = int(part["n_maps"].iloc[0])
            rows.append([name, config, n_maps, *_cells(keyed, (config, name), columns, "value")])
    note = (
        '<p class="note">The same test traces (the most confidently correct of each class) '
        "explained by every configuration: the mean fraction of |SHAP| mass per frequency "
        "band and time window, and, on demo data, inside the band where the generator makes "
        "pre and post differ (truth; × uniform &gt; 1 means the explainer finds it). With "
        "<code>shap.faithfulness</code>: the areas under the deletion curve (lower is "
        "better) and the insertion curve (higher is better), against random orders in the "
        "first row, and ρ, the correlation with the maps of the model randomised down to a "
        f"layer (near 0 is better). From <code>{path}</code>.</p>"
    )
    band = (stage_metrics or {}).get("truth_band_hz")
    if isinstance(band, Mapping):
        note += (
            f'<p class="note">Ground truth: {format_value(band.get("lo"))}–'
            f"{format_value(band.get('hi'))} Hz, "
            f"{format_value(stage_metrics.get('truth_share'))} of the image rows.</p>"
        )
    return note + html_table(header, rows)


def _cells(
    keyed: pd.DataFrame, row: tuple[str, str], columns: Sequence[tuple[str, str]], column: str
) -> list[Any]:
    """One row of the explainers' table: ``column`` (``value`` or ``uniform``) of each
    (measure, region) of the (configuration, class) ``row``, and after the ground truth's
    its ratio (values only)."""
    cells: list[Any] = []
    for measure, region in columns:
        key = (*row, measure, region)
        found = key in keyed.index
        cells.append(round(float(keyed.loc[key, column]), 3) if found else "")
        if measure == explainer_comparison.TRUTH:
            ratio = found and column == "value"
            cells.append(round(float(keyed.loc[key, "ratio"]), 2) if ratio else "")
    return cells


def _data_html(metadata: pd.DataFrame, rejected: pd.DataFrame) -> str:
    """Traces per split, class and week, and the rejected traces (at most
    :data:`MAX_REJECTED_ROWS` of them listed)."""
    by_split, by_week = data_summary(metadata)
    counts = (
        "<h3>Traces per split and class</h3>"
        + _frame_table(by_split, "split")
        + "<h3>Traces per ISO week</h3>"
        + _frame_table(by_week.T, "class / week")
        + f"<h3>Rejected traces ({len(rejected)})</h3>"
    )
    if not len(rejected):
        return counts + '<p class="note">None.</p>'
    reasons = rejected["reason"].astype(str).value_counts().sort_index()
    listed = rejected[list(metrics.REJECTED_COLUMNS)].head(MAX_REJECTED_ROWS)
    more = len(rejected) - len(listed)
    rest = (
        f'<p class="note">… and {more} more in '
        f"<code>{html.escape(str(metrics.REJECTED_PATH))}</code>.</p>"
        if more > 0
        else ""
    )
    return (
        counts
        + html_table(["reason", "traces"], [[r, int(n)] for r, n in reasons.items()])
        + html_table(list(metrics.REJECTED_COLUMNS), listed.itertuples(index=False))
        + rest
    )


def figure_html(fig: ReportFigure, directory: Path = FIGURES_DIR) -> str:
    """A figure embedded as a ``data:`` URI, captioned with the file it was saved as."""
    esc = html.escape
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure id="{_figure_id(fig.filename)}">'
        f'<img src="data:image/png;base64,{data}" alt="{esc(fig.title)}">'
        f"<figcaption><strong>{esc(fig.title)}</strong> "
        f"(<code>{esc(f'{directory}/{fig.filename}')}</code>): {esc(fig.caption)}"
        "</figcaption></figure>"
    )


def page(title: str, sections: Sequence[str], toc: Sequence[tuple[str, str]] = SECTIONS) -> str:
    """A self-contained page: inline CSS, a table of contents (anchor, label), sections."""
    esc = html.escape
    links = "".join(f'<a href="#{anchor}">{esc(label)}</a>' for anchor, label in toc)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main><h1>{esc(title)}</h1><nav>{links}</nav>"
        + "".join(sections)
        + "</main></body></html>\n"
    )
