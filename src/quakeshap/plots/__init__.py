"""The study's figures (``docs/method.md`` §6), drawn from the pipeline's outputs.

One module per job:

* :mod:`~quakeshap.plots.inputs` reads everything the ``plots`` stage needs, through each
  artefact's owner in :mod:`quakeshap.artifacts`, and checks that it fits together
  (:func:`load_inputs`).
* :mod:`~quakeshap.plots.tables`: the small tables behind the figures (per-trace SHAP
  ranges, the arrivals histogrammed under the mean maps).
* :mod:`~quakeshap.plots.maps` and :mod:`~quakeshap.plots.charts`: the drawing functions
  (``plot_*``), on time–frequency axes and as charts. They take a matplotlib ``Axes`` (or a
  ``Figure`` for the multi-panel ones) and arrays or tables, draw, and return: they never
  save, never read files and never touch pyplot's global state, so a figure can be tested
  or re-used in a notebook as it is.
* :mod:`~quakeshap.plots.figures`: the report's figures, each with its stable file name and
  a one-line caption (:func:`iter_figures`), and the figure style.

The names below are the package's public interface: ``from quakeshap import plots``, then
``plots.load_inputs(...)``, ``plots.iter_figures(...)``.
"""

from quakeshap.plots.charts import (
    CLASS_COLORS,
    plot_confusion_matrix,
    plot_dataset_overview,
    plot_event_map,
    plot_events_per_day,
    plot_explainer_fractions,
    plot_shap_distribution,
    plot_training_curves,
)
from quakeshap.plots.figures import (
    FigureSpec,
    explained_title,
    figure_filename,
    iter_figures,
    resolve_cmap,
    style,
)
from quakeshap.plots.inputs import (
    InputPaths,
    PlotInputError,
    PlotInputs,
    class_name,
    load_inputs,
    traces_to_draw,
)
from quakeshap.plots.maps import (
    cell_extent,
    plot_explained_trace,
    plot_mean_shap,
    plot_shap_map,
    plot_spectrogram,
    plot_trace,
    plot_waveforms,
    plot_weekly_shap,
    shap_rgba,
    symmetric_limit,
)
from quakeshap.plots.tables import aligned_arrivals, class_mean_members, shap_trace_stats

__all__ = [
    "CLASS_COLORS",
    "FigureSpec",
    "InputPaths",
    "PlotInputError",
    "PlotInputs",
    "aligned_arrivals",
    "cell_extent",
    "class_mean_members",
    "class_name",
    "explained_title",
    "figure_filename",
    "iter_figures",
    "load_inputs",
    "plot_confusion_matrix",
    "plot_dataset_overview",
    "plot_event_map",
    "plot_events_per_day",
    "plot_explained_trace",
    "plot_explainer_fractions",
    "plot_mean_shap",
    "plot_shap_distribution",
    "plot_shap_map",
    "plot_spectrogram",
    "plot_trace",
    "plot_training_curves",
    "plot_waveforms",
    "plot_weekly_shap",
    "resolve_cmap",
    "shap_rgba",
    "shap_trace_stats",
    "style",
    "symmetric_limit",
    "traces_to_draw",
]
