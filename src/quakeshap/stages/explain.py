"""Stage ``explain``: SHAP maps of the selected traces (``docs/method.md`` §5).

Reads ``data/spectrograms/``, ``models/model.pt`` and ``data/selection.csv``; writes
``data/shap/`` (maps, index, mean maps: :mod:`quakeshap.artifacts.shap_set`) and
``reports/metrics/explain.json``. The metrics hold no timings, so that the same inputs give
the same bytes; the wall time is logged, and ``--timing FILE`` writes it to a file outside
the DAG (for benchmarks).

Ctrl+C or SIGTERM stops the stage and its workers within seconds, with exit code 130 or 143
and no output; its local workers also exit when the stage is killed (SIGKILL). With
``shap.resume_dir`` set, the traces finished before the stop are kept there, and the next
run explains only the others (:mod:`quakeshap.explain.resume`). With
``shap.scheduler`` a Dask address the traces run on that cluster (``docs/cluster.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from quakeshap.artifacts import checkpoint, metrics, selection, shap_set
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import load_params
from quakeshap.explain import (
    ExplainError,
    aggregate,
    check_config,
    explain_selection,
    image_timing,
    resume,
    summarize,
)
from quakeshap.files import remove_outputs, write_json
from quakeshap.model import DeviceError
from quakeshap.stages import run_stage, stage_parser

log = logging.getLogger("quakeshap.stages.explain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(
        __doc__,
        spectrograms=spectrogram_set.PATH,
        model=checkpoint.PATH,
        selection=selection.PATH,
        out=shap_set.PATH,
        metrics=metrics.PATHS["explain"],
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="override shap.workers (benchmarks)"
    )
    parser.add_argument(
        "--timing", type=Path, default=None, help="also write the wall time to this JSON file"
    )
    return parser.parse_args(argv)


def explain(args: argparse.Namespace) -> None:
    cfg = resume.anchored(load_params(args.params).shap, args.params)
    check_config(cfg)  # a bad masker or max_evals fails before anything is read
    remove_outputs(args.out, args.metrics)
    sset = spectrogram_set.load(args.spectrograms)
    chosen = selection.load(args.selection)
    ckpt = checkpoint.load(args.model)
    quiet = not sys.stderr.isatty() or bool(os.environ.get("CI"))
    with tqdm(desc="explain", unit="trace", disable=quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        maps = explain_selection(sset, chosen, ckpt, cfg, args.workers, progress)
    duration_s, p_arrival_s = image_timing(sset.axes)
    summary = summarize(maps, sset.frequency_hz, sset.time_s, cfg, duration_s, p_arrival_s)
    shap_set.write(args.out, aggregate(maps, duration_s, p_arrival_s))
    metrics.write(args.metrics, summary)
    n_explained = summary["n_traces"] - maps.n_resumed
    per_trace = maps.seconds / max(n_explained, 1)
    log.info(
        "%d map(s) of %d trace(s) in %.1f s (%.2f s per trace)%s; additivity error max %.2e",
        summary["n_maps"],
        n_explained,
        maps.seconds,
        per_trace,
        f", {maps.n_resumed} more read back from {cfg.resume_dir}" if maps.n_resumed else "",
        summary["additivity_error_max"],
    )
    if args.timing is not None:
        write_json(
            args.timing,
            {
                "seconds": maps.seconds,
                "n_traces": n_explained,
                "n_resumed": maps.n_resumed,
                "seconds_per_trace": per_trace,
            },
        )


class Interrupted(KeyboardInterrupt):
    """The stage received ``signum`` (SIGINT or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`Interrupted` in the block, so that the worker
    pool is terminated and temporary outputs removed on the way out, as for Ctrl+C; the
    previous handlers come back after. Outside the main thread nothing changes (Python
    delivers signals to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    # a signal this process was started ignoring (a background job's SIGINT) stays ignored
    signals = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with signals_interrupt():
            return run_stage("explain", lambda: explain(args), errors=(DeviceError, ExplainError))
    except KeyboardInterrupt as exc:  # the workers are stopped by now (pool or Dask client)
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        remove_outputs(args.out, args.metrics)  # nothing half-written, nothing stale
        log.error("interrupted by %s: every worker stopped, nothing written to %s",
                  signal.Signals(signum).name, args.out)  # fmt: skip
        return 128 + int(signum)


if __name__ == "__main__":
    sys.exit(main())
