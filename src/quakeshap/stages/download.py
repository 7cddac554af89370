"""Stage ``download``: fill ``data/raw/`` with the demo data set, the Zenodo record or a
SeisBench data set.

``data.source: demo`` generates the demo data set (:mod:`quakeshap.demo`); ``zenodo``
downloads, verifies and unpacks the selected files of record ``data.zenodo.record_id``
(:mod:`quakeshap.zenodo`), keeping the downloads in ``--cache``/<record_id>/ so that a
re-run does not fetch a verified file again; ``seisbench`` converts the SeisBench
``WaveformDataset`` folder ``data.seisbench.path`` into the record's layout, its classes
split at ``task.boundary_time`` (:mod:`quakeshap.interop.seisbench_dataset`;
``docs/interop.md``). That folder lies outside the DAG, like the Zenodo cache: after
changing its content, run ``dvc repro -f download``. Either way the folder gets a manifest
(:mod:`quakeshap.manifest`: path, size, sha256 of every file). ``data/raw/`` is built in a
temporary sibling and renamed when complete: a failure leaves the previous one, or none.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from loguru import logger as loguru_logger

from quakeshap.archives import ArchiveError
from quakeshap.artifacts import raw
from quakeshap.config import load_params
from quakeshap.demo import DemoError, write_demo_dataset
from quakeshap.files import atomic_dir
from quakeshap.interop.seisbench_dataset import convert_to_record
from quakeshap.manifest import ManifestError, write_manifest
from quakeshap.stages import run_stage, stage_parser
from quakeshap.zenodo import ZenodoError, fetch_record

log = logging.getLogger("quakeshap.stages.download")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = stage_parser(__doc__, out=raw.PATH)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("data/.zenodo-cache"),
        help="where Zenodo downloads are kept between runs (one folder per record)",
    )
    return parser.parse_args(argv)


def download(params_path: Path, out: Path, cache: Path) -> None:
    """Fill ``out`` with the demo data set, the Zenodo record or a SeisBench data set, and
    its manifest."""
    params = load_params(params_path)
    data = params.data
    with atomic_dir(out) as tmp:
        if data.source == "demo":
            write_demo_dataset(data.demo, tmp)
        elif data.source == "seisbench":
            convert_to_record(data.seisbench, params.task.boundary_utc, tmp)
        else:
            fetch_record(
                data.zenodo,
                tmp,
                cache / data.zenodo.record_id,
                verbosity=3 if sys.stderr.isatty() else 2,  # 3 = progress bars
            )
        write_manifest(tmp)
    log.info("%s ready (source: %s)", out, data.source)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # zenodo_get logs through loguru; quakeshap.zenodo forwards it to `logging` instead
    loguru_logger.remove()
    return run_stage(
        "download",
        lambda: download(args.params, args.out, args.cache),
        errors=(DemoError, ZenodoError, ArchiveError, ManifestError, OSError),
    )


if __name__ == "__main__":
    sys.exit(main())
