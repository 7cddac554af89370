"""The download from Zenodo (quakeshap.zenodo, quakeshap.archives, quakeshap.manifest) and the
download stage, over real HTTP against a local Zenodo stand-in."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
import yaml

from quakeshap import archives, manifest, record, zenodo
from quakeshap.artifacts import raw
from quakeshap.artifacts.raw import MANIFEST_FILE
from quakeshap.config import ConfigError, ZenodoConfig
from quakeshap.files import atomic_dir
from quakeshap.stages import download as download_stage
from tests.zenodo_server import TINY_DEMO, ZenodoServer, demo_record_archive, zip_entries

RECORD = "4242"
REPO_ROOT = Path(__file__).resolve().parents[1]
STATION = "NRCA"

#: the files of the demo record, in the record's layout
RAW_FILES = {
    *(record.hdf5_path("", STATION, label).as_posix() for label in record.CLASS_NAMES),
    *(record.attributes_path("", STATION, label).as_posix() for label in record.CLASS_NAMES),
    record.similar_traces_path("", STATION).as_posix(),
}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """zenodo_get honours proxy variables; the local server must be reached directly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def dset_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The archive of a tiny demo data set, laid out as the record's ``dset.zip``."""
    return demo_record_archive(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def server(dset_zip: bytes):
    with ZenodoServer() as srv:
        srv.add_record(RECORD, {"dset.zip": dset_zip, "README.md": b"# NRCA\n"})
        yield srv


def make_cfg(server: ZenodoServer, **overrides) -> ZenodoConfig:
    values = {
        "record_id": RECORD,
        "archive_glob": "dset.zip",
        "base_url": server.base_url,
        "timeout_s": 10.0,
        "retries": 0,
    }
    return ZenodoConfig(**{**values, **overrides})


def fetch(cfg: ZenodoConfig, target: Path, cache: Path) -> list[zenodo.RecordFile]:
    return zenodo.fetch_record(cfg, target, cache, verbosity=0, backoff_s=0.0)


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------------------
# a successful fetch
# --------------------------------------------------------------------------------------


def test_fetch_unpacks_the_record_layout_byte_for_byte(server, dset_zip, tmp_path):
    target = tmp_path / "raw"
    fetched = fetch(make_cfg(server), target, tmp_path / "cache")

    assert [f.key for f in fetched] == ["dset.zip"]
    with zipfile.ZipFile(io.BytesIO(dset_zip)) as zf:
        expected = {name: zf.read(name) for name in zf.namelist()}
    assert set(expected) == RAW_FILES
    assert files_under(target) == expected  # nothing more, nothing less, same bytes
    assert (tmp_path / "cache" / "dset.zip").read_bytes() == dset_zip
    assert server.downloads(RECORD, "README.md") == 0  # only what the glob selects


def test_manifest_lists_every_file_with_its_size_and_sha256(server, tmp_path):
    target = tmp_path / "raw"
    fetch(make_cfg(server), target, tmp_path / "cache")
    manifest.write_manifest(target)

    entries = json.loads((target / MANIFEST_FILE).read_text())
    assert [entry["path"] for entry in entries] == sorted(RAW_FILES)
    for entry in entries:
        data = (target / entry["path"]).read_bytes()
        assert entry == {
            "path": entry["path"],
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }


def test_manifest_is_deterministic(server, tmp_path):
    manifests = []
    for run in ("a", "b"):  # two independent fetches, each with its own cache
        target = tmp_path / run / "raw"
        fetch(make_cfg(server), target, tmp_path / run / "cache")
        manifest.write_manifest(target)
        manifests.append((target / MANIFEST_FILE).read_bytes())
    assert manifests[0] == manifests[1]

    # file times and a previous manifest do not change it
    target = tmp_path / "b" / "raw"
    for i, path in enumerate(sorted(target.rglob("*.csv"))):
        os.utime(path, (1_000_000 + i, 2_000_000 + i))
    manifest.write_manifest(target)
    assert (target / MANIFEST_FILE).read_bytes() == manifests[0]


def test_manifest_refuses_links(tmp_path):
    (tmp_path / "data.csv").write_text("x\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "data.csv")
    with pytest.raises(manifest.ManifestError, match="link"):
        manifest.write_manifest(tmp_path)
    assert not (tmp_path / MANIFEST_FILE).exists()


def test_verified_cached_file_is_not_fetched_again(server, tmp_path):
    cache = tmp_path / "cache"
    fetch(make_cfg(server), tmp_path / "raw1", cache)
    fetch(make_cfg(server), tmp_path / "raw2", cache)
    assert server.downloads(RECORD, "dset.zip") == 1
    assert files_under(tmp_path / "raw1") == files_under(tmp_path / "raw2")


def test_tar_archives_are_unpacked_too(server, dset_zip, tmp_path):
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(dset_zip)) as zf,
        tarfile.open(fileobj=buffer, mode="w:gz") as tf,
    ):
        for name in zf.namelist():
            data = zf.read(name)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    server.add_record("77", {"dset.tar.gz": buffer.getvalue()})
    target = tmp_path / "raw"
    fetch(make_cfg(server, record_id="77", archive_glob="*.tar.gz"), target, tmp_path / "cache")
    assert set(files_under(target)) == RAW_FILES


# --------------------------------------------------------------------------------------
# what goes wrong
# --------------------------------------------------------------------------------------


def test_checksum_mismatch_is_reported_and_leaves_nothing(server, tmp_path):
    wrong = "0" * 32
    server.advertise_checksum(RECORD, "dset.zip", f"md5:{wrong}")
    out, cache = tmp_path / "raw", tmp_path / "cache"
    with pytest.raises(zenodo.ChecksumError) as info, atomic_dir(out) as tmp:
        fetch(make_cfg(server), tmp, cache)

    message = str(info.value)
    actual = hashlib.md5(server._records[RECORD].files["dset.zip"].content).hexdigest()
    assert "dset.zip" in message and wrong in message and actual in message
    assert not out.exists()
    assert not (cache / "dset.zip").exists()  # the bad download is deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no temp folder left


def test_glob_matching_nothing_lists_the_record_files(server, tmp_path):
    with pytest.raises(zenodo.ZenodoError) as info:
        fetch(make_cfg(server, archive_glob="waveforms*.zip"), tmp_path / "raw", tmp_path / "c")
    message = str(info.value)
    assert "waveforms*.zip" in message
    assert "dset.zip (" in message and "README.md (7 B)" in message
    assert "data.zenodo.archive_glob" in message
    assert server.downloads(RECORD, "dset.zip") == 0


def test_rerun_after_an_interrupted_download_succeeds(server, dset_zip, tmp_path):
    server.drop_connection(RECORD, "dset.zip", after_bytes=len(dset_zip) // 3)
    out, cache = tmp_path / "raw", tmp_path / "cache"

    with pytest.raises(zenodo.ZenodoError) as info, atomic_dir(out) as tmp:
        fetch(make_cfg(server), tmp, cache)
    assert not isinstance(info.value, zenodo.ChecksumError)
    assert "dset.zip" in str(info.value) and "re-run" in str(info.value)
    assert not out.exists()
    assert (cache / "dset.zip").stat().st_size < len(dset_zip)  # the partial download

    with atomic_dir(out) as tmp:
        fetch(make_cfg(server), tmp, cache)
    assert set(files_under(out)) == RAW_FILES
    assert (cache / "dset.zip").read_bytes() == dset_zip
    assert server.downloads(RECORD, "dset.zip") == 2


def test_dropped_transfer_is_retried_within_one_run(server, dset_zip, tmp_path):
    server.drop_connection(RECORD, "dset.zip", after_bytes=100)
    fetch(make_cfg(server, retries=1), tmp_path / "raw", tmp_path / "cache")
    assert server.downloads(RECORD, "dset.zip") == 2
    assert set(files_under(tmp_path / "raw")) == RAW_FILES


def test_unknown_record_names_the_parameter(server, tmp_path):
    with pytest.raises(zenodo.ZenodoError, match=r"HTTP 404.*data\.zenodo\.record_id"):
        fetch(make_cfg(server, record_id="999"), tmp_path / "raw", tmp_path / "cache")


def test_unreachable_server_is_a_clear_error(tmp_path):
    with ZenodoServer() as srv:
        base_url = srv.base_url  # a port that nobody listens on once the server stops
    cfg = ZenodoConfig(record_id=RECORD, base_url=base_url, timeout_s=5.0, retries=0)
    with pytest.raises(zenodo.ZenodoError, match=r"cannot reach .*data\.source=demo"):
        fetch(cfg, tmp_path / "raw", tmp_path / "cache")


def test_corrupt_archive_with_a_matching_checksum(server, tmp_path):
    server.add_record("78", {"dset.zip": b"this is not a zip file"})
    with pytest.raises(archives.ArchiveError, match="corrupt archive"):
        fetch(make_cfg(server, record_id="78"), tmp_path / "raw", tmp_path / "cache")


def test_archive_without_the_station_layout(server, tmp_path):
    server.add_record("79", {"dset.zip": zip_entries({"notes/README.txt": b"hello"})})
    layout = re.escape(record.CATALOG_DIR.as_posix())
    with pytest.raises(archives.ArchiveError, match=f"{layout}.*'notes/'"):
        fetch(make_cfg(server, record_id="79"), tmp_path / "raw", tmp_path / "cache")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"key": "a/b.zip", "size": 1, "checksum": "md5:" + "0" * 32}, "plain file name"),
        ({"key": "..", "size": 1, "checksum": "md5:" + "0" * 32}, "plain file name"),
        ({"key": "d.zip", "size": 1, "checksum": "sha256:" + "0" * 64}, "md5"),
        ({"key": "d.zip", "size": 1}, "md5"),
        ({"key": "d.zip", "checksum": "md5:" + "0" * 32}, "size"),
        ({"size": 1, "checksum": "md5:" + "0" * 32}, "no name"),
    ],
)
def test_malformed_record_entries_are_refused(entry, problem):
    cfg = ZenodoConfig(record_id="1")
    with pytest.raises(zenodo.ZenodoError, match=problem):
        zenodo.parse_record({"metadata": {"title": "t"}, "files": [entry]}, cfg)


def test_record_without_files_is_refused():
    with pytest.raises(zenodo.ZenodoError, match="restricted or embargoed"):
        zenodo.parse_record({"metadata": {}, "files": []}, ZenodoConfig(record_id="1"))


def test_record_parsing_accepts_both_spellings_and_rebuilds_links():
    cfg = ZenodoConfig(record_id="12", base_url="https://example.org/")
    record = zenodo.parse_record(
        {
            "metadata": {"title": "T", "doi": "10.1/x"},
            "files": [
                {"filename": "b c.zip", "filesize": 3, "checksum": "md5:" + "A" * 32},
                {
                    "key": "a.zip",
                    "size": 2,
                    "checksum": "md5:" + "b" * 32,
                    "links": {"self": "https://cdn/a"},
                },
            ],
        },
        cfg,
    )
    assert record.title == "T" and record.doi == "10.1/x"
    first, second = record.files
    assert first == zenodo.RecordFile(
        "b c.zip", 3, "a" * 32, "https://example.org/api/records/12/files/b%20c.zip/content"
    )
    assert second.url == "https://cdn/a"
    assert [f.key for f in zenodo.select_files(record, "*.zip")] == ["a.zip", "b c.zip"]
    with pytest.raises(zenodo.ZenodoError):
        zenodo.select_files(record, "*.ZIP")  # case-sensitive everywhere


# --------------------------------------------------------------------------------------
# unsafe archive entries
# --------------------------------------------------------------------------------------


def _zip(*members: zipfile.ZipInfo | str) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(buffer, "w") as zf:
            for member in members:
                zf.writestr(member, b"payload")
    return buffer.getvalue()


def _zip_symlink() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("dset/evil")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _tar(kind: str, name: str = "dset/evil") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        ok = tarfile.TarInfo("dset/ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo(name)
        if kind == "file":
            info.size = 7
            tf.addfile(info, io.BytesIO(b"payload"))
        else:
            info.type = {
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = "" if kind == "fifo" else "../../outside"
            tf.addfile(info)
    return buffer.getvalue()


UNSAFE = {
    "zip-dotdot": ("evil.zip", lambda: _zip("dset/ok.txt", "../evil"), r"outside.*'\.\.'"),
    "zip-nested-dotdot": ("evil.zip", lambda: _zip("dset/../../evil"), r"'\.\.'"),
    "zip-backslash-dotdot": ("evil.zip", lambda: _zip("..\\evil"), r"'\.\.'"),
    "zip-absolute": ("evil.zip", lambda: _zip("/tmp/evil"), "absolute"),
    "zip-drive": ("evil.zip", lambda: _zip("C:/evil"), "absolute"),
    "zip-symlink": ("evil.zip", lambda: _zip("dset/ok.txt", _zip_symlink()), "symbolic link"),
    "zip-duplicate": ("evil.zip", lambda: _zip("dset/evil", "dset/evil"), "already there"),
    "tar-dotdot": ("evil.tar", lambda: _tar("file", "../evil"), r"'\.\.'"),
    "tar-absolute": ("evil.tar", lambda: _tar("file", "/tmp/evil"), "absolute"),
    "tar-symlink": ("evil.tar", lambda: _tar("symlink"), "symbolic link"),
    "tar-hardlink": ("evil.tar", lambda: _tar("hardlink"), "hard link"),
    "tar-fifo": ("evil.tar", lambda: _tar("fifo"), "special file"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archive_entries_are_refused(case, tmp_path):
    name, build, problem = UNSAFE[case]
    archive = tmp_path / "dl" / name
    archive.parent.mkdir()
    archive.write_bytes(build())
    target = tmp_path / "deep" / "down" / "raw"
    target.mkdir(parents=True)

    with pytest.raises(archives.ArchiveError, match=problem):
        archives.extract_archive(archive, target)
    if case != "zip-duplicate":  # every entry is checked before anything is written
        assert list(target.iterdir()) == []
    outside = [p for p in tmp_path.rglob("*evil*") if p != archive and target not in p.parents]
    assert outside == []


def test_unsafe_archive_over_http_leaves_no_output(server, dset_zip, tmp_path):
    with zipfile.ZipFile(io.BytesIO(dset_zip)) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    entries["../../evil"] = b"payload"
    server.add_record("80", {"dset.zip": zip_entries(entries)})
    out = tmp_path / "work" / "raw"
    with pytest.raises(archives.ArchiveError, match="outside"), atomic_dir(out) as tmp:
        fetch(make_cfg(server, record_id="80"), tmp, tmp_path / "work" / "cache")
    assert not out.exists()
    assert list(tmp_path.rglob("evil")) == []


def test_sizes_are_shown_as_zenodo_shows_them():
    assert manifest.human_size(7) == "7 B"
    assert manifest.human_size(1500) == "1.5 kB"
    assert manifest.human_size(1_234_567) == "1.2 MB"


def test_member_path_normalises_harmless_spellings():
    assert archives.member_path("./dset//data\\x.csv", "a.zip").as_posix() == "dset/data/x.csv"
    assert archives.member_path("./", "a.zip") is None


# --------------------------------------------------------------------------------------
# configuration and import
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"record_id": "10.5281/zenodo.15683047"}, "record_id"),
        ({"base_url": "zenodo.org"}, "base_url"),
        ({"archive_glob": ""}, "archive_glob"),
        ({"retries": -1}, "retries"),
    ],
)
def test_zenodo_config_refuses_bad_values(overrides, key):
    with pytest.raises(ConfigError, match=f"data.zenodo.{key}"):
        ZenodoConfig(**overrides)


def test_importing_zenodo_get_leaves_ctrl_c_alone():
    """zenodo_get installs a SIGINT handler on import; quakeshap.zenodo puts it back."""
    code = (
        "import signal\n"
        # a known start: a shell's background job starts with Ctrl+C ignored instead
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from quakeshap import zenodo\n"
        "zenodo._zenodo_get()\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "import zenodo_get.zget\n"  # really imported, with its handler replaced
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------


def write_params(path: Path, source: str, zenodo_cfg: dict | None = None) -> Path:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params = copy.deepcopy(params)
    params["data"]["source"] = source
    params["data"]["demo"].update(TINY_DEMO)
    params["data"]["zenodo"].update(zenodo_cfg or {})
    path.write_text(yaml.safe_dump(params))
    return path


def test_stage_zenodo_writes_layout_and_manifest(server, tmp_path):
    params = write_params(
        tmp_path / "params.yaml", "zenodo", {"record_id": RECORD, "base_url": server.base_url}
    )
    out = tmp_path / raw.PATH
    args = ["--params", str(params), "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert download_stage.main(args) == 0
    entries = json.loads((out / MANIFEST_FILE).read_text())
    assert {entry["path"] for entry in entries} == RAW_FILES
    assert (tmp_path / "cache" / RECORD / "dset.zip").is_file()


def test_stage_failure_is_one_line_and_keeps_the_previous_output(server, tmp_path, caplog):
    server.advertise_checksum(RECORD, "dset.zip", "md5:" + "f" * 32)
    params = write_params(
        tmp_path / "params.yaml",
        "zenodo",
        {"record_id": RECORD, "base_url": server.base_url, "retries": 0},
    )
    out = tmp_path / raw.PATH
    out.mkdir(parents=True)
    (out / "previous.txt").write_text("kept")
    args = ["--params", str(params), "--out", str(out), "--cache", str(tmp_path / "cache")]

    assert download_stage.main(args) == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "dset.zip" in errors[0].getMessage() and "f" * 32 in errors[0].getMessage()
    assert files_under(out) == {"previous.txt": b"kept"}
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp folder left


def test_stage_rejects_a_bad_parameter_before_any_work(server, tmp_path, caplog):
    params = write_params(tmp_path / "params.yaml", "zenodo", {"record_id": "not-a-number"})
    out = tmp_path / "raw"
    assert download_stage.main(["--params", str(params), "--out", str(out)]) == 1
    assert "data.zenodo.record_id" in caplog.text
    assert not out.exists() and server.requests == []


def test_stage_demo_is_deterministic(tmp_path):
    params = write_params(tmp_path / "params.yaml", "demo")
    trees = []
    for run in ("a", "b"):
        out = tmp_path / run / "raw"
        assert download_stage.main(["--params", str(params), "--out", str(out)]) == 0
        trees.append(files_under(out))
    assert trees[0] == trees[1]
    entries = json.loads(trees[0][MANIFEST_FILE])
    assert {entry["path"] for entry in entries} == RAW_FILES
