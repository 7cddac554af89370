"""The study's way of doing each step, re-implemented from docs/method.md.

These modules are benchmark baselines, not library code: they do what the study's notebooks
did, the way they did it (one trace at a time, one PNG per trace, a DataFrame look-up per
training sample, one SHAP explanation at a time in one process), so that quakeshap's speed
can be compared with it on the same machine and data. ``tests/test_benchmarks.py`` checks
that they compute the same values as quakeshap.
"""
