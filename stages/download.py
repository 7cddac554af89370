"""Stage ``download``: fill ``data/raw/`` with the demo data set or the Zenodo record.

``data.source: demo`` generates the demo data set (:mod:`quakeshap.demo`); ``zenodo``
downloads, verifies and unpacks the selected files of record ``data.zenodo.record_id``
(:mod:`quakeshap.zenodo`), keeping the downloads in ``--cache``/<record_id>/ so that a
re-run does not fetch a verified file again. Either way the folder gets a
``MANIFEST.json`` (path, size, sha256 of every file). ``data/raw/`` is built in a
temporary sibling and renamed when complete: a failure leaves the previous one, or none.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from loguru import logger as loguru_logger

from quakeshap.config import ConfigError, load_params
from quakeshap.demo import DemoError, write_demo_dataset
from quakeshap.io import atomic_dir
from quakeshap.zenodo import ManifestError, ZenodoError, fetch_record, write_manifest

log = logging.getLogger("quakeshap.stages.download")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("data/.zenodo-cache"),
        help="where Zenodo downloads are kept between runs (one folder per record)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # zenodo_get logs through loguru; quakeshap.zenodo forwards it to `logging` instead
    loguru_logger.remove()
    try:
        data = load_params(args.params).data
        with atomic_dir(args.out) as tmp:
            if data.source == "demo":
                write_demo_dataset(data.demo, tmp)
            else:
                fetch_record(
                    data.zenodo,
                    tmp,
                    args.cache / data.zenodo.record_id,
                    verbosity=3 if sys.stderr.isatty() else 2,  # 3 = progress bars
                )
            write_manifest(tmp)
    except (ConfigError, DemoError, ZenodoError, ManifestError, OSError) as exc:
        log.error("%s", exc)
        return 1
    log.info("%s ready (source: %s)", args.out, data.source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
