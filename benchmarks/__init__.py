"""Side-by-side benchmarks: quakeshap against a re-implementation of the study's code.

Each ``bench_<stage>.py`` times quakeshap and the study's way of doing the same work, in the
same run, on the same data, and writes ``benchmarks/results/<name>.json``; ``run_all`` runs
them all (``make bench``). The study's way lives in :mod:`benchmarks.reference`, written from
the method in docs/method.md, never in the library; ``tests/test_benchmarks.py`` checks that
it computes the same values as quakeshap, so that every ratio compares the same work. Each
result says what resources each side had (threads, worker processes): where quakeshap uses
every core and the study's way one, the result gives the one-thread ratio as well.

Run one from the repository root::

    python -m benchmarks.bench_spectrograms            # full size
    python -m benchmarks.bench_spectrograms --smoke    # seconds: what the tests run
"""
