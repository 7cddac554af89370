"""A restricted unpickler for the record's similar-traces table.

The record ships its table of co-located traces (``dataframe_<STA>_SelectedSimilarTraces.csv``)
as a pandas *pickle* downloaded from the internet. :func:`load_similar_traces` reads it
with an unpickler that can build nothing but the few pandas and numpy objects a DataFrame
of numbers and strings is made of, so a crafted file cannot run code.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quakeshap.artifacts.raw import SIMILAR_COLUMNS, WaveformError

#: The globals a pickled DataFrame of plain values refers to (pandas 3, numpy 2, any
#: protocol): containers, numbers, text, times, categories, nullable numbers. Each is a
#: data constructor; none can reach the file system, a shell or ``eval``.
_PICKLE_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [
        ("pandas", "DataFrame"),
        ("pandas", "Index"),
        ("pandas", "RangeIndex"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
        ("pandas", "StringDtype"),
        ("pandas.arrays", "StringArray"),
        ("pandas.arrays", "DatetimeArray"),
        ("pandas.arrays", "TimedeltaArray"),
        ("pandas", "DatetimeTZDtype"),
        ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
        ("pandas", "Categorical"),
        ("pandas", "CategoricalDtype"),
        ("pandas.arrays", "IntegerArray"),
        ("pandas.arrays", "FloatingArray"),
        ("pandas.arrays", "BooleanArray"),
        ("pandas", "Int64Dtype"),
        ("pandas", "Int32Dtype"),
        ("pandas", "Float64Dtype"),
        ("pandas", "BooleanDtype"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("builtins", "slice"),
        ("_codecs", "encode"),
    ]
)

#: where pandas 1-2 and numpy 1 kept the same objects (older pickles name these)
_PICKLE_RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("pandas.core.frame", "DataFrame"): ("pandas", "DataFrame"),
    ("pandas.core.indexes.base", "Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "UInt64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"): ("pandas", "RangeIndex"),
    ("pandas.core.arrays.string_", "StringDtype"): ("pandas", "StringDtype"),
    ("pandas.core.arrays.string_", "StringArray"): ("pandas.arrays", "StringArray"),
    ("pandas.core.arrays.datetimes", "DatetimeArray"): ("pandas.arrays", "DatetimeArray"),
    ("pandas.core.arrays.timedeltas", "TimedeltaArray"): ("pandas.arrays", "TimedeltaArray"),
    ("pandas.core.dtypes.dtypes", "DatetimeTZDtype"): ("pandas", "DatetimeTZDtype"),
    ("pandas.core.arrays.categorical", "Categorical"): ("pandas", "Categorical"),
    ("pandas.core.dtypes.dtypes", "CategoricalDtype"): ("pandas", "CategoricalDtype"),
    ("pandas.core.arrays.integer", "IntegerArray"): ("pandas.arrays", "IntegerArray"),
    ("pandas.core.arrays.integer", "Int64Dtype"): ("pandas", "Int64Dtype"),
    ("pandas.core.arrays.integer", "Int32Dtype"): ("pandas", "Int32Dtype"),
    ("pandas.core.arrays.floating", "FloatingArray"): ("pandas.arrays", "FloatingArray"),
    ("pandas.core.arrays.floating", "Float64Dtype"): ("pandas", "Float64Dtype"),
    ("pandas.core.arrays.boolean", "BooleanArray"): ("pandas.arrays", "BooleanArray"),
    ("pandas.core.arrays.boolean", "BooleanDtype"): ("pandas", "BooleanDtype"),
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("__builtin__", "slice"): ("builtins", "slice"),
}


class _Refused(pickle.UnpicklingError):
    """The pickle asks for an object outside :data:`_PICKLE_ALLOWED`."""


class _DataFrameUnpickler(pickle.Unpickler):
    """An unpickler that can only build a pandas DataFrame of plain values."""

    def find_class(self, module: str, name: str) -> Any:
        target = _PICKLE_RENAMED.get((module, name), (module, name))
        if target not in _PICKLE_ALLOWED:
            raise _Refused(f"refusing to load {module}.{name}: not part of a DataFrame of values")
        return getattr(importlib.import_module(target[0]), target[1])


def load_similar_traces(path: str | Path) -> pd.DataFrame:
    """Read the record's similar-traces table (a pandas pickle) without running its code.

    Returns
    -------
    pandas.DataFrame
        Columns ``trace_name`` (text) and ``associato_ev`` (int64), one row per trace.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WaveformError(f"{path}: cannot read the similar-traces table ({exc})") from None
    try:
        table = _DataFrameUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise WaveformError(
            f"{path}: refused to load the similar-traces pickle ({exc}); the file is not the "
            "record's table: delete data/raw and run `dvc repro download` again"
        ) from None
    except Exception as exc:  # any other failure means a damaged or foreign file
        raise WaveformError(
            f"{path}: not a readable pandas pickle ({type(exc).__name__}: {exc}); "
            "delete data/raw and run `dvc repro download` again"
        ) from None
    if not isinstance(table, pd.DataFrame):
        raise WaveformError(f"{path}: holds a {type(table).__name__}, expected a DataFrame")
    if "trace_name" not in table.columns and table.index.name == "trace_name":
        table = table.reset_index()
    missing = [c for c in SIMILAR_COLUMNS if c not in table.columns]
    if missing:
        raise WaveformError(
            f"{path}: similar-traces table lacks column(s) {missing} (has {list(table.columns)})"
        )
    table = table.loc[:, list(SIMILAR_COLUMNS)].copy()
    ids = pd.to_numeric(table["associato_ev"], errors="coerce")
    bad = ids.isna() | (ids != np.round(ids)) | (ids < 0)
    if bad.any():
        raise WaveformError(
            f"{path}: associato_ev must be non-negative integers, e.g. "
            f"{table.loc[bad, 'associato_ev'].iloc[0]!r} for {table.loc[bad, 'trace_name'].iloc[0]}"
        )
    table["trace_name"] = table["trace_name"].astype(str)
    table["associato_ev"] = ids.astype(np.int64)
    table = table.drop_duplicates()
    conflicting = table["trace_name"].duplicated(keep=False)
    if conflicting.any():
        raise WaveformError(
            f"{path}: trace(s) assigned to two groups, e.g. "
            f"{list(dict.fromkeys(table.loc[conflicting, 'trace_name']))[:5]}"
        )
    return table.reset_index(drop=True)
