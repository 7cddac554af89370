"""Side-by-side benchmarks: quakeshap against a re-implementation of the study's code.

Each ``bench_<stage>.py`` times quakeshap and the study's way of doing the same work, in the
same run, on the same data, and writes ``benchmarks/results/<name>.json``; ``run_all`` runs
them all (``make bench``). The study's way lives in :mod:`benchmarks.reference`, written from
the method in SPEC.md, never in the library; ``tests/test_benchmarks.py`` checks that it
computes the same values as quakeshap, so that every ratio compares like with like.

Run one from the repository root::

    python -m benchmarks.bench_spectrograms            # full size
    python -m benchmarks.bench_spectrograms --smoke    # seconds: what the tests run
"""
