"""The HTML report: complete, escaped, self-contained, and loading cleanly in a real browser."""

from __future__ import annotations

import base64
import io as stdio
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from matplotlib.figure import Figure

from quakeshap import published, record, report
from tests.browser import view_page


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the page's visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def _png(color: str) -> bytes:
    fig = Figure(figsize=(1, 1), dpi=20)
    fig.add_subplot().plot([0, 1], [0, 1], color=color)
    buffer = stdio.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


@pytest.fixture
def inputs() -> dict:
    metadata = pd.DataFrame(
        {
            "trace_name": [f"t{i}" for i in range(7)],
            "label": ["pre", "pre", "pre", "post", "post", "post", "post"],
            "split": ["train", "test", "train", "train", "test", "test", "train"],
            "week": [35, 35, 40, 45, 45, 50, 50],
        }
    )
    rejected = pd.DataFrame(
        {
            "trace_name": ["NRCA.IV.1_EV", "<script>alert('x')</script>"],
            "file": [record.hdf5_path("", "NRCA", c).name for c in record.CLASS_NAMES],
            "reason": ["fewer than 3 channels", "NaN & <inf> values"],
        }
    )
    return {
        "params": {
            "train": {"lr": 0.001, "n_folds": 7, "num_threads": None},
            "select": {"examples": ["a", "b"]},
            "plots": {"cmap": "<img src=x onerror=alert(1)>"},
        },
        "metadata": metadata,
        "rejected": rejected,
        "train_metrics": {"best_fold": 3, "best_val_accuracy": 0.99717, "folds": [0.98, 0.99]},
        "evaluate_metrics": {"accuracy": 0.996567, "f1": 0.9953, "n_test": 1165},
        "explain_metrics": {
            "n_maps": 12,
            "additivity_error_max": 2.1e-7,
            "band_fraction": {  # written post first: shown pre first
                "post": {"0_10hz": 0.07, "30_40hz": 0.52},
                "pre": {"0_10hz": 0.05, "30_40hz": 0.61},
            },
            "band_share": {"0_10hz": 0.2, "30_40hz": 0.3},  # joins the band table
        },
        "figures": [
            report.ReportFigure(
                "a.png", "First figure", "Look at the <red> line & smile.", _png("red")
            ),
            report.ReportFigure("b.png", "Second figure", "Blue.", _png("blue")),
        ],
    }


def test_report_embeds_every_figure_with_its_caption(inputs):
    page = report.render_report(**inputs)
    images = [attrs for tag, attrs in _parse(page).tags if tag == "img"]
    assert len(images) == len(inputs["figures"])
    for attrs, fig in zip(images, inputs["figures"], strict=True):
        src = attrs["src"]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == fig.png
        assert attrs["alt"] == fig.title
    text = "".join(_parse(page).text)
    assert "Look at the <red> line & smile." in text  # escaped in the source, intact as text
    assert f"{report.FIGURES_DIR}/a.png" in text


def test_report_shows_parameters_data_and_metrics(inputs):
    page = report.render_report(**inputs)
    text = " ".join(_parse(page).text)
    for expected in (
        "train.lr",
        "0.001",
        "train.num_threads",
        "null",
        "select.examples",
        "[a, b]",
        "best_val_accuracy",
        "0.99717",
        "accuracy",
        "0.996567",
        "1165",
        "additivity_error_max",
        "2.1e-07",
        "NRCA.IV.1_EV",
        "fewer than 3 channels",
    ):
        assert expected in text, expected
    # the band table is a matrix: one column per class, one row per band
    rows = re.findall(
        r"<tr>(.*?)</tr>", page.split("<h3>band_fraction</h3>")[1].split("</table>")[0]
    )
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in rows]
    # ... with the study's published fractions (of the real record) beside the run's
    pre, post = published.BAND_FRACTION["pre"], published.BAND_FRACTION["post"]
    study = ["pre (study)", "post (study)", "band_share (study)"]
    assert cells == [
        ["band_fraction", "pre", "post", "band_share", *study],
        ["0_10hz", "0.05", "0.07", "0.2", str(pre["0_10hz"]), str(post["0_10hz"]), "0.21"],
        ["30_40hz", "0.61", "0.52", "0.3", str(pre["30_40hz"]), str(post["30_40hz"]), "0.18"],
    ]
    assert "band_share." not in text  # not repeated as loose scalars


def test_data_summary_counts_per_class_split_and_week(inputs):
    by_split, by_week = report.data_summary(inputs["metadata"])
    assert by_split.loc["train"].tolist() == [2, 2, 4]
    assert by_split.loc["test"].tolist() == [1, 2, 3]
    assert by_split.loc["all"].tolist() == [3, 4, 7]
    assert list(by_split.columns) == ["pre", "post", "all"]
    assert by_week.to_dict("index") == {
        35: {"pre": 2, "post": 0},
        40: {"pre": 1, "post": 0},
        45: {"pre": 0, "post": 2},
        50: {"pre": 0, "post": 2},
    }


def test_report_escapes_all_text(inputs):
    page = report.render_report(**inputs)
    tags = _parse(page).tags
    assert not [t for t, _ in tags if t == "script"]
    assert len([t for t, _ in tags if t == "img"]) == len(inputs["figures"])  # no injected <img>
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "NaN &amp; &lt;inf&gt; values" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_report_is_self_contained_and_deterministic(inputs):
    page = report.render_report(**inputs)
    for tag, attrs in _parse(page).tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), (
                    f"<{tag} {name}={value[:40]}> leaves the page"
                )
    assert not re.search(r"https?://", page)
    assert page == report.render_report(**inputs)


def test_report_without_rejected_traces_says_so(inputs):
    inputs["rejected"] = inputs["rejected"].iloc[:0]
    page = report.render_report(**inputs)
    assert "Rejected traces (0)" in page and "None." in page


def test_long_rejected_list_is_capped(inputs):
    n = report.MAX_REJECTED_ROWS + 5
    inputs["rejected"] = pd.DataFrame(
        {"trace_name": [f"r{i}" for i in range(n)], "file": "f", "reason": "not in HDF5"}
    )
    page = report.render_report(**inputs)
    assert "… and 5 more" in page
    assert f"<td>r{report.MAX_REJECTED_ROWS - 1}</td>" in page
    assert f"<td>r{report.MAX_REJECTED_ROWS}</td>" not in page


def test_stage_report_holds_every_figure_and_key_metrics(plots_project):
    root, facts = plots_project
    page = (root / report.REPORT_FILE).read_text()
    figures = sorted(p.name for p in (root / report.FIGURES_DIR).iterdir())
    parsed = _parse(page)
    embedded = [a["src"] for t, a in parsed.tags if t == "img"]
    assert len(embedded) == len(figures)
    on_disk = {(root / report.FIGURES_DIR / name).read_bytes() for name in figures}
    assert {base64.b64decode(src.split(",", 1)[1]) for src in embedded} == on_disk
    for name in figures:
        assert f"{report.FIGURES_DIR}/{name}" in page
    text = " ".join(parsed.text)
    assert report.format_value(facts["accuracy"]) in text
    assert "band_fraction" in text and "plots.cmap" in text


def _section_rows(page: str, anchor: str) -> list[list[str]]:
    """The cells of every row of the first table in section ``anchor``."""
    body = page.split(f'<section id="{anchor}">')[1].split("</section>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("</table>")[0])
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in rows]


def test_stage_report_compares_the_explainers(plots_project):
    from quakeshap.artifacts import explainer_comparison

    root, facts = plots_project
    page = (root / report.REPORT_FILE).read_text()
    assert '<a href="#explainers">' in page
    table = explainer_comparison.load(root / explainer_comparison.PATH)
    header, *rows = _section_rows(page, "explainers")
    truth = table[table["measure"] == explainer_comparison.TRUTH]
    assert header[:5] == ["class", "configuration", "maps", f"{truth['region'].iloc[0]} (truth)",
                          "× uniform"]  # fmt: skip
    # per class: what a uniform map gives, then every configuration in the table's order
    first = "uniform map (random order)"
    expected = [(c, n) for c in record.CLASS_NAMES for n in [first, *facts["configurations"]]]
    assert [(r[0], r[1]) for r in rows] == expected
    for row in rows:
        mine = truth[(truth["class_name"] == row[0])]
        if row[1] == first:
            assert float(row[3]) == pytest.approx(mine["uniform"].iloc[0], abs=5e-4)
            continue
        value = mine[mine["configuration"] == row[1]]
        assert float(row[3]) == pytest.approx(value["value"].iloc[0], abs=5e-4)
        assert float(row[4]) == pytest.approx(value["ratio"].iloc[0], abs=5e-3)
    assert "Ground truth:" in page


def test_report_without_a_comparison_says_so(inputs):
    page = report.render_report(**inputs)
    assert '<section id="explainers">' in page and "dvc repro explainers" in page


# --------------------------------------------------------------------------------------
# the real browser
# --------------------------------------------------------------------------------------


@pytest.mark.browser
def test_report_loads_in_headless_chromium(chromium, plots_project, tmp_path):
    # `chromium` comes first: without a browser the test skips before building the project
    root, _ = plots_project
    n_figures = len(list((root / report.FIGURES_DIR).iterdir()))
    view = view_page(chromium, root / report.REPORT_FILE, tmp_path / "profile")
    assert view.title.startswith("quakeshap")
    assert len(view.images) == n_figures
    broken = [i["alt"] for i in view.images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert view.fetched == [], f"the page fetched {view.fetched}"
    assert not view.errors, view.errors
    # the explainers compared: the figure and the table with the ground-truth columns
    assert "Every explainer on the same traces" in [i["alt"] for i in view.images]
    assert "× uniform" in view.headers
    assert [h for h in view.headers if h.endswith("(truth)")], view.headers


def test_key_numbers_of_a_magnitude_model_show_its_errors_and_baselines(inputs):
    inputs["evaluate_metrics"] = {
        "mae": 0.066,
        "r2": 0.953,
        "n_test": 159,
        "baselines": {
            "train_mean": {"mae": 0.295},
            "gradient_boosting": {"mae": 0.056},
            "gradient_boosting_importance": {"log_peak_vector": 0.3},
        },
    }
    page = report.render_report(**inputs)
    summary = page[page.index('id="summary"') : page.index('id="parameters"')]
    for label, value in (("test mae", "0.066"), ("test r2", "0.953"),
                         ("baseline train mean MAE", "0.295"),
                         ("baseline gradient boosting MAE", "0.056")):  # fmt: skip
        assert f'<td>{label}</td><td class="num">{value}</td>' in summary, label


def test_the_studys_columns_are_left_out_for_another_task(inputs):
    with_study = report.render_report(**inputs)
    assert "(study)" in with_study
    without = report.render_report(**inputs, study_columns=False)
    assert "(study)" not in without and "quakeshap.published" not in without


def test_a_run_with_stations_links_their_pages_and_a_run_without_has_no_such_section(inputs):
    from quakeshap.stages.plots import stations_pages

    assert 'id="stations"' not in report.render_report(**inputs)
    pages = stations_pages(["event", "trace"])
    page = report.render_report(**inputs, stations_pages=pages)
    stations = page[page.index('id="stations"') :]
    for split, href in pages:
        assert f'<a href="{href}">network model split by {split}</a>' in stations
    assert '<a href="#stations">Stations</a>' in page  # in the table of contents
