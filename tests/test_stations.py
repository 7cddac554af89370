"""Many stations through the same DAG (docs/stations.md): the multi-station demo, the split
by event hash, the layout checks, the network set, the leak, the transfer matrix, and the
nine-station profile end to end with the real ``dvc``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from quakeshap import stations
from quakeshap.artifacts import checkpoint, shap_set
from quakeshap.artifacts import stations as station_files
from quakeshap.artifacts.raw import read_attributes, read_traces
from quakeshap.config import ConfigError, DemoConfig, SplitConfig, StationsConfig
from quakeshap.demo import demo_catalog, write_demo_dataset
from quakeshap.demo.catalog import DemoError
from quakeshap.demo.stations import DEMO_STATIONS, station_catalog
from quakeshap.record import attributes_path, hdf5_path
from quakeshap.splits import assign_split, event_hash_test
from tests.fixtures import REPO_ROOT, make_spectrogram_set, write_spectrogram_set

#: a small demo: the smallest event counts the defaults' checks allow
SMALL = DemoConfig(n_pre=40, n_post=40, n_colocated_groups=2)


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _station_files(root, code):
    return stations.station_files(root, code)


# --------------------------------------------------------------------------------------
# the multi-station demo
# --------------------------------------------------------------------------------------


def test_nine_stations_are_known_and_only_nrca_claims_real_coordinates():
    assert sorted(DEMO_STATIONS) == sorted(
        ["FDMO", "MC2", "MMO1", "NRCA", "T1212", "T1213", "T1214", "T1216", "T1244"]
    )
    assert [c for c, s in DEMO_STATIONS.items() if not s.synthetic] == ["NRCA"]


def test_another_station_records_the_same_events_from_its_own_place():
    nrca = demo_catalog(SMALL)
    fdmo = station_catalog(SMALL, "FDMO", nrca)
    same = ["source_id", "source_magnitude", "source_origin_time", "label", "q", "associato_ev"]
    pd.testing.assert_frame_equal(fdmo[same], nrca[same])
    assert (fdmo["trace_name"].str.startswith("FDMO.IV.")).all()
    assert not np.allclose(fdmo["hypocentral_distance_km"], nrca["hypocentral_distance_km"])
    # straight rays in the same half-space: travel time = distance / velocity
    np.testing.assert_allclose(
        fdmo["p_travel_sec"], fdmo["hypocentral_distance_km"] / SMALL.vp_km_s, atol=0.006
    )
    # the S arrival follows the station's own P-S time
    assert (fdmo["s_arrival_sample"] == 500 + np.round(fdmo["p_s_diff_sec"] * 100)).all()
    assert (fdmo["defect"] == "").all()  # the record's defects sit at NRCA only
    # the station's distance from NRCA shows in the epicentral distances
    station = DEMO_STATIONS["FDMO"].station
    north_km = (station.latitude - 42.83355) * 111.19
    assert abs(north_km) > 20  # FDMO is placed ~22 km north of NRCA
    assert fdmo["epicentral_distance_km"].min() > 2.0


def test_a_stations_files_do_not_depend_on_the_others_listed(tmp_path):
    alone = dataclasses.replace(SMALL, stations=("NRCA",))
    three = dataclasses.replace(SMALL, stations=("NRCA", "FDMO", "T1212"))
    two = dataclasses.replace(SMALL, stations=("T1212", "FDMO"))
    write_demo_dataset(alone, tmp_path / "alone")
    write_demo_dataset(three, tmp_path / "three")
    write_demo_dataset(two, tmp_path / "two")
    for a, b in zip(
        _station_files(tmp_path / "alone", "NRCA"),
        _station_files(tmp_path / "three", "NRCA"),
        strict=True,
    ):
        assert _md5(a) == _md5(b), a.name
    for code in ("FDMO", "T1212"):
        for a, b in zip(
            _station_files(tmp_path / "two", code),
            _station_files(tmp_path / "three", code),
            strict=True,
        ):
            assert _md5(a) == _md5(b), a.name
    # another station's waveforms are not NRCA's with a new name: own noise, own arrivals
    meta = read_attributes(attributes_path(tmp_path / "three", "FDMO", "pre")).head(2)
    nrca_meta = read_attributes(attributes_path(tmp_path / "three", "NRCA", "pre")).head(2)
    fdmo = read_traces(tmp_path / "three", meta.assign(label="pre"), list(meta["trace_name"]))
    nrca = read_traces(
        tmp_path / "three", nrca_meta.assign(label="pre"), list(nrca_meta["trace_name"])
    )
    for f, n in zip(fdmo.values(), nrca.values(), strict=True):
        assert f.shape == n.shape and not np.allclose(f, n)


def test_the_default_demo_is_nrca_alone_and_an_unknown_demo_station_is_refused(tmp_path):
    assert DemoConfig().stations == ("NRCA",)
    with pytest.raises(DemoError, match=r"unknown station\(s\) \['XYZ'\].*knows"):
        write_demo_dataset(dataclasses.replace(SMALL, stations=("NRCA", "XYZ")), tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_stations_parameters_are_checked_by_name():
    with pytest.raises(ConfigError, match=r"stations\.network_splits"):
        StationsConfig(codes=("NRCA",), network_splits=("events",))
    with pytest.raises(ConfigError, match=r"needs stations\.codes"):
        StationsConfig(network_splits=("event",))
    with pytest.raises(ConfigError, match="twice"):
        StationsConfig(codes=("NRCA", "NRCA"))


# --------------------------------------------------------------------------------------
# the split by event hash, the leak
# --------------------------------------------------------------------------------------


def test_an_events_side_is_the_same_at_every_station_and_whatever_else_is_listed():
    ids = pd.Series([str(100000000 + 37 * i) for i in range(400)])
    alone = event_hash_test(ids, 0.2, 42)
    # other stations' traces of the same events, shuffled in among others
    mixed = pd.concat([ids, ids.sample(frac=1.0, random_state=0), pd.Series(["9", "8"])])
    both = event_hash_test(mixed.reset_index(drop=True), 0.2, 42)
    lookup = dict(zip(mixed, both, strict=True))
    assert [lookup[i] for i in ids] == alone.tolist()
    assert 0.14 < alone.mean() < 0.26  # about test_fraction, not exactly
    assert event_hash_test(ids, 0.2, 43).tolist() != alone.tolist()  # the seed matters
    catalog = pd.DataFrame({"source_id": ids})
    split = assign_split(catalog, SplitConfig(by="event_hash", test_fraction=0.2, seed=42))
    assert ((split == "test") == alone).all()


def test_the_leak_of_a_split_is_counted_by_hand():
    meta = pd.DataFrame(
        {
            "source_id": ["1", "1", "2", "2", "3", "4"],
            "split": ["train", "test", "test", "test", "train", "test"],
        }
    )
    leak = stations.split_leak(meta)
    assert leak == {
        "n_test": 4,
        "test_images_with_train_event": 1,
        "share": 0.25,
        "events_on_both_sides": 1,
    }


def test_the_per_image_split_puts_events_on_both_sides_and_the_event_split_never():
    ids = pd.Series([str(i // 9) for i in range(900)])  # 100 events at 9 stations
    meta = pd.DataFrame({"source_id": ids, "split": "train"})
    meta["split"] = np.where(event_hash_test(ids, 0.2, 42), "test", "train")
    assert stations.split_leak(meta)["test_images_with_train_event"] == 0
    leaky = stations.resplit_by_trace(meta, SplitConfig(test_fraction=0.2, seed=42))
    assert (leaky["split"] == "test").sum() == 180
    assert stations.split_leak(leaky)["share"] > 0.8  # nearly every test image leaks


# --------------------------------------------------------------------------------------
# bad input: before any work, naming the station and the file
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_stations(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    write_demo_dataset(dataclasses.replace(SMALL, stations=("NRCA", "FDMO")), root)
    return root


def test_an_unknown_station_is_refused_listing_those_present(two_stations):
    with pytest.raises(stations.StationsError, match=r"unknown station\(s\) \['MC2'\].*FDMO"):
        stations.check_layout(two_stations, ["NRCA", "MC2"])


def test_a_station_folder_missing_a_file_is_refused_naming_station_and_file(two_stations, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(two_stations, raw)
    hdf5_path(raw, "FDMO", "post").unlink()
    missing = re.escape(f"station FDMO: file(s) missing: ['{hdf5_path(raw, 'FDMO', 'post')}']")
    with pytest.raises(stations.StationsError, match=missing):
        stations.check_layout(raw, ["NRCA", "FDMO"])


def test_two_stations_sharing_a_trace_name_are_refused_naming_both(two_stations, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(two_stations, raw)
    nrca = attributes_path(raw, "NRCA", "pre")
    fdmo = attributes_path(raw, "FDMO", "pre")
    table = pd.read_csv(fdmo, dtype=str)
    table.loc[3, "trace_name"] = pd.read_csv(nrca, dtype=str).loc[5, "trace_name"]
    table.to_csv(fdmo, index=False)
    both = r"listed at two stations: NRCA .*NRCA_pre_attr.* and FDMO .*FDMO_pre_attr"
    with pytest.raises(stations.StationsError, match=both):
        stations.check_layout(raw, ["NRCA", "FDMO"])


def test_the_station_stage_fails_in_one_line_before_any_work(two_stations, tmp_path, caplog):
    from quakeshap.stages import station_spectrograms
    from tests.fixtures import write_params

    params = write_params(tmp_path, stations={"codes": ["NRCA", "FDMO", "MMO1"]})
    out, rejected = tmp_path / "out", tmp_path / station_files.REJECTED_FILE
    argv = ["NRCA", "--params", str(params), "--raw", str(two_stations), "--out", str(out),
            "--rejected", str(rejected)]  # fmt: skip
    assert station_spectrograms.main(argv) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0] and "['MMO1']" in errors[0]
    assert not out.exists() and not rejected.exists()


# --------------------------------------------------------------------------------------
# the network set and the transfer matrix
# --------------------------------------------------------------------------------------


def _station_set(rng, code, n=40):
    sset = make_spectrogram_set(rng, n_pre=n - n // 2, n_post=n // 2, shape=(3, 33, 96))
    meta = sset.metadata.copy()
    meta["trace_name"] = [f"{code}.XX.{i}_EV" for i in range(n)]
    meta["receiver_name"] = code
    return dataclasses.replace(sset, metadata=meta)


def test_the_network_set_is_every_station_streamed_in_order(rng, tmp_path):
    for n, code in enumerate(("A", "B", "C"), start=30):
        write_spectrogram_set(tmp_path / "sets" / code, _station_set(rng, code, n=n))
    sets = stations.load_station_sets(tmp_path / "sets", ["A", "B", "C"])
    assert all(isinstance(s.images, np.memmap) for s in sets.values())  # memory-mapped
    original_chunk = stations.CHUNK
    try:
        stations.CHUNK = 7  # several chunks per station
        with stations.network_set(sets, scratch=tmp_path / "scratch") as joined:
            assert isinstance(joined.images, np.memmap)
            expected = np.concatenate([np.asarray(s.images) for s in sets.values()])
            np.testing.assert_array_equal(joined.images, expected)
            assert joined.metadata["receiver_name"].tolist() == ["A"] * 30 + ["B"] * 31 + ["C"] * 32
            assert joined.axes["stations"] == ["A", "B", "C"]
    finally:
        stations.CHUNK = original_chunk
    assert list((tmp_path / "scratch").iterdir()) == []  # the temporary copy is gone


def test_a_missing_station_set_names_the_stage_to_run(tmp_path):
    with pytest.raises(stations.StationsError, match=r"station_spectrograms@B"):
        stations.load_station_sets(tmp_path, ["B"])


def test_the_transfer_table_scores_every_model_on_every_station(rng, tmp_path):
    from tests.fixtures import make_checkpoint

    sets = {code: _station_set(rng, code) for code in ("A", "B")}
    ckpt = make_checkpoint(0)
    path = tmp_path / checkpoint.PATH.name
    checkpoint.save(ckpt, path)
    table = stations.transfer_table({"A": path, "network_event": path}, sets, torch.device("cpu"))
    assert table[["model", "station"]].values.tolist() == [
        ["A", "A"], ["A", "B"], ["network_event", "A"], ["network_event", "B"]
    ]  # fmt: skip
    n_test = {c: int((s.metadata["split"] == "test").sum()) for c, s in sets.items()}
    assert table.loc[table["model"] == "A", "n"].tolist() == [n_test["A"], n_test["B"]]
    # scored by hand: the same model on the same images gives the same accuracy
    from quakeshap import evaluation
    from quakeshap.model import model_from_checkpoint

    data = sets["B"]
    rows = np.flatnonzero(data.metadata["split"] == "test")
    model = model_from_checkpoint(ckpt, input_shape=data.image_shape)
    logits = evaluation.predict_logits(model, data.images[rows], torch.device("cpu"))
    accuracy = float((logits.argmax(1) == data.labels()[rows]).mean())
    assert table.loc[1, "accuracy"] == pytest.approx(accuracy)
    summary = stations.transfer_summary(table, ["A", "B"])
    assert summary["matrix"]["A"]["B"] == pytest.approx(accuracy)
    assert summary["station_models"]["own_station_mean"] == table.loc[0, "accuracy"]
    assert summary["network_event"]["n_test"] == n_test["A"] + n_test["B"]


# --------------------------------------------------------------------------------------
# the nine-station profile end to end, with the real dvc
# --------------------------------------------------------------------------------------

#: the nine-station profile at a tiny size: few events, one epoch, one gradient map per class
TINY_STATIONS = {
    "data.demo.n_pre": 30,
    "data.demo.n_post": 30,
    "data.demo.n_colocated_groups": 1,
    "data.demo.n_missing_channels": 1,
    "train.n_folds": 2,
    "train.max_epochs": 1,
    "train.patience": 1,
    "train.num_threads": 1,
    "spectrogram.workers": 1,
    "shap.explainer": "gradient",
    "shap.background": 8,
    "shap.workers": 1,
    "shap.faithfulness.enabled": False,
    "stations.explain_per_class": 1,
    "plots.dpi": 40,
}


@pytest.mark.slow
def test_the_stations_profile_runs_and_a_new_station_reruns_only_its_stages(tmp_path_factory):
    """The nine-station profile's settings on three of its stations (the real NRCA and two
    synthetic ones; nine cost the test budget minutes and show nothing more), then a fourth."""
    from quakeshap.config import load_yaml
    from quakeshap.profiles import compose
    from tests.dvc_helpers import reproduced_stages, snapshot_repo

    state = tmp_path_factory.mktemp("dvc-state")
    repo = snapshot_repo(REPO_ROOT, tmp_path_factory.mktemp("stations") / "repo", state)
    nine = compose(
        load_yaml(REPO_ROOT / "params.yaml"),
        patches=[load_yaml(REPO_ROOT / "profiles" / "stations" / "nine.yaml")],
    )
    codes = nine["stations"]["codes"]
    assert len(codes) == 9
    three = ["FDMO", "NRCA", "T1212"]
    four = [*three, "T1244"]
    assert set(four) <= set(codes)
    repo.set_params(
        {**TINY_STATIONS, "data.demo.stations": three, "stations.codes": three,
         "stations.network_splits": nine["stations"]["network_splits"]}
    )  # fmt: skip
    repo.commit("three stations, tiny")
    dag = repo.dvc("dag", "--md").stdout
    for code in three:
        assert f"station_train@{code}" in dag and f"station_explain@{code}" in dag
    assert "network_train@event" in dag and "transfer@trace" in dag
    first = reproduced_stages(repo.dvc("repro", "transfer", timeout=1800).stdout)
    assert {f"station_spectrograms@{c}" for c in three} <= set(first)
    network = {"network_train@event", "network_train@trace", "transfer@event", "transfer@trace"}
    assert network <= set(first)
    assert "train" not in first  # the main (NRCA) chain is not upstream of the stations'
    repo.commit("three stations reproduced")

    # a fourth station: its stages and the network ones run, the other stations' are cached
    repo.set_params({"data.demo.stations": four, "stations.codes": four})
    second = reproduced_stages(repo.dvc("repro", "transfer", timeout=1800).stdout)
    station_stages = {s for s in second if s.startswith("station_")}
    kinds = ("station_spectrograms", "station_train", "station_evaluate", "station_explain")
    assert station_stages == {f"{kind}@T1244" for kind in kinds}
    assert network <= set(second)

    event, trace = (station_files.network_paths(s) for s in ("event", "trace"))
    transfer = json.loads((repo.root / event.transfer_metrics).read_text())
    assert set(transfer["matrix"]) == {*four, "network_event"}
    assert all(set(row) == set(four) for row in transfer["matrix"].values())
    assert transfer["network_leak"]["test_images_with_train_event"] == 0
    leaky = json.loads((repo.root / trace.transfer_metrics).read_text())
    assert leaky["network_leak"]["share"] > 0.5
    page = (repo.root / event.transfer / station_files.PAGE_FILE).read_text()
    for heading in ("Transfer matrix", "SHAP per station", "Mean SHAP maps per station"):
        assert heading in page
    fractions = pd.read_csv(repo.root / event.transfer / station_files.SHAP_FRACTIONS_FILE)
    assert set(fractions["station"]) == set(four)
    values = shap_set.load(repo.root / station_files.station_paths("T1244").shap).values
    assert values.shape[0] >= 1 and np.isfinite(values).all()


# --------------------------------------------------------------------------------------
# the stations page, in a real browser
# --------------------------------------------------------------------------------------


def _stations_page(rng, tmp_path):
    """The page of a two-station run, from hand-made tables and maps."""
    import matplotlib
    from matplotlib.figure import Figure

    from quakeshap import report
    from quakeshap.plots.stations import plot_station_mean_maps, plot_transfer_matrix
    from quakeshap.stages import transfer

    table = pd.DataFrame(
        {
            "model": ["A", "A", "B", "B", "network_event", "network_event"],
            "station": ["A", "B"] * 3,
            "n": [20, 22, 20, 22, 20, 22],
            "accuracy": [0.9, 0.6, 0.55, 0.95, 0.88, 0.91],
        }
    )
    summary = stations.transfer_summary(table, ["A", "B"])
    summary["network_leak"] = {"n_test": 42, "test_images_with_train_event": 0, "share": 0.0,
                               "events_on_both_sides": 0}  # fmt: skip
    fractions = pd.DataFrame(
        {
            "station": ["A", "B"],
            "class": ["pre", "pre"],
            "0_10hz": [0.2, 0.3],
            "after_s": [0.5, 0.4],
        }
    )
    figs = []
    fig = Figure(figsize=(5, 3))
    plot_transfer_matrix(fig, table, "accuracy")
    figs.append(report.ReportFigure("t.png", "Transfer matrix", "caption", transfer._png(fig, 40)))
    fig = Figure(figsize=(5, 4))
    maps = {c: rng.normal(size=(2, 33, 96, 3)) for c in ("A", "B")}
    vmax = plot_station_mean_maps(
        fig, maps, ("pre", "post"), np.linspace(0, 50, 33), np.linspace(0.32, 12.67, 96),
        matplotlib.colormaps["coolwarm"],
    )  # fmt: skip
    assert vmax == pytest.approx(max(np.abs(m.sum(axis=-1)).max() for m in maps.values()))
    png = transfer._png(fig, 40)
    figs.append(report.ReportFigure("m.png", "Mean SHAP maps per station", "c", png))
    page = tmp_path / station_files.PAGE_FILE
    folder = station_files.network_paths("event").transfer / station_files.FIGURES
    page.write_text(transfer.render("event", summary, table, fractions, figs, folder))
    return page


def test_the_stations_page_holds_the_matrix_the_leak_and_the_fractions(rng, tmp_path):
    text = _stations_page(rng, tmp_path).read_text()
    for heading in ("Transfer matrix", "The network model's split", "SHAP per station"):
        assert heading in text
    assert "0 of 42 test images (0.0%) share their event" in text
    assert '<td class="num">0.6</td>' in text  # A's model on B's test set
    figures = station_files.network_paths("event").transfer / station_files.FIGURES
    assert f"{figures.as_posix()}/m.png" in text


@pytest.mark.browser
def test_the_stations_page_loads_in_headless_chromium(chromium, rng, tmp_path):
    from tests.browser import view_page

    view = view_page(chromium, _stations_page(rng, tmp_path), tmp_path / "profile")
    assert view.title.startswith("quakeshap: stations")
    assert len(view.images) == 2
    assert all(i["complete"] and i["width"] > 0 for i in view.images), view.images
    assert view.fetched == [] and not view.errors
    assert {"model", "A", "B", "station", "class"} <= set(view.headers)
