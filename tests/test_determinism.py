"""The data stages' bytes do not depend on the CPU: :mod:`quakeshap.detmath` and the demo.

NumPy runs a float64 ``exp``, ``log``, ``sin``, ``power``, ... through a SIMD kernel chosen
at run time from the CPU's features (AVX-512 machines get SVML kernels), and otherwise
through the C library's ``libm``, which glibc itself resolves to an FMA or a non-FMA
variant by CPU. The variants differ in the last bit of a fraction of a percent of the
results; the demo writes float64 waveforms, so such a bit used to change ``data/raw``'s
bytes (and the DVC cache key of every stage after it) from one machine to another.

What these tests can and cannot emulate
---------------------------------------
They rerun the same computation in subprocesses under the switches that select another
path on the machine at hand, and require identical bytes:

* ``NPY_DISABLE_CPU_FEATURES`` = every dispatchable NumPy target this CPU has (``X86_V3``
  on an AVX2 machine; also ``X86_V4``/``AVX512_*`` on an AVX-512 one): NumPy falls back to
  its baseline kernels.
* ``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA`` (glibc >= 2.33 spelling): glibc's
  ``libm`` resolves ``exp``, ``log``, ``pow``, ``sin``, ... to its non-FMA variants, which
  round differently (:func:`test_the_cpu_variants_change_numpy_results` shows that they
  do here, and skips where neither switch changes anything).

They cannot create a path the CPU lacks: on a machine without AVX-512 (like the one these
tests were written on) NumPy's AVX-512/SVML kernels, the ones that made the committed
``data/raw`` differ from a fresh clone's, never run. The protection against those is by
construction, and tested statically: the demo calls no transcendental function of NumPy or
``math`` and no ``**`` (:func:`test_demo_uses_no_cpu_dependent_function`); it uses
:mod:`quakeshap.detmath`, built only from IEEE-exact operations
(:func:`test_detmath_bits_do_not_depend_on_the_cpu_path`). What remains outside that
construction: NumPy's FFT (not dispatched at run time; its twiddle factors come from
``libm``'s ``sincos``, within 0.015 ulp of correct rounding for the demo's length) and
the random generator's rare ``exp``/``log`` calls (tail and wedge of the ziggurat, whose
accept/reject decision a last-bit change flips with probability ~1e-16 per draw).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

import quakeshap
from quakeshap import detmath

SRC = Path(quakeshap.__file__).resolve().parent.parent
#: every module of the demo generator
DEMO_SOURCES = sorted((Path(quakeshap.__file__).resolve().parent / "demo").glob("*.py"))


def _numpy_dispatch_targets() -> list[str]:
    """NumPy's run-time dispatch targets that this CPU supports (empty: none)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # a NumPy without run-time dispatch (or another layout)
        return []
    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def _variants() -> dict[str, dict[str, str]]:
    variants: dict[str, dict[str, str]] = {"default": {}}
    targets = _numpy_dispatch_targets()
    if targets:
        variants["numpy-baseline"] = {"NPY_DISABLE_CPU_FEATURES": " ".join(targets)}
    variants["libm-no-fma"] = {"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA"}
    variants["both"] = {**variants.get("numpy-baseline", {}), **variants["libm-no-fma"]}
    return variants


VARIANTS = _variants()


def _run(code: str, variant: dict[str, str], *args: str) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES", "GLIBC_TUNABLES")
    }
    env.update(variant)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --------------------------------------------------------------------------------------
# detmath: accuracy
# --------------------------------------------------------------------------------------

RNG = np.random.default_rng(20161030)
N = 20_000

#: (name, detmath function, NumPy reference, sample arrays): the demo's ranges and wider
UNARY = [
    ("exp", detmath.exp, np.exp, [RNG.uniform(-700, 700, N), RNG.uniform(-1, 1, N)]),
    ("log", detmath.log, np.log, [10 ** RNG.uniform(-300, 300, N), RNG.uniform(0.5, 2, N)]),
    ("log10", detmath.log10, np.log10, [10 ** RNG.uniform(-300, 300, N), RNG.uniform(0.9, 1.1, N)]),
    ("exp10", detmath.exp10, lambda x: np.power(10.0, x), [RNG.uniform(-300, 300, N)]),
    ("sin", detmath.sin, np.sin, [RNG.uniform(-20, 20, N), RNG.uniform(-1e5, 1e5, N)]),
    ("cos", detmath.cos, np.cos, [RNG.uniform(-20, 20, N), RNG.uniform(-1e5, 1e5, N)]),
    ("arctan", detmath.arctan, np.arctan, [RNG.uniform(-5, 5, N), 10 ** RNG.uniform(-9, 9, N)]),
    ("arcsin", detmath.arcsin, np.arcsin, [RNG.uniform(-1, 1, N)]),
    ("cbrt", detmath.cbrt, np.cbrt, [10 ** RNG.uniform(-300, 300, N), RNG.uniform(-10, 10, N)]),
]


@pytest.mark.parametrize(("name", "func", "reference", "samples"), UNARY, ids=[u[0] for u in UNARY])
def test_functions_match_numpy(name, func, reference, samples) -> None:
    for x in samples:
        np.testing.assert_allclose(func(x), reference(x), rtol=1e-14, atol=0, err_msg=name)


def test_binary_functions_match_numpy() -> None:
    y, x = RNG.normal(0, 10, N), RNG.normal(0, 10, N)
    np.testing.assert_allclose(detmath.arctan2(y, x), np.arctan2(y, x), rtol=1e-14, atol=0)
    base, expo = RNG.uniform(1e-12, 50, N), RNG.uniform(-3, 3, N)
    np.testing.assert_allclose(detmath.power(base, expo), np.power(base, expo), rtol=1e-14)
    np.testing.assert_allclose(detmath.hypot(y, x), np.hypot(y, x), rtol=1e-15)


def test_functions_are_within_about_an_ulp_of_the_exact_value() -> None:
    """Against mpmath at 120 bits, a few hundred points each: at most 3 ulp."""
    mpmath.mp.prec = 120
    x = RNG.uniform(-20, 20, 300)
    pos = 10 ** RNG.uniform(-20, 20, 300)
    cases = [
        (detmath.exp, mpmath.exp, x),
        (detmath.log, mpmath.log, pos),
        (detmath.log10, mpmath.log10, pos),
        (detmath.exp10, lambda v: mpmath.power(10, v), x),
        (detmath.sin, mpmath.sin, x),
        (detmath.cos, mpmath.cos, x),
        (detmath.arctan, mpmath.atan, x),
        (detmath.arcsin, mpmath.asin, x / 20),
        (detmath.cbrt, mpmath.cbrt, pos),
    ]
    for func, exact, points in cases:
        got = func(points)
        for value, point in zip(got, points, strict=True):
            truth = exact(mpmath.mpf(float(point)))
            ulp = np.spacing(abs(float(truth)))
            assert abs(mpmath.mpf(float(value)) - truth) <= 3 * ulp, (func.__name__, point)


def _significant_bits(value: float) -> int:
    mantissa = int(mpmath.mpf(value) * 2**1100)
    return mantissa.bit_length() - (mantissa & -mantissa).bit_length() + 1


def test_constants_are_the_exact_values_split_as_documented() -> None:
    """Each high part has the documented number of significant bits (so that small
    integers times it are exact) and each low part is the correctly rounded rest."""
    mpmath.mp.prec = 300
    pi_2 = mpmath.pi / 2
    splits = [
        (detmath.LN2_HI, detmath.LN2_LO, mpmath.log(2), 32),
        (detmath.LN10_HI, detmath.LN10_LO, mpmath.log(10), 53),
        (detmath.LOG10_2HI, detmath.LOG10_2LO, mpmath.log10(2), 39),
        (detmath.PIO2_HI, detmath.PIO2_LO, pi_2, 53),
        (detmath.PIO2_2, detmath.PIO2_2T, pi_2 - detmath.PIO2_1, 33),
    ]
    for hi, lo, exact, bits in splits:
        assert _significant_bits(hi) <= bits
        assert lo == float(exact - mpmath.mpf(hi))
    assert _significant_bits(detmath.PIO2_1) <= 33
    assert abs(pi_2 - detmath.PIO2_1) < 2.0**-32
    for value, exact in [
        (detmath.INV_LN2, 1 / mpmath.log(2)),
        (detmath.INV_LN10, 1 / mpmath.log(10)),
        (detmath.INV_PIO2, 2 / mpmath.pi),
    ]:
        assert value == float(exact)  # correctly rounded


def test_special_values() -> None:
    with np.errstate(all="raise"):  # and no floating-point warnings on the way
        np.testing.assert_array_equal(
            detmath.exp([-np.inf, np.inf, np.nan, 0.0, 710.0, -800.0]),
            [0.0, np.inf, np.nan, 1.0, np.inf, 0.0],
        )
        np.testing.assert_array_equal(
            detmath.log([0.0, -1.0, np.inf, np.nan, 1.0]), [-np.inf, np.nan, np.inf, np.nan, 0.0]
        )
        np.testing.assert_array_equal(detmath.log10([1.0, 10.0, 1e-10, 1e22]), [0, 1, -10, 22])
        np.testing.assert_array_equal(detmath.exp10([0.0, 1.0, 2.0, 22.0]), [1, 10, 100, 1e22])
        assert detmath.log(5e-324) == np.log(5e-324)  # subnormal input
        assert detmath.sin(0.0) == 0.0 and detmath.cos(0.0) == 1.0
        zeros = np.array([0.0, -0.0, 0.0, -0.0])
        signed = np.array([0.0, 0.0, -0.0, -0.0])
        np.testing.assert_array_equal(detmath.arctan2(zeros, signed), np.arctan2(zeros, signed))
        np.testing.assert_array_equal(
            np.signbit(detmath.arctan2(zeros, signed)), np.signbit(np.arctan2(zeros, signed))
        )
        np.testing.assert_array_equal(detmath.cbrt([-8.0, 0.0, 27.0]), [-2.0, 0.0, 3.0])
        assert np.isnan(detmath.arcsin(1.5)) and detmath.arcsin(1.0) == np.pi / 2
        signed_zeros = np.array([-0.0, 0.0])
        for func in (detmath.sin, detmath.arctan, detmath.arcsin, detmath.cbrt):
            np.testing.assert_array_equal(np.signbit(func(signed_zeros)), [True, False])


def test_shapes_follow_numpy() -> None:
    assert detmath.exp(1.0).shape == ()
    assert detmath.cos(np.zeros((2, 3))).shape == (2, 3)
    assert detmath.power(np.ones((4, 1)), np.ones(3)).shape == (4, 3)
    assert detmath.arctan2(np.ones((2, 1)), np.ones(5)).shape == (2, 5)


def test_sin_cos_refuse_arguments_they_cannot_reduce_exactly() -> None:
    with pytest.raises(ValueError, match="sin/cos"):
        detmath.sin(np.array([1.0, 1e7]))


# --------------------------------------------------------------------------------------
# the demo uses nothing whose bits depend on the CPU
# --------------------------------------------------------------------------------------

#: NumPy / math functions whose float64 results depend on the SIMD path or libm variant
CPU_DEPENDENT = {
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "logaddexp", "logaddexp2",
    "power", "float_power", "pow", "sin", "cos", "tan", "arcsin", "arccos", "arctan",
    "arctan2", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "arcsinh",
    "arccosh", "arctanh", "hypot", "cbrt", "sinc", "erf", "erfc", "gamma", "lgamma",
}  # fmt: skip


def test_demo_uses_no_cpu_dependent_function() -> None:
    """No ``np.exp``, ``math.log``, ... and no ``**`` (CPython's float ``**`` is libm's
    ``pow``; NumPy's array ``**`` is the dispatched ``power``) in the generator's code:
    :mod:`quakeshap.detmath` instead."""
    assert len(DEMO_SOURCES) > 1, "expected the demo package's modules"
    offending = []
    for source in DEMO_SOURCES:
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("np", "numpy", "math", "scipy", "special")
                and node.attr in CPU_DEPENDENT
            ):
                offending.append((source.name, node.lineno, f"{node.value.id}.{node.attr}"))
            if isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Pow):
                offending.append((source.name, node.lineno, "**"))
            if isinstance(node, ast.ImportFrom) and node.module in ("numpy", "math", "scipy"):
                imported = {alias.name for alias in node.names} & CPU_DEPENDENT
                offending += [(source.name, node.lineno, f"import {n}") for n in sorted(imported)]
    assert not offending, "CPU-dependent floating point in quakeshap.demo: " + ", ".join(
        f"{name} line {line}: {what}" for name, line, what in sorted(offending)
    )


# --------------------------------------------------------------------------------------
# the same bits under every CPU path this machine can select
# --------------------------------------------------------------------------------------

PROBE = """
import hashlib, json, sys
import numpy as np
from quakeshap import detmath
rng = np.random.default_rng(7)
x = rng.uniform(-30.0, 30.0, 200_000)
p = np.ldexp(rng.uniform(0.5, 1.0, 200_000), rng.integers(-100, 100, 200_000))  # exact
u = rng.uniform(0.0, 1.0, 200_000)
digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
out = {"detmath": {}, "numpy": {}}
for name in ("exp", "sin", "cos", "arctan"):
    out["detmath"][name] = digest(getattr(detmath, name)(x))
    out["numpy"][name] = digest(getattr(np, name)(x))
for name in ("log", "log10", "cbrt"):
    out["detmath"][name] = digest(getattr(detmath, name)(p))
    out["numpy"][name] = digest(getattr(np, name)(p))
out["detmath"]["exp10"] = digest(detmath.exp10(x))
out["detmath"]["power"] = digest(detmath.power(p, u))
out["numpy"]["power"] = digest(np.power(p, u))
out["detmath"]["arctan2"] = digest(detmath.arctan2(x, x[::-1]))
out["numpy"]["arctan2"] = digest(np.arctan2(x, x[::-1]))
out["detmath"]["arcsin"] = digest(detmath.arcsin(u))
out["numpy"]["arcsin"] = digest(np.arcsin(u))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probes() -> dict[str, dict]:
    return {name: json.loads(_run(PROBE, env)) for name, env in VARIANTS.items()}


def test_the_cpu_variants_change_numpy_results(probes: dict[str, dict]) -> None:
    """The switches select other kernels here: NumPy's own results change under one of
    them (else the determinism tests below prove nothing on this machine)."""
    changed = [
        name for name, probe in probes.items() if probe["numpy"] != probes["default"]["numpy"]
    ]
    if not changed:
        pytest.skip("no CPU-path switch changes NumPy's results on this machine")
    assert changed


def test_detmath_bits_do_not_depend_on_the_cpu_path(probes: dict[str, dict]) -> None:
    for name, probe in probes.items():
        assert probe["detmath"] == probes["default"]["detmath"], name


GENERATE = """
import sys
from quakeshap import demo
from quakeshap.config import DemoConfig
demo.write_demo_dataset(DemoConfig(n_pre=40, n_post=30, n_colocated_groups=2), sys.argv[1])
"""


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_demo_bytes_do_not_depend_on_the_cpu_path(tmp_path: Path) -> None:
    """A small demo data set, generated under every CPU path: byte-identical files."""
    digests = {}
    for name, env in VARIANTS.items():
        _run(GENERATE, env, str(tmp_path / name))
        digests[name] = _digests(tmp_path / name)
    assert len(digests["default"]) == 5
    for name, files in digests.items():
        differing = sorted(k for k in files if files[k] != digests["default"].get(k))
        assert not differing, f"{name}: {differing}"
