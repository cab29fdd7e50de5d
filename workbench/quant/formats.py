"""Number formats as data, and exact simulation of each on float32 tensors.

Three families, each a frozen dataclass with ``bits``, ``quantize(x, scale, zero_point)`` and a
``name`` that :func:`get_format` parses back:

* :class:`IntFormat` -- signed or unsigned integers of 2-8 bits, symmetric or with a zero point,
  per tensor or per output channel. ``q = clamp(round(x / s) + z, qmin, qmax)``, ``x^ = (q - z) s``,
  rounding half to even, computed as PyTorch's ``fake_quantize_per_*_affine`` does (a test checks
  the two agree bit for bit).
* :class:`TernaryFormat` -- {-1, 0, +1} times one scale: BitNet b1.58's absmean scale
  ``gamma = mean |W|`` and ``W^ = gamma * RoundClip(W / (gamma + eps), -1, 1)`` (Ma et al. 2024,
  https://arxiv.org/abs/2402.17764, eq. 1-3), or the median of ``|W|`` (Nielsen & Schneider-Kamp
  2024, *BitNet b1.58 Reloaded*, https://arxiv.org/abs/2407.09527).
* :class:`FloatFormat` -- small floating-point formats with ``e`` exponent and ``m`` mantissa bits:
  FP8 E4M3 (OCP "fn": no infinities, max 448) and E5M2 (IEEE-like, max 57344), FP6 E3M2 / E2M3 and
  FP4 E2M1 (OCP MX formats, no infinities or NaN, max 28 / 7.5 / 6). Values are rounded to the
  nearest representable value, ties to an even mantissa, with subnormals and saturation at the
  largest finite value (OCP Microscaling spec v1.0, section 5.3).

>>> from workbench.quant import get_format
>>> get_format("fp4_e2m1").values().tolist()[:8]
[-6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0]
"""
from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass

import torch

__all__ = ["IntFormat", "TernaryFormat", "FloatFormat", "Format", "get_format", "list_formats", "FLOAT_FORMATS"]


@dataclass(frozen=True)
class IntFormat:
    """An integer grid: ``bits`` in 2..8, ``signed``, ``symmetric`` (zero point 0) or affine,
    ``per_channel`` (a scale per output channel, axis 0) or per tensor."""

    bits: int
    signed: bool = True
    symmetric: bool = True
    per_channel: bool = False

    def __post_init__(self):
        if not isinstance(self.bits, int) or not 2 <= self.bits <= 8:
            raise ValueError(f"integer formats have 2 to 8 bits, got {self.bits!r}; for more, keep the layer in float "
                             "(format None)")
        if self.symmetric and not self.signed:
            raise ValueError("an unsigned format has its zero at qmin: use symmetric=False (a zero point), "
                             "or a signed symmetric format")

    @property
    def qmin(self) -> int:
        # symmetric signed grids drop the most negative code so that they are symmetric about 0
        if self.signed:
            return -(2 ** (self.bits - 1)) + (1 if self.symmetric else 0)
        return 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1

    @property
    def name(self) -> str:
        base = f"{'' if self.signed else 'u'}int{self.bits}"
        return base + ("" if self.symmetric else "_asym") + ("_pc" if self.per_channel else "")

    def scale_for_range(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero point that map ``[lo, hi]`` (tensors, broadcastable) onto the grid; the
        range is widened to include 0 so that zero is exact."""
        lo = torch.minimum(torch.as_tensor(lo, dtype=torch.float32), torch.zeros(()))
        hi = torch.maximum(torch.as_tensor(hi, dtype=torch.float32), torch.zeros(()))
        if self.symmetric:
            scale = torch.maximum(-lo, hi) / self.qmax
            zp = torch.zeros_like(scale, dtype=torch.int64)
        else:
            scale = (hi - lo) / (self.qmax - self.qmin)
            zp = (self.qmin - torch.round(lo / scale.clamp_min(1e-12))).clamp(self.qmin, self.qmax).to(torch.int64)
        return scale.clamp_min(1e-8), zp

    def quantize(self, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` on the grid, back in float (fake quantization). Per channel: ``scale`` has one entry
        per slice of axis 0. No gradient flows through the rounding (see ``ste``)."""
        scale = torch.as_tensor(scale, dtype=torch.float32, device=x.device)
        zp = torch.zeros_like(scale) if zero_point is None else torch.as_tensor(zero_point, device=x.device).to(x.dtype)
        if scale.ndim == 1 and x.ndim > 1:
            shape = (-1,) + (1,) * (x.ndim - 1)
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        inv = 1.0 / scale  # multiply by the reciprocal, as ATen's fake_quantize kernels do
        if x.requires_grad or scale.requires_grad:
            q = torch.clamp(torch.round(x * inv) + zp, self.qmin, self.qmax)
            return (q - zp) * scale
        # the same arithmetic in place on one buffer: on CPU about 3x faster than ATen's fused
        # fake_quantize kernels (benchmarks/bench_quant.py), which round element by element
        # ((round(x / s) + z) clamped to [qmin, qmax]) - z is round(x / s) clamped to [qmin - z, qmax - z]:
        # the zero point is an integer, so both are exact in float32
        q = (x * inv).round_()
        if zero_point is None:
            return q.clamp_(self.qmin, self.qmax).mul_(scale)
        return q.clamp_(self.qmin - zp, self.qmax - zp).mul_(scale)

    def values(self) -> torch.Tensor:
        """The grid's codes ``qmin..qmax`` (at scale 1, zero point 0)."""
        return torch.arange(self.qmin, self.qmax + 1, dtype=torch.float32)


@dataclass(frozen=True)
class TernaryFormat:
    """{-1, 0, +1} times one per-tensor scale, ``"absmean"`` (b1.58) or ``"median"`` of ``|W|``."""

    scale_rule: str = "absmean"
    eps: float = 1e-5

    def __post_init__(self):
        if self.scale_rule not in ("absmean", "median"):
            raise ValueError(f"ternary scale_rule is 'absmean' or 'median', got {self.scale_rule!r}")

    bits = 1.58  # log2(3)
    per_channel = False
    signed = True

    @property
    def name(self) -> str:
        return "ternary" if self.scale_rule == "absmean" else "ternary_median"

    def scale_of(self, w: torch.Tensor) -> torch.Tensor:
        a = w.detach().abs()
        return a.mean() if self.scale_rule == "absmean" else a.median()

    def quantize(self, x: torch.Tensor, scale: torch.Tensor | None = None, zero_point=None) -> torch.Tensor:
        gamma = self.scale_of(x) if scale is None else torch.as_tensor(scale, dtype=x.dtype, device=x.device)
        return torch.clamp(torch.round(x / (gamma + self.eps)), -1, 1) * gamma

    def values(self) -> torch.Tensor:
        return torch.tensor([-1.0, 0.0, 1.0])


@dataclass(frozen=True)
class FloatFormat:
    """A sign bit, ``exp_bits`` exponent bits (bias ``2**(e-1) - 1``) and ``man_bits`` mantissa bits.

    ``special``: ``"ieee"`` (the top exponent holds inf and NaN: E5M2), ``"fn"`` (only the all-ones
    pattern is NaN: E4M3) or ``"none"`` (every pattern is finite: the MX FP6 and FP4 formats)."""

    exp_bits: int
    man_bits: int
    special: str = "none"
    label: str = ""

    def __post_init__(self):
        if self.special not in ("ieee", "fn", "none"):
            raise ValueError(f"special is 'ieee', 'fn' or 'none', got {self.special!r}")
        if not (1 <= self.exp_bits <= 5 and 0 <= self.man_bits <= 5):
            raise ValueError(f"small float formats here have 1-5 exponent and 0-5 mantissa bits, got "
                             f"E{self.exp_bits}M{self.man_bits}")

    per_channel = False
    signed = True

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def name(self) -> str:
        return self.label or f"fp{self.bits}_e{self.exp_bits}m{self.man_bits}"

    @property
    def bias(self) -> int:
        return 2 ** (self.exp_bits - 1) - 1

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal value (subnormals share it)."""
        return 1 - self.bias

    @property
    def max_finite(self) -> float:
        top = 2 ** self.exp_bits - 1  # the largest exponent field
        if self.special == "ieee":
            return (2 - 2.0 ** -self.man_bits) * 2.0 ** (top - 1 - self.bias)
        if self.special == "fn":  # all-ones mantissa at the top exponent is NaN
            return (2 - 2.0 ** (1 - self.man_bits)) * 2.0 ** (top - self.bias)
        return (2 - 2.0 ** -self.man_bits) * 2.0 ** (top - self.bias)

    def decode(self, code: int) -> float:
        """The value of one bit pattern (sign, exponent, mantissa), NaN / inf where the format says."""
        s = (code >> (self.exp_bits + self.man_bits)) & 1
        e = (code >> self.man_bits) & (2 ** self.exp_bits - 1)
        m = code & (2 ** self.man_bits - 1)
        top = 2 ** self.exp_bits - 1
        if self.special == "ieee" and e == top:
            v = float("inf") if m == 0 else float("nan")
        elif self.special == "fn" and e == top and m == 2 ** self.man_bits - 1:
            v = float("nan")
        elif e == 0:
            v = m * 2.0 ** (self.emin - self.man_bits)
        else:
            v = (1 + m * 2.0 ** -self.man_bits) * 2.0 ** (e - self.bias)
        return -v if s else v

    def values(self) -> torch.Tensor:
        """Every finite value, sorted, each once (``-0`` folded into ``0``)."""
        vals = {self.decode(c) for c in range(2 ** self.bits)}
        finite = sorted(v for v in vals if v == v and abs(v) != float("inf"))
        return torch.tensor(sorted(set(0.0 if v == 0 else v for v in finite)), dtype=torch.float32)

    def quantize(self, x: torch.Tensor, scale: torch.Tensor | float = 1.0, zero_point=None) -> torch.Tensor:
        """``scale * Q(x / scale)``: round to nearest, ties to even mantissa, subnormals, saturating."""
        scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
        if scale.ndim == 1 and x.ndim > 1:
            scale = scale.reshape((-1,) + (1,) * (x.ndim - 1))
        y = (x / scale).clamp(-self.max_finite, self.max_finite)
        a = y.abs()
        # the exponent of each value's binade, floored at emin so that small values use the subnormal step
        e = torch.floor(torch.log2(a.clamp_min(2.0 ** (self.emin - 1))))
        e = torch.clamp(e, min=self.emin)
        # log2 of values just below a power of two may round up: correct the binade exactly
        e = torch.where(torch.exp2(e) > a, e - 1, e).clamp_min(self.emin)
        step = torch.exp2(e - self.man_bits)
        q = torch.round(a / step) * step  # exact: dividing by a power of two; round() is half-to-even
        q = torch.minimum(q, torch.tensor(self.max_finite, dtype=x.dtype, device=x.device))
        return torch.copysign(q, y) * scale


Format = IntFormat | TernaryFormat | FloatFormat

FLOAT_FORMATS = {
    "fp8_e4m3": FloatFormat(4, 3, "fn", "fp8_e4m3"),
    "fp8_e5m2": FloatFormat(5, 2, "ieee", "fp8_e5m2"),
    "fp6_e3m2": FloatFormat(3, 2, "none", "fp6_e3m2"),
    "fp6_e2m3": FloatFormat(2, 3, "none", "fp6_e2m3"),
    "fp4_e2m1": FloatFormat(2, 1, "none", "fp4_e2m1"),
}

_INT = re.compile(r"^(u?)int(\d+)((?:_asym|_pc)*)$")


def list_formats() -> list[str]:
    """Every format name :func:`get_format` understands (``None`` / ``"float"`` keeps float32)."""
    ints = [f"{u}int{b}{a}{p}" for u, b, a, p in itertools.product(("", "u"), range(2, 9), ("", "_asym"), ("", "_pc"))
            if not (u == "u" and a == "")]
    return ints + ["ternary", "ternary_median"] + list(FLOAT_FORMATS)


def get_format(spec) -> Format | None:
    """A format from its name (``"int4"``, ``"int8_pc"``, ``"uint8_asym"``, ``"ternary"``,
    ``"fp8_e4m3"`` ...) or a format object; ``None``, ``"float"`` or ``"fp32"`` keep the tensor in float.

    Raises:
        ValueError: an unknown name or an integer width out of 2..8, with the names that exist.
    """
    if spec is None or isinstance(spec, (IntFormat, TernaryFormat, FloatFormat)):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a number format is a name such as 'int4' or a format object, got {type(spec).__name__}")
    name = spec.strip().lower()
    if name in ("float", "fp32", "none"):
        return None
    if name in FLOAT_FORMATS:
        return FLOAT_FORMATS[name]
    if name in ("ternary", "ternary_absmean", "b1.58"):
        return TernaryFormat("absmean")
    if name == "ternary_median":
        return TernaryFormat("median")
    m = _INT.match(name)
    if m:
        bits = int(m.group(2))
        if not 2 <= bits <= 8:
            raise ValueError(f"format {spec!r}: integer formats have 2 to 8 bits; use 'ternary' below 2 bits or "
                             "None (float) above 8")
        unsigned, flags = m.group(1) == "u", m.group(3)
        if unsigned and "_asym" not in flags:
            raise ValueError(f"format {spec!r}: unsigned integers need a zero point; write 'uint{bits}_asym'")
        return IntFormat(bits, signed=not unsigned, symmetric="_asym" not in flags, per_channel="_pc" in flags)
    close = difflib.get_close_matches(name, list_formats(), n=3)
    raise ValueError(f"unknown number format {spec!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                     + " Formats: int2..int8 (suffixes _asym, _pc), uint2_asym..uint8_asym, ternary, ternary_median, "
                     + ", ".join(FLOAT_FORMATS) + ", or None for float.")
