"""The HTML report: complete, escaped, self-contained, and loading cleanly in a real browser."""

from __future__ import annotations

import base64
import io as stdio
import os
import re
import shutil
from html.parser import HTMLParser

import pandas as pd
import pytest
from matplotlib.figure import Figure

from quakeshap import record, report


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
    assert cells == [
        ["band_fraction", "pre", "post", "band_share"],
        ["0_10hz", "0.05", "0.07", "0.2"],
        ["30_40hz", "0.61", "0.52", "0.3"],
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


# --------------------------------------------------------------------------------------
# the real browser
# --------------------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Paths of Chromium and its driver; skip (fail in CI) when they are not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = (
        "headless Chromium not found (install the Debian packages chromium and "
        "chromium-driver); the report's browser test did not run"
    )
    if os.environ.get("QUAKESHAP_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + ", and QUAKESHAP_REQUIRE_BROWSER=1 makes it mandatory")
    pytest.skip(reason)


@pytest.mark.browser
def test_report_loads_in_headless_chromium(chromium, plots_project, tmp_path):
    # `chromium` comes first: without a browser the test skips before building the project
    chromium_path, driver_path = chromium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    root, _ = plots_project
    page = (root / report.REPORT_FILE).resolve()
    n_figures = len(list((root / report.FIGURES_DIR).iterdir()))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        browser.get(page.as_uri())
        assert browser.title.startswith("quakeshap")
        images = browser.execute_script(
            "return Array.from(document.images).map("
            "i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}));"
        )
        assert len(images) == n_figures
        broken = [i["alt"] for i in images if not (i["complete"] and i["width"] > 0)]
        assert not broken, f"images that did not load: {broken}"
        fetched = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith('data:'));"
        )
        assert fetched == [], f"the page fetched {fetched}"
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
    finally:
        browser.quit()
