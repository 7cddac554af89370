"""What the study's own released SHAP maps say, as numbers to set beside a run's.

The study released its per-trace SHAP maps (``shap_tensors.zip`` in its repository,
``docs/method.md`` §8): 300 correctly classified test traces per class, the SHAP values of
the top class, float64 ``(1, 33, 96, 3)`` each. Reduced the way :mod:`quakeshap.explain`
reduces a run's maps (``|SHAP|`` summed over E, N, Z; a mean over traces of each map's
fractions), they give the fractions below (``docs/method.md`` §8). They are facts about the
study's run on the real record, not about the demo: on the demo they show how far the
demo's physics is from the real sequence, on a ``data.source: zenodo`` run whether this
run reproduces the study.

The keys match those of ``reports/metrics/explain.json``: ``band_fraction`` over the 10 Hz
bands of :data:`quakeshap.explain.maps.BANDS_HZ`, ``time_fraction`` over the fixed windows
of :data:`TIME_WINDOWS_S`, and ``mean_map_peak`` (the pixel where the class-mean ``|SHAP|``
map, summed over channels, is largest).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: the fixed time windows of ``time_fraction``, seconds from the trace start: before the P
#: arrival (5 s), the first 1.5 s after it, and the rest of the 13 s image
TIME_WINDOWS_S: tuple[tuple[str, float, float], ...] = (
    ("before_5s", 0.0, 5.0),
    ("5_to_6.5s", 5.0, 6.5),
    ("after_6.5s", 6.5, float("inf")),
)


def _frozen(values: Mapping[str, Mapping[str, float]]) -> Mapping[str, Mapping[str, float]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in values.items()})


#: fraction of ``|SHAP|`` in each 10 Hz band, per class (foreshocks = pre, aftershocks = post)
BAND_FRACTION = _frozen(
    {
        "pre": {"0_10hz": 0.144, "10_20hz": 0.164, "20_30hz": 0.301, "30_40hz": 0.211,
                "40_50hz": 0.182},
        "post": {"0_10hz": 0.091, "10_20hz": 0.137, "20_30hz": 0.297, "30_40hz": 0.321,
                 "40_50hz": 0.154},
    }
)  # fmt: skip

#: each band's share of the study's image rows (what a uniform map would give)
BAND_SHARE: Mapping[str, float] = MappingProxyType(
    {"0_10hz": 0.21, "10_20hz": 0.18, "20_30hz": 0.21, "30_40hz": 0.18, "40_50hz": 0.21}
)

#: fraction of ``|SHAP|`` in each window of :data:`TIME_WINDOWS_S`, per class
TIME_FRACTION = _frozen(
    {
        "pre": {"before_5s": 0.29, "5_to_6.5s": 0.21, "after_6.5s": 0.51},
        "post": {"before_5s": 0.24, "5_to_6.5s": 0.20, "after_6.5s": 0.56},
    }
)

#: where the class-mean map peaks: frequency (Hz) and time (s from the trace start)
MEAN_MAP_PEAK = _frozen(
    {
        "pre": {"frequency_hz": 45.3, "time_s": 6.4},
        "post": {"frequency_hz": 35.9, "time_s": 5.4},
    }
)

#: the study's test accuracy on the real record (1165 traces, 4 misclassified; its
#: co-located control: 0.9976 on 1265), ``docs/method.md`` §3 and §8
ACCURACY = 0.9966

#: what the report sets beside a run's metrics of the same name
BY_METRIC: Mapping[str, Mapping[str, Mapping[str, float]]] = MappingProxyType(
    {
        "band_fraction": BAND_FRACTION,
        "time_fraction": TIME_FRACTION,
        "mean_map_peak": MEAN_MAP_PEAK,
    }
)
