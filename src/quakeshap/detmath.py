"""Elementary functions that give the same bits on every machine.

Why this module exists
----------------------
NumPy picks the kernel of a float64 transcendental ufunc (``exp``, ``log``, ``log10``,
``sin``, ``cos``, ``power``, ``arctan2``, ``arcsin``, ...) at run time from the CPU's
features: with AVX-512 (NumPy's ``X86_V4`` / ``AVX512_SKX`` targets) it runs SIMD
kernels (SVML among them) that round differently in the last bit from the C library's
``exp``, ``log``, ... it calls otherwise; and glibc's ``libm`` itself picks an FMA or a
non-FMA variant of those functions by CPU (Python's ``float ** float`` goes there too).
Both are within an ulp or so of the exact value and both are "correct"; they are just
not the same. The demo data set (:mod:`quakeshap.demo`) writes float64 waveforms and
catalogue values with full precision, so a one-ulp difference anywhere upstream changes
the files' bytes, and with them the DVC cache key of every stage downstream: two
machines sharing a DVC remote would not share the cache.

The functions here are built only from operations that IEEE 754 defines exactly and
that every NumPy kernel implements exactly (correctly rounded ``+ - * /`` and ``sqrt``,
``rint``/``floor``, comparisons, selections, and multiplication by powers of two), each
step a separate ufunc call (no fused multiply-add can be introduced). Whatever SIMD path
NumPy chooses and whichever ``libm`` is loaded, they return the same bits; they never
call ``libm``.

Accuracy: ``exp``, ``exp10``, ``log``, ``log10``, ``sin``, ``cos``, ``arctan``,
``arctan2``, ``arcsin`` and ``cbrt`` are within 3 units in the last place of the exact value
(relative error below 1e-15; NumPy's are within about 0.5); ``power(x, y)`` loses about
``|y ln x|`` ulp more (it is ``exp(y ln x)``). ``tests/test_determinism.py`` checks them
against mpmath and NumPy. They are plain range reduction + Taylor series, written for
clarity and determinism, not speed (2-5 times slower than NumPy's), and meant for the
demo generator's synthetic data, not as a general replacement.

Domains: ``exp`` and friends return exactly 0 where the true result would be subnormal
(below 2**-1022, x < -708); ``sin``/``cos`` accept |x| < 2**19 π/2 (about 8e5) and raise
otherwise; NaN propagates. Inputs are converted to float64 arrays; results are float64
arrays (0-d for scalar input).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "arcsin",
    "arctan",
    "arctan2",
    "cbrt",
    "cos",
    "exp",
    "exp10",
    "hypot",
    "log",
    "log10",
    "power",
    "sin",
]

# --------------------------------------------------------------------------------------
# constants: exact binary values (hex), split into a "high" part with trailing zero bits
# (so that small integers times it are exact) and a "low" correction, the correctly
# rounded rest; tests/test_determinism.py checks them against mpmath.
# --------------------------------------------------------------------------------------

#: ln 2 = LN2_HI + LN2_LO; LN2_HI has 32 significant bits
LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
INV_LN2 = float.fromhex("0x1.71547652b82fep+0")
#: ln 10 = LN10_HI + LN10_LO (double-double)
LN10_HI = float.fromhex("0x1.26bb1bbb55516p+1")
LN10_LO = float.fromhex("-0x1.f48ad494ea3e9p-53")
#: log10(2) = LOG10_2HI + LOG10_2LO; LOG10_2HI has 39 significant bits
LOG10_2HI = float.fromhex("0x1.34413509f4000p-2")
LOG10_2LO = float.fromhex("0x1.cff7988f8959bp-41")
#: 1 / ln 10
INV_LN10 = float.fromhex("0x1.bcb7b1526e50ep-2")
#: π/2 = PIO2_1 + PIO2_2 + PIO2_2T; PIO2_1 and PIO2_2 have at most 33 significant bits
PIO2_1 = float.fromhex("0x1.921fb54400000p+0")
PIO2_2 = float.fromhex("0x1.0b4611a600000p-34")
PIO2_2T = float.fromhex("0x1.3198a2e037073p-69")
INV_PIO2 = float.fromhex("0x1.45f306dc9c883p-1")
#: π/2 and π/4 and π as double-doubles
PIO2_HI = float.fromhex("0x1.921fb54442d18p+0")
PIO2_LO = float.fromhex("0x1.1a62633145c07p-54")
PIO4_HI = PIO2_HI / 2.0
PIO4_LO = PIO2_LO / 2.0
PI_HI = PIO2_HI * 2.0
PI_LO = PIO2_LO * 2.0
#: tan(π/8) = √2 − 1 and tan(3π/8) = √2 + 1, the break points of :func:`arctan`
TAN_PI_8 = math.sqrt(2.0) - 1.0
TAN_3PI_8 = math.sqrt(2.0) + 1.0
#: :func:`arcsin` sums its series up to here and uses the half-angle formula above
ASIN_SERIES_MAX = 0.6

#: exp(x) overflows above this, and is flushed to 0 below EXP_MIN (subnormal results)
EXP_MAX = float.fromhex("0x1.62e42fefa39efp+9")  # ln(max float64), 709.78...
EXP_MIN = -708.0
#: sin/cos reduce |x| < 2**19 π/2 exactly (n·PIO2_1 and n·PIO2_2 exact for n < 2**20)
TRIG_MAX = float(2**19) * PIO2_1

# Taylor coefficients, highest degree first, as correctly rounded doubles: exact
# rationals rounded once by Python's int/int division (no libm involved; no float `**`
# anywhere in this module: CPython's float `**` is libm's pow).
_EXP_COEFFS = tuple(1.0 / math.factorial(k) for k in range(13, 0, -1))  # 1/13! ... 1/1!
_SIN_COEFFS = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(9, 0, -1))
_COS_COEFFS = tuple((-1) ** k / math.factorial(2 * k) for k in range(9, 1, -1))
_LOG_COEFFS = tuple(2.0 / (2 * k + 1) for k in range(10, 0, -1))  # atanh series in s²
_ATAN_COEFFS = tuple((-1) ** k / (2 * k + 1) for k in range(22, 0, -1))
#: arcsin z = z + Σ_k (2k)! / (4**k (k!)² (2k + 1)) z**(2k+1), k = 36 ... 1
_ASIN_COEFFS = tuple(
    math.factorial(2 * k) / (4**k * math.factorial(k) ** 2 * (2 * k + 1)) for k in range(36, 0, -1)
)

_SPLITTER = 134217729.0  # 2**27 + 1 (Veltkamp)
_TINY = float.fromhex("0x1p-1022")  # the smallest normal float64


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _horner(z: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """c[0] z^(n-1) + ... + c[n-1], by Horner, one rounding per operation."""
    p = np.full_like(z, coeffs[0])
    for c in coeffs[1:]:
        p *= z
        p += c
    return p


def _two_prod(a: np.ndarray, b: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """``a * b = p + e`` exactly (Dekker; no FMA needed), for |a|, |b| < 2**996."""
    p = a * b
    a_big = _SPLITTER * a
    a_hi = a_big - (a_big - a)
    a_lo = a - a_hi
    b = np.asarray(b, dtype=np.float64)
    b_big = _SPLITTER * b
    b_hi = b_big - (b_big - b)
    b_lo = b - b_hi
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, e


def _pow2(k: np.ndarray) -> np.ndarray:
    """2**k as float64 for integer-valued float64 ``k`` in [-1022, 1023] (bit assembly)."""
    return ((k.astype(np.int64) + 1023) << 52).view(np.float64)


def _exp_dd(hi: np.ndarray, lo: np.ndarray | None) -> np.ndarray:
    """exp(hi + lo) for float64 arrays, |lo| << |hi| (lo = None: 0)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return _exp_dd_unchecked(hi, lo)


def _exp_dd_unchecked(hi: np.ndarray, lo: np.ndarray | None) -> np.ndarray:
    finite = np.isfinite(hi)
    x = np.where(finite, np.clip(hi, -800.0, 800.0), 0.0)
    k = np.rint(x * INV_LN2)
    # x − k·ln2 as r_hi − r_lo: k·LN2_HI is exact (|k| < 2**11), and so is the
    # subtraction (Sterbenz); the low parts carry the rest
    r_lo = k * LN2_LO
    if lo is not None:
        r_lo -= np.where(finite, lo, 0.0)
    r = (x - k * LN2_HI) - r_lo  # |r| <= 0.3466 (+ a hair)
    # e^r = 1 + r (1 + r/2 + r²/6 + ...), degree 13: truncation < 5e-18
    p = _horner(r, _EXP_COEFFS[:-1])
    p *= r
    p += 1.0
    p *= r
    p += 1.0
    # times 2**k in two exact steps (each factor normal), so k may reach ±1100
    half = np.floor(k / 2.0)
    p *= _pow2(half)
    p *= _pow2(k - half)
    p[x < EXP_MIN] = 0.0
    p[x > EXP_MAX] = np.inf
    # non-finite inputs: exp(+inf) = inf, exp(-inf) = 0, exp(nan) = nan
    bad = ~finite
    if bad.any():
        p[bad] = np.where(np.isnan(hi[bad]), np.nan, np.where(hi[bad] > 0, np.inf, 0.0))
    return p


def exp(x) -> np.ndarray:
    """e**x (0 where the result would be subnormal, x < -708)."""
    x = _f64(x)
    return _exp_dd(np.atleast_1d(x), None).reshape(x.shape)


def exp10(x) -> np.ndarray:
    """10**x, with x·ln 10 carried in double-double so that large x lose no accuracy."""
    x = _f64(x)
    xa = np.atleast_1d(x)
    safe = np.where(np.isfinite(xa), np.clip(xa, -400.0, 400.0), xa)
    p, e = _two_prod(np.where(np.isfinite(safe), safe, 0.0), LN10_HI)
    e += safe * LN10_LO
    p = np.where(np.isfinite(safe), p, safe)
    return _exp_dd(p, np.where(np.isfinite(safe), e, 0.0)).reshape(x.shape)


def _log_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x = 2**k · (1 + f), 1 + f in [√½, √2): returns k, f, hfsq = f²/2 and the
    correction c with log(1 + f) = f − (hfsq − c) (fdlibm's arrangement)."""
    x = np.where(x > 0, x, 1.0)
    tiny = x < _TINY  # subnormal: scale into the normal range first
    if tiny.any():
        x = x.copy()
        x[tiny] *= float(2**54)
    bits = x.view(np.int64)
    k = ((bits >> 52) & 0x7FF).astype(np.float64) - 1023.0 - np.where(tiny, 54.0, 0.0)
    m = ((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000).view(np.float64)  # [1, 2)
    big = m > math.sqrt(2.0)
    m = np.where(big, m * 0.5, m)  # exact
    k = k + big
    f = m - 1.0  # exact (Sterbenz)
    s = f / (2.0 + f)  # |s| <= 0.1716
    z = s * s
    # log(1+f) = 2 atanh(s) = 2s + s·R(z), R(z) = 2/3 z + 2/5 z² + ... (10 terms)
    big_r = _horner(z, _LOG_COEFFS)
    big_r *= z
    hfsq = 0.5 * f * f
    c = s * (hfsq + big_r)
    return k, f, hfsq, c


def _log_special(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """log's values outside (0, inf): 0 → -inf, negative → nan, inf → inf, nan → nan."""
    bad = ~((x > 0) & np.isfinite(x))
    if bad.any():
        xb = x[bad]
        out[bad] = np.where(xb == 0, -np.inf, np.where(xb == np.inf, np.inf, np.nan))
    return out


def log(x) -> np.ndarray:
    """Natural logarithm (x <= 0: -inf or nan, as NumPy, without warnings)."""
    x = _f64(x)
    xa = np.atleast_1d(x)
    k, f, hfsq, c = _log_parts(xa)
    out = k * LN2_HI - ((hfsq - (c + k * LN2_LO)) - f)
    return _log_special(xa, out).reshape(x.shape)


def log10(x) -> np.ndarray:
    """Base-10 logarithm: k·log10(2) + log(1 + f)/ln 10, with log10(2) in two parts."""
    x = _f64(x)
    xa = np.atleast_1d(x)
    k, f, hfsq, c = _log_parts(xa)
    log_m = f - (hfsq - c)
    out = k * LOG10_2HI + (k * LOG10_2LO + log_m * INV_LN10)
    return _log_special(xa, out).reshape(x.shape)


def power(x, y) -> np.ndarray:
    """x**y for x > 0 (x = 0, negative or non-finite: NaN-free NumPy semantics are not
    reproduced; such inputs give nan), as exp(y · log x) with the product in
    double-double. Broadcasts like NumPy."""
    x, y = np.broadcast_arrays(_f64(x), _f64(y))
    shape = x.shape
    x, y = np.atleast_1d(x).astype(np.float64), np.atleast_1d(y).astype(np.float64)
    ok = (x > 0) & np.isfinite(x) & np.isfinite(y)
    lx = log(np.where(ok, x, 1.0))
    yy = np.where(ok, y, 0.0)
    p, e = _two_prod(yy, lx)
    out = _exp_dd(p, e)
    out[~ok] = np.nan
    return out.reshape(shape)


def cbrt(x) -> np.ndarray:
    """Real cube root, for any finite x: exp(log|x|/3), then one Newton step."""
    x = _f64(x)
    xa = np.atleast_1d(x)
    a = np.abs(xa)
    nonzero = (a > 0) & np.isfinite(a)
    a1 = np.where(nonzero, a, 1.0)
    c = exp(log(a1) / 3.0)
    c = c - (c - a1 / (c * c)) / 3.0
    c = np.where(nonzero, c, a)
    return np.where(np.signbit(xa), -c, c).reshape(x.shape)


def _reduce_pio2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x = n·π/2 + r, |r| <= π/4 (+ a hair); returns r and n mod 4 (int64)."""
    if x.size and not (np.abs(x[np.isfinite(x)]) < TRIG_MAX).all():
        raise ValueError(f"detmath: sin/cos arguments must satisfy |x| < {TRIG_MAX:.6g}")
    n = np.rint(x * INV_PIO2)
    t = x - n * PIO2_1  # exact: n·PIO2_1 exact (n < 2**20) and Sterbenz
    r = (t - n * PIO2_2) - n * PIO2_2T
    q = np.where(np.isfinite(n), n, 0.0).astype(np.int64) & 3
    return r, q


def _sin_cos_kernels(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin r and cos r for |r| <= π/4 (Taylor to r**19 and r**18: truncation < 1e-17)."""
    z = r * r
    s = _horner(z, _SIN_COEFFS)  # −1/3! + z/5! − ...
    s *= z
    s *= r
    s += r
    c = _horner(z, _COS_COEFFS)  # 1/4! − z/6! + ...
    c *= z
    c *= z
    hz = 0.5 * z
    w = 1.0 - hz
    # w + (rounding error of 1 − hz) + z² (1/4! − ...)   (fdlibm's k_cos arrangement)
    c += (1.0 - w) - hz
    c += w
    return s, c


def sin(x) -> np.ndarray:
    """Sine, |x| < 2**19 π/2."""
    x = _f64(x)
    xa = np.atleast_1d(x)
    r, q = _reduce_pio2(xa)
    s, c = _sin_cos_kernels(r)
    out = np.choose(q, [s, c, -s, -c])
    out = np.where(xa == 0.0, xa, out)  # sin(±0) = ±0
    out[~np.isfinite(xa)] = np.nan
    return out.reshape(x.shape)


def cos(x) -> np.ndarray:
    """Cosine, |x| < 2**19 π/2."""
    x = _f64(x)
    xa = np.atleast_1d(x)
    r, q = _reduce_pio2(xa)
    s, c = _sin_cos_kernels(r)
    out = np.choose(q, [c, -s, -c, s])
    out[~np.isfinite(xa)] = np.nan
    return out.reshape(x.shape)


def _atan_nonneg(t: np.ndarray) -> np.ndarray:
    """arctan t for t >= 0 (inf allowed): reduced to |u| <= tan(π/8) around 0, π/4, π/2."""
    mid = (t > TAN_PI_8) & (t <= TAN_3PI_8)
    high = t > TAN_3PI_8
    with np.errstate(divide="ignore"):
        u = np.where(high, -1.0 / np.where(high, t, 1.0), t)
    u = np.where(mid, (t - 1.0) / (t + 1.0), u)
    z = u * u
    # arctan u = u − u³/3 + u⁵/5 − ... (to u**45: truncation < 2e-19 for |u| <= 0.4143)
    p = _horner(z, _ATAN_COEFFS)  # −1/3 + z/5 − ...
    p *= z
    p *= u
    p += u
    base_hi = np.where(high, PIO2_HI, np.where(mid, PIO4_HI, 0.0))
    base_lo = np.where(high, PIO2_LO, np.where(mid, PIO4_LO, 0.0))
    return base_hi + (p + base_lo)


def arctan(x) -> np.ndarray:
    """Arc tangent, in [-π/2, π/2]."""
    x = _f64(x)
    xa = np.atleast_1d(x)
    out = _atan_nonneg(np.abs(xa))
    out = np.where(np.signbit(xa), -out, out)
    out[np.isnan(xa)] = np.nan
    return out.reshape(x.shape)


def arctan2(y, x) -> np.ndarray:
    """Angle of the point (x, y), in [-π, π], with C99's signs at zeros (finite or
    infinite inputs; NaN propagates). Broadcasts like NumPy."""
    y, x = np.broadcast_arrays(_f64(y), _f64(x))
    shape = x.shape
    y, x = np.atleast_1d(y).astype(np.float64), np.atleast_1d(x).astype(np.float64)
    ay, ax = np.abs(y), np.abs(x)
    steep = ay > ax
    num = np.where(steep, ax, ay)
    den = np.where(steep, ay, ax)
    both_inf = np.isinf(ax) & np.isinf(ay)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where((den > 0) & ~both_inf, num / np.where(den > 0, den, 1.0), 0.0)
    a = _atan_nonneg(ratio)
    a = np.where(both_inf, PIO4_HI, a)
    # first octant → first quadrant
    a = np.where(steep, PIO2_HI + (PIO2_LO - a), a)
    # left half-plane (x < 0 or x = −0): π − a
    left = np.signbit(x)
    a = np.where(left, PI_HI + (PI_LO - a), a)
    out = np.where(np.signbit(y), -a, a)
    out[np.isnan(x) | np.isnan(y)] = np.nan
    return out.reshape(shape)


def arcsin(x) -> np.ndarray:
    """Arc sine of x in [-1, 1] (nan outside): its Taylor series for |x| <= 0.6, else
    π/2 − 2 arcsin(√((1 − |x|)/2)) (both exact to the last bit before rounding)."""
    x = _f64(x)
    xa = np.atleast_1d(x)
    a = np.abs(xa)
    inside = a <= 1.0
    a = np.where(inside, a, 0.0)
    small = a <= ASIN_SERIES_MAX
    # (1 − a)/2 is exact for a >= 0.5 (Sterbenz); its root is <= √0.2 < 0.6
    z = np.where(small, a, np.sqrt((1.0 - a) * 0.5))
    zz = z * z
    # arcsin z = z + z³/6 + 3z⁵/40 + ... (36 terms: truncation < 1e-18 for z <= 0.6)
    p = _horner(zz, _ASIN_COEFFS)
    p *= zz
    p *= z
    p += z
    out = np.where(small, p, PIO2_HI + (PIO2_LO - 2.0 * p))
    out = np.where(np.signbit(xa), -out, out)
    out[~inside] = np.nan
    return out.reshape(x.shape)


def hypot(x, y) -> np.ndarray:
    """√(x² + y²), as it reads (no overflow protection: |x|, |y| < 1e150)."""
    x, y = _f64(x), _f64(y)
    return np.sqrt(x * x + y * y)
