"""The study's released SHAP tensors → a quakeshap SHAP set, and the two compared."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quakeshap import files, report
from quakeshap.artifacts import metrics, shap_set
from quakeshap.artifacts import predictions as predictions_table
from quakeshap.artifacts.shap_set import INDEX_COLUMNS, ShapSet
from quakeshap.interop import study_shap
from quakeshap.interop.study_release import StudyReleaseError
from quakeshap.record import CLASS_NAMES
from quakeshap.stages import plots as plots_stage
from tests.fixtures import PARAMS_FILE

H, W, W_S = 33, 96, 59


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def study_map(rng: np.random.Generator, ranked: bool = False, rows: slice = slice(None)):
    """A float64 map as the study saved it: ``(1, 33, 96, 3)`` or, both classes by
    predicted rank, ``(1, 33, 96, 3, 2)``; zero outside ``rows``."""
    shape = (1, H, W, 3, 2) if ranked else (1, H, W, 3)
    values = np.zeros(shape)
    values[:, rows] = rng.normal(0, 1e-3, values[:, rows].shape)
    return values


def write_release(path: Path, entries: dict[str, np.ndarray], top: str = "shap_tensors/") -> Path:
    """``shap_tensors.zip`` in the release's layout: ``<top><folder>/<trace>.npy`` and the
    four mean maps; ``entries`` maps ``folder/trace`` to its array."""
    rng = np.random.default_rng(9)
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in entries.items():
            zf.writestr(f"{top}{name}.npy", npy(array))
        for name, shape in (
            ("avg_p_pre", (H, W, 3)),
            ("avg_p_post", (H, W, 3)),
            ("avg_s_pre", (H, W_S, 3)),
            ("avg_s_post", (H, W_S, 3)),
        ):
            zf.writestr(f"{top}{name}.npy", npy(rng.normal(0, 1e-4, shape)))
    return path


#: the rows of the 30-40 Hz band: frequency_hz = 1.5625 * k
BAND_30_40 = slice(20, 26)


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    entries = {
        # foreshock maps only in 30-40 Hz, aftershock maps everywhere
        **{f"foreshocks/NRCA.IV.1{i}_EV": study_map(rng, rows=BAND_30_40) for i in range(3)},
        **{f"aftershocks/NRCA.IV.2{i}_EV": study_map(rng) for i in range(3)},
        "temporal/NRCA.IV.30_EV": study_map(rng),
        "colocated/NRCA.IV.40_EV": study_map(rng),
        "misclassified/NRCA.IV.50_EV": study_map(rng, ranked=True),
        "examples/NRCA.IV.60_EV": study_map(rng, ranked=True),
        "examples/NRCA.IV.61_EV": study_map(rng, ranked=True),
    }
    # temporal reuses a foreshock's map, as the study's weekly selection does
    entries["temporal/NRCA.IV.10_EV"] = entries["foreshocks/NRCA.IV.10_EV"]
    return write_release(tmp_path / "shap_tensors.zip", entries), entries


def row(sset: ShapSet, trace: str, class_name: str) -> pd.Series:
    hit = sset.index[(sset.index["trace_name"] == trace) & (sset.index["class_name"] == class_name)]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def test_import_without_tables_keeps_unknown_classes_by_rank(release):
    path, entries = release
    sset = study_shap.import_release(path)
    assert sset.values.dtype == np.float32 and sset.values.shape[1:] == (H, W, 3)
    assert list(sset.index.columns) == list(INDEX_COLUMNS)
    # every map, in the study's frequency x time x channel layout (leading axis dropped)
    for i, r in sset.index.iterrows():
        source = entries[next(k for k in entries if k.endswith("/" + r["trace_name"]))][0]
        if source.ndim == 4:  # by predicted rank; class known or rank kept
            rank = int(r["class_name"][-1]) if r["class_index"] < 0 else None
            if rank is None:
                rank = 0 if r["class_name"] == r["predicted"] else 1
            source = source[..., rank]
        np.testing.assert_array_equal(sset.values[i], source.astype(np.float32))
        assert r["shap_sum"] == pytest.approx(source.sum())
    # foreshocks/aftershocks: the folder's class, correct by construction
    eleven = row(sset, "NRCA.IV.11_EV", "pre")
    assert (eleven["class_index"], eleven["label"], eleven["predicted"]) == (0, "pre", "pre")
    assert row(sset, "NRCA.IV.22_EV", "post")["class_index"] == 1
    # the foreshock reused in temporal is one map in two groups
    assert row(sset, "NRCA.IV.10_EV", "pre")["groups"] == "class;week"
    # unknown: kept by rank, in no class
    for trace, ranks in (("NRCA.IV.30_EV", ["rank0"]), ("NRCA.IV.50_EV", ["rank0", "rank1"])):
        found = sset.index[sset.index["trace_name"] == trace]
        assert found["class_name"].tolist() == ranks
        assert (found["class_index"] == -1).all()
    assert sset.index["groups"].isin(["class", "class;week", "week", "colocated",
                                      "misclassified", "example"]).all()  # fmt: skip
    assert sset.index["base_value"].isna().all() and sset.index["additivity_error"].isna().all()
    assert sset.mean_p_aligned.shape == (2, H, W, 3) and sset.mean_s_aligned.shape == (2, H, W_S, 3)
    assert len(sset.weekly) == 0  # no week known without a metadata table


def test_import_with_tables_recovers_every_class_and_round_trips(tmp_path, release):
    path, entries = release
    metadata = pd.DataFrame(
        {
            "trace_name": ["NRCA.IV.50_EV", "NRCA.IV.30_EV", "NRCA.IV.10_EV"],
            "label": ["pre", "post", "pre"],
            "week": [41, 47, 40],
            "p_s_diff_sec": [1.5, 2.0, 1.2],
        }
    )
    predictions = pd.DataFrame(
        {
            "trace_name": ["NRCA.IV.60_EV", "NRCA.IV.61_EV", "NRCA.IV.30_EV", "NRCA.IV.40_EV"],
            "label": ["post", "pre", "post", "post"],
            "logit_pre": [-2.0, 3.0, -1.0, -4.0],
            "logit_post": [2.0, -3.0, 1.0, 4.0],
            "probability": [0.98, 0.99, 0.88, 0.99],
            "predicted": ["post", "pre", "post", "post"],
            "correct": [True, True, True, True],
            "week": [45, 40, 47, 46],
        }
    )
    predictions_table.write(tmp_path / "evaluate", predictions, None, pd.DataFrame())
    metadata.to_csv(tmp_path / "study_metadata.csv", index=False)
    out = tmp_path / "study_shap"
    predictions_csv = tmp_path / "evaluate" / predictions_table.PREDICTIONS_FILE
    argv = [str(path), str(out), "--metadata", str(tmp_path / "study_metadata.csv"),
            "--predictions", str(predictions_csv)]  # fmt: skip
    assert study_shap.main(argv) == 0
    sset = shap_set.load(out, image_hw=(H, W))
    # misclassified, label pre: predicted post, so rank 0 is post and rank 1 pre
    mis = entries["misclassified/NRCA.IV.50_EV"][0]
    np.testing.assert_array_equal(sset.values[row(sset, "NRCA.IV.50_EV", "post").name],
                                  mis[..., 0].astype(np.float32))  # fmt: skip
    np.testing.assert_array_equal(sset.values[row(sset, "NRCA.IV.50_EV", "pre").name],
                                  mis[..., 1].astype(np.float32))  # fmt: skip
    fifty = row(sset, "NRCA.IV.50_EV", "pre")
    assert (fifty["label"], fifty["predicted"], fifty["week"]) == ("pre", "post", 41)
    # examples: the predictions' class is rank 0
    ex = entries["examples/NRCA.IV.61_EV"][0]
    np.testing.assert_array_equal(sset.values[row(sset, "NRCA.IV.61_EV", "pre").name],
                                  ex[..., 0].astype(np.float32))  # fmt: skip
    assert row(sset, "NRCA.IV.60_EV", "post")["predicted"] == "post"
    assert (sset.index["class_index"] >= 0).all()
    # temporal maps of known week and class make the weekly means
    assert sset.weekly.to_dict("list") == {"week": [40, 47], "n_maps": [1, 1]}
    np.testing.assert_allclose(
        sset.weekly_mean[1], entries["temporal/NRCA.IV.30_EV"][0].astype(np.float32)
    )
    assert row(sset, "NRCA.IV.30_EV", "post")["p_s_diff_sec"] == 2.0
    # the study's own mean maps, as released
    with zipfile.ZipFile(path) as zf:
        avg_s_post = np.load(io.BytesIO(zf.read("shap_tensors/avg_s_post.npy")))
    np.testing.assert_array_equal(sset.mean_s_aligned[1], avg_s_post.astype(np.float32))


def test_compare_measures_both_sets_the_same_way(tmp_path, release):
    path, _ = release
    study = study_shap.import_release(path)
    # ours: the same traces, a foreshock map doubled (r = 1), an aftershock map negated
    # (r = -1), and a trace the study did not explain
    index = study.index[study.index["class_index"] >= 0].reset_index(drop=True)
    values = study.values[study.index["class_index"] >= 0].copy()
    twice = int(np.flatnonzero(index["trace_name"] == "NRCA.IV.11_EV")[0])
    negated = int(np.flatnonzero(index["trace_name"] == "NRCA.IV.21_EV")[0])
    values[twice] *= 2
    values[negated] *= -1
    extra = index.iloc[[0]].assign(trace_name="NRCA.IV.99_EV")
    ours = ShapSet(
        np.concatenate([values, values[:1]]),
        pd.concat([index, extra], ignore_index=True),
        study.mean_p_aligned * 3,
        -study.mean_s_aligned,
        study.weekly_mean,
        study.weekly,
    )
    result = study_shap.compare(study, ours)
    # the study's foreshock maps are all in 30-40 Hz and say so
    assert result["band_fraction"]["pre (study)"]["30_40hz"] == pytest.approx(1.0)
    assert result["band_fraction"]["pre (study)"]["0_10hz"] == 0.0
    assert result["band_fraction"]["pre"]["30_40hz"] == pytest.approx(1.0)
    assert result["band_fraction"]["post"] == pytest.approx(result["band_fraction"]["post (study)"])
    assert sum(result["time_fraction"]["post (study)"].values()) == pytest.approx(1.0)
    # S-P unknown: no window fraction, not a made-up one
    assert all(np.isnan(v) for v in result["window_fraction"]["pre (study)"].values())
    # ours holds one pre map more: the trace the study did not explain
    assert result["n_class_maps"] == {"pre": 4, "post": 3, "pre (study)": 3, "post (study)": 3}
    assert result["mean_map_correlation"] == {
        "p_aligned": {"pre": pytest.approx(1.0), "post": pytest.approx(1.0)},
        "s_aligned": {"pre": pytest.approx(-1.0), "post": pytest.approx(-1.0)},
    }
    per_trace = {(t["trace_name"], t["class_name"]): t["pearson"] for t in result["traces"]}
    assert len(per_trace) == result["trace_correlation"]["n_traces"] == 6  # the class maps
    assert per_trace[("NRCA.IV.11_EV", "pre")] == pytest.approx(1.0)
    assert per_trace[("NRCA.IV.21_EV", "post")] == pytest.approx(-1.0)
    assert ("NRCA.IV.99_EV", "pre") not in per_trace
    assert result["trace_correlation"]["min"] == pytest.approx(-1.0)
    # through the files and the command
    shap_set.write(tmp_path / "study", study)
    shap_set.write(tmp_path / "ours", ours)
    out = tmp_path / "compare.json"
    assert (
        study_shap.main(["compare", str(tmp_path / "study"), str(tmp_path / "ours"), str(out)]) == 0
    )
    assert '"pre (study)"' in out.read_text()


def test_report_section_only_when_given(release):
    """The report gains the section with a comparison, and is unchanged without one."""
    path, _ = release
    study = study_shap.import_release(path)
    comparison = study_shap.compare(study, study)
    kwargs = dict(
        params={"spectrogram": {"source": "waveforms"}},
        metadata=pd.DataFrame({"label": ["pre", "post"], "split": ["train", "test"],
                               "week": [40, 45]}),
        rejected=pd.DataFrame(columns=list(metrics.REJECTED_COLUMNS)),
        train_metrics={}, evaluate_metrics={"accuracy": 0.9},
        explain_metrics={"band_fraction": {"pre": {"0_10hz": 0.1}}}, figures=[],
    )  # fmt: skip
    plain = report.render_report(**kwargs)
    assert report.render_report(**kwargs, study_maps=None) == plain
    assert "study-maps" not in plain
    page = report.render_report(**kwargs, study_maps=comparison)
    assert page.startswith(plain[: plain.index('<section id="shap">')])
    assert 'id="study-maps"' in page and "mean_map_correlation" in page
    assert "NRCA.IV.11_EV" not in page  # the per-trace list stays in the JSON
    assert page.replace(report.study_maps_html(comparison), "") == plain


@pytest.mark.parametrize(
    ("entry", "array", "message"),
    [
        ("foreshocks/NRCA.IV.1_EV", np.zeros((1, 33, 96)), r"shape \(1, 33, 96\), expected"),
        ("examples/NRCA.IV.1_EV", np.zeros((1, 33, 96, 3)), r"expected \(1, 33, 96, 3, 2\)"),
        ("temporal/NRCA.IV.1_EV", np.full((1, 33, 96, 3), np.nan), "holds NaN"),
        ("colocated/NRCA.IV.1_EV", np.zeros((1, 33, 96, 3), dtype=np.int64), "dtype int64"),
        ("aftershocks/NRCA.IV.1_EV", np.array([{"a": 1}], dtype=object), "not a readable .npy"),
    ],
    ids=["shape", "ranked-shape", "nan", "dtype", "pickle"],
)
def test_bad_tensor_is_refused_naming_the_file(tmp_path, entry, array, message):
    rng = np.random.default_rng(2)
    entries = {"foreshocks/NRCA.IV.0_EV": study_map(rng), entry: array}
    path = tmp_path / "shap_tensors.zip"
    with zipfile.ZipFile(path, "w") as zf:  # np.save of an object array pickles it
        for name, value in entries.items():
            buffer = io.BytesIO()
            np.save(buffer, value, allow_pickle=True)
            zf.writestr(f"shap_tensors/{name}.npy", buffer.getvalue())
    with pytest.raises(StudyReleaseError, match=message) as err:
        study_shap.import_release(path)
    assert f"{path}:shap_tensors/{entry}.npy" in str(err.value)
    out = tmp_path / "out"
    assert study_shap.main([str(path), str(out)]) == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_missing_mean_map_and_foreign_archive(tmp_path, release):
    path, _ = release
    partial = tmp_path / "partial.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(partial, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("avg_s_pre.npy"):
                dst.writestr(info, src.read(info))
    with pytest.raises(StudyReleaseError, match=r"partial\.zip: no avg_s_pre\.npy"):
        study_shap.import_release(partial)
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(StudyReleaseError, match=r"foreign\.zip: no per-trace maps"):
        study_shap.import_release(foreign)
    with pytest.raises(StudyReleaseError, match="not a readable zip"):
        study_shap.import_release(_not_zip(tmp_path))


def _not_zip(tmp_path: Path) -> Path:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK not really")
    return path


def test_unpacked_folder_reads_as_the_zip(tmp_path, release):
    path, _ = release
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder)
    from_zip, from_folder = study_shap.import_release(path), study_shap.import_release(folder)
    np.testing.assert_array_equal(from_zip.values, from_folder.values)
    pd.testing.assert_frame_equal(from_zip.index, from_folder.index)
    assert set(CLASS_NAMES) <= set(from_folder.index["class_name"])


def test_plots_stage_adds_the_comparison_only_when_asked(tmp_path, release, plots_project):
    """``--study-maps`` puts the comparison into the report; the rest of the page is the
    stage's page without it, byte for byte."""
    root, _ = plots_project
    project = tmp_path / "project"
    shutil.copytree(root, project)
    comparison = study_shap.compare(
        study_shap.import_release(release[0]), shap_set.load(project / shap_set.PATH)
    )
    files.write_json(tmp_path / "compare.json", comparison)
    argv = ["--root", str(project), "--params", str(project / PARAMS_FILE),
            "--study-maps", str(tmp_path / "compare.json")]  # fmt: skip
    assert plots_stage.main(argv) == 0
    page = (project / report.REPORT_FILE).read_text()
    assert 'id="study-maps"' in page
    plain = (root / report.REPORT_FILE).read_text()
    as_read = json.loads((tmp_path / "compare.json").read_text())  # NaN became null
    assert page.replace(report.study_maps_html(as_read), "") == plain
    # a comparison that cannot be read is one line, and the outputs stay as they were
    (tmp_path / "bad.json").write_text("{not json")
    argv[-1] = str(tmp_path / "bad.json")
    assert plots_stage.main(argv) == 1
    assert (project / report.REPORT_FILE).read_text() == page
