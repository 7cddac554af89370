"""``params.yaml`` as frozen dataclasses.

Every section of ``params.yaml`` maps to one frozen dataclass, built with
:func:`quakeshap.typed_yaml.build` so that an unknown, missing or mistyped key fails loudly,
with its dotted name, before a stage does any work. ``params.yaml`` is the demo configuration;
``profiles/study.yaml`` holds the study's values for the same keys. The defaults of the
dataclasses are ``params.yaml``'s values (``tests/test_config.py`` checks it): two sets of
values, the demo and the study, not three.

Stages read only the sections they declare in ``dvc.yaml``::

    params = load_params("params.yaml")
    cfg = params.train            # a TrainConfig
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd

from quakeshap.record import MAINSHOCK_ORIGIN_UTC, parse_times

# ConfigError, load_yaml and to_dict are re-exported: callers import them from here
from quakeshap.typed_yaml import ConfigError, build, check, load_yaml, to_dict  # noqa: F401

#: the project's parameter file (the demo configuration)
PARAMS_FILE = Path("params.yaml")


# --------------------------------------------------------------------------------------
# data: where the raw data come from
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZenodoConfig:
    """The real data: one Zenodo record, fetched with ``zenodo_get``."""

    record_id: str = "15683047"
    #: glob over the record's file names selecting the archive(s) to fetch and extract
    archive_glob: str = "dset.zip"
    #: API root; the real endpoint is the default, tests point it at a local server
    base_url: str = "https://zenodo.org"
    timeout_s: float = 60.0
    retries: int = 3

    def __post_init__(self) -> None:
        check(
            self.record_id.isascii() and self.record_id.isdigit(),
            "data.zenodo.record_id",
            f"{self.record_id!r} is not a Zenodo record number (e.g. '15683047')",
        )
        check(
            self.base_url.startswith(("https://", "http://")),
            "data.zenodo.base_url",
            f"{self.base_url!r} must start with https:// (or http://)",
        )
        check(self.timeout_s > 0, "data.zenodo.timeout_s", "must be > 0")
        check(self.retries >= 0, "data.zenodo.retries", "must be >= 0")
        check(bool(self.archive_glob), "data.zenodo.archive_glob", "must not be empty")


@dataclass(frozen=True)
class DemoConfig:
    """The bundled demo data set, generated in the Zenodo layout (see :mod:`quakeshap.demo`)."""

    seed: int = 20161030
    n_pre: int = 480
    n_post: int = 320
    #: quality factor of the crust before / after the mainshock (post: stronger attenuation)
    q_pre: float = 300.0
    q_post: float = 150.0
    #: per-trace scatter of Q, standard deviation of ln Q (makes the classes overlap)
    q_log_std: float = 0.1
    #: Gutenberg–Richter b-value and magnitude range
    b_value: float = 1.0
    magnitude_min: float = 0.5
    magnitude_max: float = 3.5
    #: median Brune stress drop (sets the corner frequency from the magnitude)
    stress_drop_mpa: float = 3.0
    #: homogeneous half-space velocities (travel times, P–S times)
    vp_km_s: float = 6.0
    vs_km_s: float = 3.4
    #: site attenuation exp(-pi kappa f), the same before and after the mainshock
    kappa_s: float = 0.02
    #: background noise, acceleration PSD above 1 Hz in dB re 1 (m/s^2)^2/Hz
    noise_psd_db: float = -145.0
    #: number of co-located pre/post groups written to the similar-traces table
    n_colocated_groups: int = 12
    #: defects planted as in the real record
    n_missing_channels: int = 3
    n_nan_traces: int = 1
    n_missing_in_hdf5: int = 1
    #: time-to-failure signal: ln Q drifts linearly by this much across each side of the
    #: mainshock (falling towards it before, recovering after); 0 = none (the default demo)
    q_drift: float = 0.0
    #: the stations written, each in its own folder (:mod:`quakeshap.demo.stations`);
    #: NRCA alone = the default demo, byte for byte
    stations: tuple[str, ...] = ("NRCA",)

    def __post_init__(self) -> None:
        check(len(self.stations) > 0, "data.demo.stations", "name at least one station")
        check(
            len(set(self.stations)) == len(self.stations),
            "data.demo.stations",
            f"lists a station twice: {list(self.stations)}",
        )
        check(self.n_pre > 0 and self.n_post > 0, "data.demo.n_pre/n_post", "must be > 0")
        check(self.q_pre > 0 and self.q_post > 0, "data.demo.q_pre/q_post", "must be > 0")
        check(self.q_log_std >= 0, "data.demo.q_log_std", "must be >= 0")
        check(self.b_value > 0, "data.demo.b_value", "must be > 0")
        check(self.stress_drop_mpa > 0, "data.demo.stress_drop_mpa", "must be > 0")
        check(0 < self.vs_km_s < self.vp_km_s, "data.demo.vs_km_s", "must be in (0, vp_km_s)")
        check(self.kappa_s >= 0, "data.demo.kappa_s", "must be >= 0")
        check(abs(self.q_drift) <= 3.0, "data.demo.q_drift", "must be within [-3, 3] (ln Q)")
        check(self.n_colocated_groups >= 0, "data.demo.n_colocated_groups", "must be >= 0")
        for name in ("n_missing_channels", "n_nan_traces", "n_missing_in_hdf5"):
            check(getattr(self, name) >= 0, f"data.demo.{name}", "must be >= 0")
        # every ISO week holds one anchor event (11 pre weeks with 08-20, 8 post weeks);
        # groups take up to 4 events per class; defects need traces of their own
        defects = self.n_missing_channels + self.n_nan_traces + self.n_missing_in_hdf5
        need = 11 + 4 * self.n_colocated_groups + defects
        check(self.n_pre >= need, "data.demo.n_pre", f"must be >= {need} for these settings")
        check(self.n_post >= need, "data.demo.n_post", f"must be >= {need} for these settings")
        check(
            self.magnitude_min < self.magnitude_max,
            "data.demo.magnitude_min",
            "must be below data.demo.magnitude_max",
        )


@dataclass(frozen=True)
class SeisbenchConfig:
    """Any SeisBench ``WaveformDataset`` folder, converted into the record's layout
    (``docs/interop.md``; :mod:`quakeshap.interop.seisbench_dataset`)."""

    #: the data set's folder (metadata.csv and the waveforms' HDF5 file), relative to the
    #: working directory; None = not given (needed with ``data.source: seisbench``)
    path: str | None = None
    #: station codes to convert; empty = every station of the data set
    stations: tuple[str, ...] = ()
    #: traces not at 100 Hz: false = refuse the data set, true = resample them on loading
    #: (SeisBench's own resampling) to the study's 100 Hz
    resample: bool = False

    def __post_init__(self) -> None:
        check(
            self.path is None or bool(self.path.strip()),
            "data.seisbench.path",
            "give a folder or null, not an empty string",
        )
        check(all(self.stations), "data.seisbench.stations", "station codes must not be empty")
        check(
            len(set(self.stations)) == len(self.stations),
            "data.seisbench.stations",
            f"lists a station twice: {list(self.stations)}",
        )


@dataclass(frozen=True)
class DataConfig:
    source: Literal["demo", "zenodo", "seisbench"] = "demo"
    zenodo: ZenodoConfig = field(default_factory=ZenodoConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    seisbench: SeisbenchConfig = field(default_factory=SeisbenchConfig)

    def __post_init__(self) -> None:
        check(
            self.source != "seisbench" or self.seisbench.path is not None,
            "data.seisbench.path",
            "is null but data.source is seisbench: name the SeisBench data set's folder",
        )


# --------------------------------------------------------------------------------------
# task: what the network learns to tell apart
# --------------------------------------------------------------------------------------

#: ``task.boundary_time``'s default: the Norcia mainshock (``docs/method.md`` §1)
MAINSHOCK_ISO = MAINSHOCK_ORIGIN_UTC.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TtfConfig:
    """Time-to-failure classes (Laurenti et al. 2024, ``docs/method.md`` §11)."""

    #: pre and post each sorted by origin time and cut into n_classes/2 chunks of equal
    #: trace count; an odd number needs ``extra_boundary_time`` (the Visso class)
    n_classes: int = 4
    #: with an odd n_classes: the traces between this time and ``task.boundary_time`` form
    #: a class of their own (Laurenti's ninth: after the 2016-10-26 Visso shocks)
    extra_boundary_time: str | None = None

    def __post_init__(self) -> None:
        check(self.n_classes >= 2, "task.ttf.n_classes", f"{self.n_classes} must be >= 2")
        if self.n_classes % 2 == 1:
            check(
                self.extra_boundary_time is not None,
                "task.ttf.n_classes",
                f"{self.n_classes} is odd: an odd count needs task.ttf.extra_boundary_time "
                "(the Visso class) between the pre and post chunks; or choose an even count",
            )
            check(
                self.n_classes >= 3,
                "task.ttf.n_classes",
                "an odd count needs at least 3 (1 pre chunk, the extra class, 1 post chunk)",
            )
        elif self.extra_boundary_time is not None:
            check(
                False,
                "task.ttf.extra_boundary_time",
                f"is set but task.ttf.n_classes ({self.n_classes}) is even: the extra class "
                "needs an odd count (e.g. 9); set it to null or make the count odd",
            )
        if self.extra_boundary_time is not None:
            parsed = parse_times(pd.Series([self.extra_boundary_time]))
            check(
                not parsed.isna().iloc[0],
                "task.ttf.extra_boundary_time",
                f"{self.extra_boundary_time!r} is not an ISO 8601 time",
            )


@dataclass(frozen=True)
class MagnitudeConfig:
    """Magnitude regression (``docs/method.md`` §11)."""

    #: huber (robust to the few mislocated or mis-sized catalogue events) | mse
    loss: Literal["huber", "mse"] = "huber"
    #: Huber's switch from quadratic to linear, in magnitude units
    huber_delta: float = 0.5
    #: width of the magnitude bins: residuals, selection and mean maps per bin
    bin_width: float = 0.5
    #: width of the S−P time bins (a proxy of distance) of the residual table, seconds
    sp_bin_s: float = 1.0
    #: gradient-boosting baseline on features of the waveform alone (no catalogue column)
    baseline_trees: int = 200
    baseline_seed: int = 0

    def __post_init__(self) -> None:
        check(self.huber_delta > 0, "task.magnitude.huber_delta", "must be > 0")
        check(self.bin_width > 0, "task.magnitude.bin_width", "must be > 0")
        check(self.sp_bin_s > 0, "task.magnitude.sp_bin_s", "must be > 0")
        check(self.baseline_trees > 0, "task.magnitude.baseline_trees", "must be > 0")


@dataclass(frozen=True)
class TaskConfig:
    """What the network learns: the study's pre/post classes, time-to-failure classes or
    the magnitude (``docs/method.md`` §1, §11)."""

    #: ISO 8601 time, UTC unless it names its zone; a trace whose ``source_origin_time`` is
    #: earlier is ``pre``, any other ``post``. The default is the Norcia mainshock; another
    #: time is the wrong-boundary control (checked against the catalogue's span on reading)
    boundary_time: str = MAINSHOCK_ISO
    #: prepost (the study) | ttf (N time-to-failure classes) | magnitude (regression)
    kind: Literal["prepost", "ttf", "magnitude"] = "prepost"
    ttf: TtfConfig = field(default_factory=TtfConfig)
    magnitude: MagnitudeConfig = field(default_factory=MagnitudeConfig)

    def __post_init__(self) -> None:
        parsed = parse_times(pd.Series([self.boundary_time]))
        check(
            not parsed.isna().iloc[0],
            "task.boundary_time",
            f"{self.boundary_time!r} is not an ISO 8601 time such as {MAINSHOCK_ISO!r}",
        )
        extra = self.ttf.extra_boundary_time
        if extra is not None:
            check(
                parse_times(pd.Series([extra])).iloc[0] < parsed.iloc[0],
                "task.ttf.extra_boundary_time",
                f"{extra!r} must be earlier than task.boundary_time ({self.boundary_time!r})",
            )

    @property
    def boundary_utc(self) -> pd.Timestamp:
        """``boundary_time`` as a UTC timestamp."""
        return parse_times(pd.Series([self.boundary_time])).iloc[0]

    @property
    def is_regression(self) -> bool:
        return self.kind == "magnitude"


# --------------------------------------------------------------------------------------
# spectrogram + split
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessConfig:
    """Optional ObsPy waveform preprocessing before the spectrogram; all off = the study."""

    demean: bool = False
    detrend: bool = False
    #: cosine taper, fraction of the window at each end (0 = off)
    taper_fraction: float = 0.0
    #: Butterworth corners in Hz; None = off. Both set = band-pass.
    highpass_hz: float | None = None
    lowpass_hz: float | None = None
    filter_corners: int = 4
    zerophase: bool = True

    def __post_init__(self) -> None:
        check(0 <= self.taper_fraction <= 0.5, "spectrogram.preprocess.taper_fraction", "0..0.5")
        for name in ("highpass_hz", "lowpass_hz"):
            value = getattr(self, name)
            check(value is None or value > 0, f"spectrogram.preprocess.{name}", "must be > 0")
        if self.highpass_hz is not None and self.lowpass_hz is not None:
            check(
                self.highpass_hz < self.lowpass_hz,
                "spectrogram.preprocess.highpass_hz",
                "must be below lowpass_hz",
            )
        check(self.filter_corners > 0, "spectrogram.preprocess.filter_corners", "must be > 0")

    @property
    def active(self) -> bool:
        return (
            self.demean
            or self.detrend
            or self.taper_fraction > 0
            or self.highpass_hz is not None
            or self.lowpass_hz is not None
        )


@dataclass(frozen=True)
class SpectrogramConfig:
    """The study's spectrogram (``docs/method.md`` §2)."""

    stations: tuple[str, ...] = ("NRCA",)
    sampling_rate_hz: float = 100.0
    n_samples: int = 1300
    nperseg: int = 64
    noverlap: int = 51
    log_floor: float = 1e-10
    quantization: Literal["uint8", "float32"] = "uint8"
    chunk_size: int = 512
    #: threads computing chunks: "auto" = all cores, or a number; outputs do not depend on it
    workers: int | Literal["auto"] = "auto"
    #: the stage fails when more than this fraction of listed traces is rejected
    max_rejected_fraction: float = 0.05
    export_png: bool = False
    #: the time-window ablation: keep only the columns before P, from P to S or after S of
    #: every image and fill the others as ``window_fill`` says; ``all`` keeps every column
    window: Literal["all", "before_p", "p_to_s", "after_s"] = "all"
    #: how the hidden columns are filled: the specifications of ``shap.masker``
    window_fill: str = "inpaint_telea"
    #: where the images come from: waveforms (computed here, the study's method) | png
    #: (the study's own PNG files, read from its preprocessed archive as they are stored)
    source: Literal["waveforms", "png"] = "waveforms"
    #: source png: the archive (zip) or its unpacked folder, relative to the raw folder
    png_archive: str | None = None
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        check(len(self.stations) > 0, "spectrogram.stations", "name at least one station")
        check(0 <= self.noverlap < self.nperseg, "spectrogram.noverlap", "0 <= noverlap < nperseg")
        check(self.nperseg <= self.n_samples, "spectrogram.nperseg", "must be <= n_samples")
        check(self.chunk_size > 0, "spectrogram.chunk_size", "must be > 0")
        check(
            self.workers == "auto" or (isinstance(self.workers, int) and self.workers > 0),
            "spectrogram.workers",
            "must be 'auto' or a positive integer",
        )
        check(0 <= self.max_rejected_fraction <= 1, "spectrogram.max_rejected_fraction", "0..1")
        check(self.sampling_rate_hz > 0, "spectrogram.sampling_rate_hz", "must be > 0")
        check(self.log_floor > 0, "spectrogram.log_floor", "must be > 0 (log10 of zero power)")
        check(all(self.stations), "spectrogram.stations", "station codes must not be empty")
        nyquist = self.sampling_rate_hz / 2
        for name in ("highpass_hz", "lowpass_hz"):
            corner = getattr(self.preprocess, name)
            check(
                corner is None or corner < nyquist,
                f"spectrogram.preprocess.{name}",
                f"{corner} Hz must be below the Nyquist frequency {nyquist} Hz",
            )
        self._check_png_source()

    def _check_png_source(self) -> None:
        """``source: png`` reads stored 8-bit images: nothing that acts on waveforms applies."""
        if self.png_archive is not None:
            path = Path(self.png_archive)
            check(
                not path.is_absolute() and ".." not in path.parts,
                "spectrogram.png_archive",
                f"{self.png_archive!r} must be a path inside the raw folder (data/raw), which "
                "the stage depends on: e.g. dset_preprocessed.zip, or . when it was unpacked there",
            )
        if self.source != "png":
            return
        check(
            self.png_archive is not None,
            "spectrogram.png_archive",
            "source png needs the archive: e.g. dset_preprocessed.zip (in the raw folder)",
        )
        for name, value, default, shown in (
            ("quantization", self.quantization, "uint8", "uint8"),
            ("window", self.window, "all", "all"),
            ("export_png", self.export_png, False, "false"),
            ("preprocess", self.preprocess.active, False, "all off"),
        ):
            check(
                value == default,
                f"spectrogram.{name}",
                f"source png reads the study's stored 8-bit images: {name} must be {shown} "
                "(it acts on the waveforms or on the computed images)",
            )


@dataclass(frozen=True)
class SplitConfig:
    """Train/test split: ``trace`` = the study's random 80/20 (seed 42)."""

    #: auto = trace for the study's pre/post, event (source_id) for ttf and magnitude;
    #: event_hash = by event, each event's side fixed by a hash of (seed, source_id)
    by: Literal["auto", "trace", "event", "event_hash", "time"] = "auto"
    test_fraction: float = 0.2
    seed: int = 42
    #: the matched-classes control: drop traces (seeded) until pre and post have the same
    #: joint histogram of magnitude and S-P time, before the split; none = keep them all
    match: Literal["none", "magnitude_distance"] = "none"
    #: bin widths of that histogram: magnitude units, seconds of S-P time
    match_bins: tuple[float, ...] = (0.2, 0.5)

    def __post_init__(self) -> None:
        check(0 < self.test_fraction < 1, "split.test_fraction", "must be in (0, 1)")
        check(
            len(self.match_bins) == 2 and all(w > 0 for w in self.match_bins),
            "split.match_bins",
            f"{list(self.match_bins)} must be two widths > 0: [magnitude, S-P seconds]",
        )

    def for_task(self, kind: str) -> SplitConfig:
        """This split with ``by: auto`` resolved for ``task.kind`` ``kind``."""
        if self.by != "auto":
            return self
        return replace(self, by="trace" if kind == "prepost" else "event")


# --------------------------------------------------------------------------------------
# train / select / shap / plots
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Cross-validated training of the study's CNN2D (``docs/method.md`` §3)."""

    seed: int = 42
    device: Literal["auto", "cuda", "cpu"] = "auto"
    #: the study: 7 (profiles/study.yaml); fewer folds keep the demo quick
    n_folds: int = 4
    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 10
    patience: int = 3
    #: balance the train split by undersampling the larger class (the study) or not at all
    balance: Literal["undersample", "none"] = "undersample"
    #: the study's co-located control: train without traces whose associato != 0
    exclude_colocated: bool = False
    #: the shuffled-labels control: permute the training labels (seeded), test on the true
    #: labels; the test accuracy must fall to chance
    shuffle_labels: bool = False
    dropout: float = 0.1
    #: autocast to bfloat16/float16 on CUDA; ignored on CPU
    mixed_precision: bool = True
    #: CPU threads for torch; None = torch's default
    num_threads: int | None = None

    def __post_init__(self) -> None:
        check(self.n_folds >= 2, "train.n_folds", "must be >= 2")
        check(self.lr > 0, "train.lr", "must be > 0")
        check(self.batch_size > 0, "train.batch_size", "must be > 0")
        check(self.max_epochs > 0, "train.max_epochs", "must be > 0")
        check(self.patience > 0, "train.patience", "must be > 0")
        check(0 <= self.dropout < 1, "train.dropout", "must be in [0, 1)")
        check(self.num_threads is None or self.num_threads > 0, "train.num_threads", "must be > 0")


@dataclass(frozen=True)
class SelectConfig:
    """Which test traces to explain (``docs/method.md`` §4)."""

    seed: int = 42
    per_class: int = 2
    per_week: int = 1
    #: the study: weeks 34-51; each week costs a SHAP run
    week_min: int = 38
    week_max: int = 49
    #: cap on misclassified traces explained; None = all of them (the study)
    max_misclassified: int | None = 2
    #: trace names; empty = the most confidently correct trace of each class
    examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self.per_class >= 0, "select.per_class", "must be >= 0")
        check(self.per_week >= 0, "select.per_week", "must be >= 0")
        check(self.week_min <= self.week_max, "select.week_min", "must be <= week_max")
        check(
            self.max_misclassified is None or self.max_misclassified >= 0,
            "select.max_misclassified",
            "must be >= 0",
        )


@dataclass(frozen=True)
class FaithfulnessConfig:
    """Do the maps point at what the model uses? (``docs/method.md`` §10)."""

    #: compute the checks in the ``explain`` stage (numbers in ``explain.json``)
    enabled: bool = True
    #: deletion/insertion curves: the (frequency, time) cells go in this many equal steps
    n_steps: int = 20
    #: seeded random removal orders per trace: the baseline the gaps are measured against
    random_orders: int = 3
    #: rank cells by the sum over E, N, Z of the explained class's values (signed) or of
    #: their magnitudes (absolute)
    rank_by: Literal["signed", "absolute"] = "signed"
    #: traces per class re-explained under the model-randomisation cascade (0 = none)
    randomisation_per_class: int = 1
    #: partition budget of the cascade's maps (capped at shap.max_evals); None = max_evals
    randomisation_max_evals: int | None = 500

    def __post_init__(self) -> None:
        check(self.n_steps >= 1, "shap.faithfulness.n_steps", "must be >= 1")
        check(self.random_orders >= 1, "shap.faithfulness.random_orders", "must be >= 1")
        check(
            self.randomisation_per_class >= 0,
            "shap.faithfulness.randomisation_per_class",
            "must be >= 0",
        )
        check(
            self.randomisation_max_evals is None or self.randomisation_max_evals > 0,
            "shap.faithfulness.randomisation_max_evals",
            "must be > 0 (or null = shap.max_evals)",
        )


#: the address schemes of a Dask scheduler (``shap.scheduler``)
DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


@dataclass(frozen=True)
class ShapConfig:
    """SHAP explanations (``docs/method.md`` §5)."""

    explainer: Literal["partition", "deep", "gradient", "integrated_gradients"] = "partition"
    #: inpaint_telea | inpaint_ns | blur(k,k) | a constant number
    masker: str = "inpaint_telea"
    max_evals: int = 5000
    batch_size: int = 50
    #: background images for deep/gradient explainers (drawn from the train split)
    background: int = 100
    #: worker processes: "auto" = all cores, or a number (int first: YAML's 2 stays a number)
    workers: int | Literal["auto"] = "auto"
    #: where the per-trace jobs run: "local" = ``workers`` processes here, or a Dask
    #: scheduler's address (``tcp://host:8786``); the maps are the same (docs/cluster.md)
    scheduler: str = "local"
    #: seconds to reach that scheduler and find a worker there before the stage fails
    scheduler_timeout_s: float = 30.0
    #: a folder that keeps each finished trace's maps until the whole selection is
    #: explained, so that a stopped run resumes where it was (null: keep nothing)
    resume_dir: str | None = None
    device: Literal["auto", "cuda", "cpu"] = "auto"
    seed: int = 0
    #: tolerated |sum(SHAP) - (f(x) - E[f(x)])|, in logits, for partition
    additivity_tolerance: float = 1e-3
    #: deletion/insertion curves and the model-randomisation check of the maps
    faithfulness: FaithfulnessConfig = field(default_factory=FaithfulnessConfig)

    def __post_init__(self) -> None:
        check(self.max_evals > 0, "shap.max_evals", "must be > 0")
        check(self.batch_size > 0, "shap.batch_size", "must be > 0")
        check(self.background > 0, "shap.background", "must be > 0")
        check(
            self.workers == "auto" or (isinstance(self.workers, int) and self.workers > 0),
            "shap.workers",
            "must be 'auto' or a positive integer",
        )
        scheme, sep, host = self.scheduler.partition("://")
        check(
            self.scheduler == "local"
            or (sep == "://" and scheme in DASK_SCHEMES and bool(host) and host.strip() == host),
            "shap.scheduler",
            f"{self.scheduler!r} is neither 'local' nor a Dask scheduler address such as "
            "'tcp://host:8786'",
        )
        check(self.scheduler_timeout_s > 0, "shap.scheduler_timeout_s", "must be > 0")
        check(
            self.resume_dir is None or bool(str(self.resume_dir).strip()),
            "shap.resume_dir",
            "must be a folder or null",
        )
        check(self.additivity_tolerance > 0, "shap.additivity_tolerance", "must be > 0")


@dataclass(frozen=True)
class ExplainersConfig:
    """Every explainer on the same traces, scored against the demo's ground truth
    (``docs/method.md`` §9); the other ``shap`` settings are shared with ``explain``."""

    #: the most confidently correct test traces of each class, explained by every configuration
    per_class: int = 2
    #: ``partition:<shap.masker>`` or another ``shap.explainer`` (deep, gradient, ...)
    configurations: tuple[str, ...] = (
        "partition:inpaint_telea",
        "partition:inpaint_ns",
        "partition:blur(8,8)",
        "partition:0",
        "deep",
        "gradient",
        "integrated_gradients",
    )
    #: model evaluations of each partition configuration (the study: 5000)
    max_evals: int = 1000
    #: also score every configuration with the shap.faithfulness checks (when those are on)
    faithfulness: bool = False
    #: demo only: the ground-truth band is where pre and post differ by >= this share of the most
    truth_threshold: float = 0.8

    def __post_init__(self) -> None:
        check(self.per_class > 0, "explainers.per_class", "must be > 0")
        check(self.max_evals > 0, "explainers.max_evals", "must be > 0")
        check(0 < self.truth_threshold <= 1, "explainers.truth_threshold", "must be in (0, 1]")
        check(len(self.configurations) > 0, "explainers.configurations", "name at least one")
        twice = sorted({c for c in self.configurations if self.configurations.count(c) > 1})
        check(not twice, "explainers.configurations", f"{twice} listed more than once")
        self.parsed()

    def parsed(self) -> tuple[tuple[str, str | None], ...]:
        """Each configuration as ``(shap.explainer, shap.masker or None)``; the masker's
        value is checked by :func:`quakeshap.explain.check_config`."""
        names = get_args(typing.get_type_hints(ShapConfig)["explainer"])
        out = []
        for spec in self.configurations:
            explainer, colon, masker = spec.partition(":")
            explainer, masker = explainer.strip(), masker.strip()
            ok = explainer in names and bool(masker) == (explainer == "partition") == bool(colon)
            check(
                ok,
                "explainers.configurations",
                f"{spec!r} is not a configuration; use partition:<masker> (e.g. "
                f"partition:inpaint_telea) or one of {[n for n in names if n != 'partition']}",
            )
            out.append((explainer, masker or None))
        return tuple(out)


@dataclass(frozen=True)
class PlotsConfig:
    """Figure settings; changing one re-runs only the ``plots`` stage."""

    dpi: int = 120
    font_size: float = 9.0
    #: diverging matplotlib colour map of the SHAP maps (checked by the plots stage)
    cmap: str = "coolwarm"
    #: size of a one-row figure; multi-row figures are taller in proportion
    width_in: float = 10.0
    height_in: float = 6.0
    #: trace drawn in the single-trace figure; None = the first example of the selection
    example_trace: str | None = None

    def __post_init__(self) -> None:
        check(self.dpi > 0, "plots.dpi", "must be > 0")
        check(self.font_size > 0, "plots.font_size", "must be > 0")
        check(self.width_in > 0 and self.height_in > 0, "plots.width_in", "must be > 0")
        check(
            self.example_trace is None or bool(self.example_trace.strip()),
            "plots.example_trace",
            "give a trace_name or null, not an empty string",
        )


@dataclass(frozen=True)
class StationsConfig:
    """Many stations through the same DAG (``docs/stations.md``): a stage set per station,
    network-wide models and the transfer matrix."""

    #: station codes under data/raw, one stage set each (dvc.yaml foreach); empty = off
    codes: tuple[str, ...] = ()
    #: network-wide models, one per split: event (no event in both train and test) and/or
    #: trace (the per-image split, which lets an event into both through two stations)
    network_splits: tuple[str, ...] = ()
    #: traces explained per station and class: the most confidently correct test traces
    explain_per_class: int = 2

    def __post_init__(self) -> None:
        check(
            len(set(self.codes)) == len(self.codes),
            "stations.codes",
            f"lists a station twice: {list(self.codes)}",
        )
        check(all(self.codes), "stations.codes", "station codes must not be empty")
        unknown = sorted(set(self.network_splits) - {"event", "trace"})
        check(not unknown, "stations.network_splits", f"{unknown}: expected event and/or trace")
        check(
            len(set(self.network_splits)) == len(self.network_splits),
            "stations.network_splits",
            "lists a split twice",
        )
        check(
            not self.network_splits or self.codes,
            "stations.network_splits",
            "needs stations.codes: a network model is trained on the listed stations",
        )
        check(self.explain_per_class >= 1, "stations.explain_per_class", "must be >= 1")


@dataclass(frozen=True)
class Params:
    """The whole of ``params.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    spectrogram: SpectrogramConfig = field(default_factory=SpectrogramConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    shap: ShapConfig = field(default_factory=ShapConfig)
    explainers: ExplainersConfig = field(default_factory=ExplainersConfig)
    plots: PlotsConfig = field(default_factory=PlotsConfig)
    stations: StationsConfig = field(default_factory=StationsConfig)


# --------------------------------------------------------------------------------------
# building and loading
# --------------------------------------------------------------------------------------


def parse_params(mapping: Mapping[str, Any]) -> Params:
    """Validate a whole ``params.yaml`` mapping."""
    return build(Params, mapping)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Load and validate ``params.yaml`` (every section, so any typo fails before work)."""
    try:
        return parse_params(load_yaml(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def resolve_workers(workers: str | int, cpu_count: int | None = None) -> int:
    """``"auto"`` → all cores (at least 1); an integer is taken as it is."""
    if workers == "auto":
        import os

        return max(1, cpu_count if cpu_count is not None else (os.cpu_count() or 1))
    return int(workers)
