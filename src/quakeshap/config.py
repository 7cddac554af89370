"""``params.yaml`` as frozen dataclasses.

Every section of ``params.yaml`` maps to one frozen dataclass, built with
:func:`build` so that an unknown, missing or mistyped key fails loudly, with its dotted
name, before a stage does any work. ``params.yaml`` is the demo configuration;
``profiles/study.yaml`` holds the study's values for the same keys. The defaults of the
dataclasses are ``params.yaml``'s values (``tests/test_config.py`` checks it): two sets of
values, the demo and the study, not three.

Stages read only the sections they declare in ``dvc.yaml``::

    params = load_params("params.yaml")
    cfg = params.train            # a TrainConfig
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import pandas as pd
import yaml

from quakeshap.record import MAINSHOCK_ORIGIN_UTC, parse_times

T = TypeVar("T")

#: the project's parameter file (the demo configuration)
PARAMS_FILE = Path("params.yaml")


class ConfigError(ValueError):
    """A parameter is unknown, missing, mistyped or out of range."""


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
        _check(
            self.record_id.isascii() and self.record_id.isdigit(),
            "data.zenodo.record_id",
            f"{self.record_id!r} is not a Zenodo record number (e.g. '15683047')",
        )
        _check(
            self.base_url.startswith(("https://", "http://")),
            "data.zenodo.base_url",
            f"{self.base_url!r} must start with https:// (or http://)",
        )
        _check(self.timeout_s > 0, "data.zenodo.timeout_s", "must be > 0")
        _check(self.retries >= 0, "data.zenodo.retries", "must be >= 0")
        _check(bool(self.archive_glob), "data.zenodo.archive_glob", "must not be empty")


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

    def __post_init__(self) -> None:
        _check(self.n_pre > 0 and self.n_post > 0, "data.demo.n_pre/n_post", "must be > 0")
        _check(self.q_pre > 0 and self.q_post > 0, "data.demo.q_pre/q_post", "must be > 0")
        _check(self.q_log_std >= 0, "data.demo.q_log_std", "must be >= 0")
        _check(self.b_value > 0, "data.demo.b_value", "must be > 0")
        _check(self.stress_drop_mpa > 0, "data.demo.stress_drop_mpa", "must be > 0")
        _check(0 < self.vs_km_s < self.vp_km_s, "data.demo.vs_km_s", "must be in (0, vp_km_s)")
        _check(self.kappa_s >= 0, "data.demo.kappa_s", "must be >= 0")
        _check(self.n_colocated_groups >= 0, "data.demo.n_colocated_groups", "must be >= 0")
        for name in ("n_missing_channels", "n_nan_traces", "n_missing_in_hdf5"):
            _check(getattr(self, name) >= 0, f"data.demo.{name}", "must be >= 0")
        # every ISO week holds one anchor event (11 pre weeks with 08-20, 8 post weeks);
        # groups take up to 4 events per class; defects need traces of their own
        defects = self.n_missing_channels + self.n_nan_traces + self.n_missing_in_hdf5
        need = 11 + 4 * self.n_colocated_groups + defects
        _check(self.n_pre >= need, "data.demo.n_pre", f"must be >= {need} for these settings")
        _check(self.n_post >= need, "data.demo.n_post", f"must be >= {need} for these settings")
        _check(
            self.magnitude_min < self.magnitude_max,
            "data.demo.magnitude_min",
            "must be below data.demo.magnitude_max",
        )


@dataclass(frozen=True)
class DataConfig:
    source: Literal["demo", "zenodo"] = "demo"
    zenodo: ZenodoConfig = field(default_factory=ZenodoConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


# --------------------------------------------------------------------------------------
# task: what the network learns to tell apart
# --------------------------------------------------------------------------------------

#: ``task.boundary_time``'s default: the Norcia mainshock (``docs/method.md`` §1)
MAINSHOCK_ISO = MAINSHOCK_ORIGIN_UTC.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TaskConfig:
    """The classes: traces before (``pre``) and after (``post``) ``boundary_time``."""

    #: ISO 8601 time, UTC unless it names its zone; a trace whose ``source_origin_time`` is
    #: earlier is ``pre``, any other ``post``. The default is the Norcia mainshock; another
    #: time is the wrong-boundary control (checked against the catalogue's span on reading)
    boundary_time: str = MAINSHOCK_ISO

    def __post_init__(self) -> None:
        parsed = parse_times(pd.Series([self.boundary_time]))
        _check(
            not parsed.isna().iloc[0],
            "task.boundary_time",
            f"{self.boundary_time!r} is not an ISO 8601 time such as {MAINSHOCK_ISO!r}",
        )

    @property
    def boundary_utc(self) -> pd.Timestamp:
        """``boundary_time`` as a UTC timestamp."""
        return parse_times(pd.Series([self.boundary_time])).iloc[0]


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
        _check(0 <= self.taper_fraction <= 0.5, "spectrogram.preprocess.taper_fraction", "0..0.5")
        for name in ("highpass_hz", "lowpass_hz"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"spectrogram.preprocess.{name}", "must be > 0")
        if self.highpass_hz is not None and self.lowpass_hz is not None:
            _check(
                self.highpass_hz < self.lowpass_hz,
                "spectrogram.preprocess.highpass_hz",
                "must be below lowpass_hz",
            )
        _check(self.filter_corners > 0, "spectrogram.preprocess.filter_corners", "must be > 0")

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
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        _check(len(self.stations) > 0, "spectrogram.stations", "name at least one station")
        _check(0 <= self.noverlap < self.nperseg, "spectrogram.noverlap", "0 <= noverlap < nperseg")
        _check(self.nperseg <= self.n_samples, "spectrogram.nperseg", "must be <= n_samples")
        _check(self.chunk_size > 0, "spectrogram.chunk_size", "must be > 0")
        _check(
            self.workers == "auto" or (isinstance(self.workers, int) and self.workers > 0),
            "spectrogram.workers",
            "must be 'auto' or a positive integer",
        )
        _check(0 <= self.max_rejected_fraction <= 1, "spectrogram.max_rejected_fraction", "0..1")
        _check(self.sampling_rate_hz > 0, "spectrogram.sampling_rate_hz", "must be > 0")
        _check(self.log_floor > 0, "spectrogram.log_floor", "must be > 0 (log10 of zero power)")
        _check(all(self.stations), "spectrogram.stations", "station codes must not be empty")
        nyquist = self.sampling_rate_hz / 2
        for name in ("highpass_hz", "lowpass_hz"):
            corner = getattr(self.preprocess, name)
            _check(
                corner is None or corner < nyquist,
                f"spectrogram.preprocess.{name}",
                f"{corner} Hz must be below the Nyquist frequency {nyquist} Hz",
            )


@dataclass(frozen=True)
class SplitConfig:
    """Train/test split: ``trace`` = the study's random 80/20 (seed 42)."""

    by: Literal["trace", "event", "time"] = "trace"
    test_fraction: float = 0.2
    seed: int = 42
    #: the matched-classes control: drop traces (seeded) until pre and post have the same
    #: joint histogram of magnitude and S-P time, before the split; none = keep them all
    match: Literal["none", "magnitude_distance"] = "none"
    #: bin widths of that histogram: magnitude units, seconds of S-P time
    match_bins: tuple[float, ...] = (0.2, 0.5)

    def __post_init__(self) -> None:
        _check(0 < self.test_fraction < 1, "split.test_fraction", "must be in (0, 1)")
        _check(
            len(self.match_bins) == 2 and all(w > 0 for w in self.match_bins),
            "split.match_bins",
            f"{list(self.match_bins)} must be two widths > 0: [magnitude, S-P seconds]",
        )


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
        _check(self.n_folds >= 2, "train.n_folds", "must be >= 2")
        _check(self.lr > 0, "train.lr", "must be > 0")
        _check(self.batch_size > 0, "train.batch_size", "must be > 0")
        _check(self.max_epochs > 0, "train.max_epochs", "must be > 0")
        _check(self.patience > 0, "train.patience", "must be > 0")
        _check(0 <= self.dropout < 1, "train.dropout", "must be in [0, 1)")
        _check(self.num_threads is None or self.num_threads > 0, "train.num_threads", "must be > 0")


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
        _check(self.per_class >= 0, "select.per_class", "must be >= 0")
        _check(self.per_week >= 0, "select.per_week", "must be >= 0")
        _check(self.week_min <= self.week_max, "select.week_min", "must be <= week_max")
        _check(
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
        _check(self.n_steps >= 1, "shap.faithfulness.n_steps", "must be >= 1")
        _check(self.random_orders >= 1, "shap.faithfulness.random_orders", "must be >= 1")
        _check(
            self.randomisation_per_class >= 0,
            "shap.faithfulness.randomisation_per_class",
            "must be >= 0",
        )
        _check(
            self.randomisation_max_evals is None or self.randomisation_max_evals > 0,
            "shap.faithfulness.randomisation_max_evals",
            "must be > 0 (or null = shap.max_evals)",
        )


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
    device: Literal["auto", "cuda", "cpu"] = "auto"
    seed: int = 0
    #: tolerated |sum(SHAP) - (f(x) - E[f(x)])|, in logits, for partition
    additivity_tolerance: float = 1e-3
    #: deletion/insertion curves and the model-randomisation check of the maps
    faithfulness: FaithfulnessConfig = field(default_factory=FaithfulnessConfig)

    def __post_init__(self) -> None:
        _check(self.max_evals > 0, "shap.max_evals", "must be > 0")
        _check(self.batch_size > 0, "shap.batch_size", "must be > 0")
        _check(self.background > 0, "shap.background", "must be > 0")
        _check(
            self.workers == "auto" or (isinstance(self.workers, int) and self.workers > 0),
            "shap.workers",
            "must be 'auto' or a positive integer",
        )
        _check(self.additivity_tolerance > 0, "shap.additivity_tolerance", "must be > 0")


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
        _check(self.per_class > 0, "explainers.per_class", "must be > 0")
        _check(self.max_evals > 0, "explainers.max_evals", "must be > 0")
        _check(0 < self.truth_threshold <= 1, "explainers.truth_threshold", "must be in (0, 1]")
        _check(len(self.configurations) > 0, "explainers.configurations", "name at least one")
        twice = sorted({c for c in self.configurations if self.configurations.count(c) > 1})
        _check(not twice, "explainers.configurations", f"{twice} listed more than once")
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
            _check(
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
        _check(self.dpi > 0, "plots.dpi", "must be > 0")
        _check(self.font_size > 0, "plots.font_size", "must be > 0")
        _check(self.width_in > 0 and self.height_in > 0, "plots.width_in", "must be > 0")
        _check(
            self.example_trace is None or bool(self.example_trace.strip()),
            "plots.example_trace",
            "give a trace_name or null, not an empty string",
        )


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


# --------------------------------------------------------------------------------------
# building and loading
# --------------------------------------------------------------------------------------


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"parameter {key}: {message}")


def _type_ok(value: Any, tp: Any, strict: bool = False) -> tuple[bool, Any]:
    """Whether ``value`` fits annotation ``tp``; returns (ok, converted value).

    ``strict`` refuses the one lenient conversion (a number where text is expected), so that
    in a union such as ``str | int`` the number matches ``int`` first.
    """
    origin = get_origin(tp)
    if tp is Any:
        return True, value
    if tp is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for strict_pass in (True, False):
            for arm in get_args(tp):
                ok, converted = _type_ok(value, arm, strict=strict_pass)
                if ok:
                    return True, converted
        return False, value
    if origin is Literal:
        return value in get_args(tp), value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        (item_tp, _ellipsis) = get_args(tp)
        converted = []
        for item in value:
            ok, item = _type_ok(item, item_tp)
            if not ok:
                return False, value
            converted.append(item)
        return True, tuple(converted)
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        # YAML reads an unquoted record id as an int: accept numbers where text is expected
        if not strict and isinstance(value, int | float) and not isinstance(value, bool):
            return True, str(value)
        return isinstance(value, str), value
    return isinstance(value, tp), value


def build(cls: type[T], mapping: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``mapping``, failing on unknown, missing or mistyped keys.

    Parameters
    ----------
    cls
        A frozen dataclass of this module.
    mapping
        The section of ``params.yaml``; every field must be present (the file is the
        single source of truth, defaults in code only document the demo values).
    where
        Dotted prefix for error messages, e.g. ``"train"``.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            f"parameter section {where or '<root>'}: expected a mapping, got {mapping!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        hints_txt = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hints_txt.append(
                f"{_join(where, key)}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        raise ConfigError(
            "unknown parameter(s): "
            + ", ".join(hints_txt)
            + f"; known keys in {where or 'root'}: "
            + ", ".join(fields)
        )
    missing = [name for name in fields if name not in mapping]
    if missing:
        raise ConfigError(
            "missing parameter(s): "
            + ", ".join(_join(where, m) for m in missing)
            + " (see params.yaml for the full set)"
        )
    kwargs: dict[str, Any] = {}
    for name in fields:
        tp = hints[name]
        value = mapping[name]
        key = _join(where, name)
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, value, key)
            continue
        ok, converted = _type_ok(value, tp)
        if not ok:
            raise ConfigError(f"parameter {key}: {value!r} is not a valid {_describe(tp)}")
        kwargs[name] = converted
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "choice among " + ", ".join(repr(a) for a in get_args(tp))
    text = re.sub(r"typing\.", "", str(tp))
    return getattr(tp, "__name__", text)


def parse_params(mapping: Mapping[str, Any]) -> Params:
    """Validate a whole ``params.yaml`` mapping."""
    return build(Params, mapping)


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats.

    PyYAML follows YAML 1.1, where ``1e-05`` (no dot) is a string; DVC writes ``-S`` values
    with ruamel (YAML 1.2), where it is a float. Reading both the same way keeps
    ``dvc exp run -S train.lr=1e-5`` working.
    """


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file, with a clear error for a missing or malformed one."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read parameter file {path}: {exc.strerror}") from exc
    try:
        data = yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Load and validate ``params.yaml`` (every section, so any typo fails before work)."""
    try:
        return parse_params(load_yaml(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def to_dict(params: Any) -> dict[str, Any]:
    """A dataclass back to plain YAML-able data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return plain(params)


def resolve_workers(workers: str | int, cpu_count: int | None = None) -> int:
    """``"auto"`` → all cores (at least 1); an integer is taken as it is."""
    if workers == "auto":
        import os

        return max(1, cpu_count if cpu_count is not None else (os.cpu_count() or 1))
    return int(workers)
