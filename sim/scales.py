"""Depression rating scales and their conversion to the model's one internal scale, HAM-D-17 points.

The model acts only on HAM-D-17 points (0-52). A scenario may read and report severity on MADRS, PHQ-9
or BDI-II; values are converted by monotone piecewise-linear interpolation through anchor points
(internal HAM-D-17 point, scale point) taken from published linking studies. (0, 0) and (52, max)
close each table by convention (the studies do not reach the extremes); values outside a scale's
range are clipped to it. Which anchor comes from where is stated in each Scale's `source` and in
docs/scales.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

INTERNAL = "HAM-D-17"
INTERNAL_MAX = 52.0


@dataclass(frozen=True)
class Scale:
    name: str
    max: float
    remission: float  # conventional remission cut-off: remitted when score <= remission
    anchors_internal: tuple[float, ...]  # HAM-D-17 points, strictly increasing, 0 .. 52
    anchors_scale: tuple[float, ...]  # the same points on this scale, strictly increasing, 0 .. max
    source: str


def _check(s: Scale) -> Scale:
    a, b = np.asarray(s.anchors_internal, float), np.asarray(s.anchors_scale, float)
    if (a.shape != b.shape or a[0] != 0 or b[0] != 0 or a[-1] != INTERNAL_MAX or b[-1] != s.max
            or np.any(np.diff(a) <= 0) or np.any(np.diff(b) <= 0)):
        raise ValueError(f"scale {s.name}: anchors must rise strictly from (0, 0) to (52, {s.max})")
    return s


SCALES: Mapping[str, Scale] = MappingProxyType({s.name: _check(s) for s in (
    Scale("HAM-D-17", 52.0, 7.0, (0.0, 52.0), (0.0, 52.0),
          "Internal scale (identity). Remission <= 7, the usual trial definition (e.g. Leucht et al. 2013, "
          "J Affect Disord 148)."),
    # Leucht et al. 2018 (abstract): HAM-D 10, 20, 30, 40 ~ MADRS 13, 26, 39, 52-53 (52.5 used).
    Scale("MADRS", 60.0, 10.0, (0.0, 10.0, 20.0, 30.0, 40.0, 52.0), (0.0, 13.0, 26.0, 39.0, 52.5, 60.0),
          "Leucht S, Fennema H, Engel RR, Kaspers-Janssen M, Szegedi A. Translating the HAM-D into the "
          "MADRS and vice versa with equipercentile linking. J Affect Disord 2018;226:326-331 "
          "(anchors at HAM-D 10/20/30/40 from the abstract; 52~60 is the range-closing convention). "
          "Cross-check: Carmody et al. 2006 IRT equating, HAM-D 7 ~ MADRS 8-9 (here 9.1). Remission <= 10 "
          "is the usual trial cut-off (Hawley et al. 2002: < 10; Zimmerman et al. 2004: <= 9)."),
    # Wahl et al. 2014 common metric (PHQ-9 -> theta -> BDI) chained with Furukawa et al. 2019 (BDI -> HAM-D).
    Scale("PHQ-9", 27.0, 4.0,
          (0.0, 4.6, 7.3, 8.6, 10.5, 12.8, 16.9, 21.5, 26.6, 52.0),
          (0.0, 2.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0, 23.0, 27.0),
          "Derived, no direct PHQ-9/HAM-D-17 table found: PHQ-9 -> common-metric theta -> BDI (Wahl I, "
          "Loewe B, Bjorner JB, et al. Standardization of depression measurement: a common metric was "
          "developed for 11 self-report depression measures. J Clin Epidemiol 2014;67:73-86, supplement "
          "crosswalk tables) -> HAM-D-17 (Furukawa TA, Reijnders M, Kishimoto S, et al. Translating the "
          "BDI and BDI-II into the HAMD and vice versa with equipercentile linking. Epidemiol Psychiatr "
          "Sci 2019;29:e24, HAMD-BDI table). (0, 0) and the segment PHQ-9 23-27 ~ HAM-D 26.6-52 are "
          "conventions (floor, ceiling). "
          "Remission < 5 (Kroenke et al. 2001: 0-4 minimal)."),
    # Furukawa et al. 2019 (abstract): HAMD 10, 20, 30 ~ BDI-II 13, 32, 50.
    Scale("BDI-II", 63.0, 13.0, (0.0, 10.0, 20.0, 30.0, 52.0), (0.0, 13.0, 32.0, 50.0, 63.0),
          "Furukawa TA, Reijnders M, Kishimoto S, et al. Translating the BDI and BDI-II into the HAMD "
          "and vice versa with equipercentile linking. Epidemiol Psychiatr Sci 2019;29:e24 (anchors at "
          "HAMD 10/20/30 from the abstract; 52~63 is the range-closing convention). Note: the "
          "conventional BDI-II remission cut-off 13 (manual: 0-13 minimal) links to HAM-D 10, not 7."),
)})

# anchor arrays built once: conversions run on 200,000-element arrays every simulated day
_ARRAYS = MappingProxyType({n: (np.asarray(s.anchors_internal, float), np.asarray(s.anchors_scale, float))
                            for n, s in SCALES.items()})


def _lookup(name: str) -> Scale:
    if not isinstance(name, str) or name not in SCALES:
        raise ValueError(f"unknown severity scale {name!r}; allowed: {', '.join(SCALES)}")
    return SCALES[name]


def scale(name: str) -> Scale:
    """The Scale called `name`; ValueError naming the allowed scales if there is none."""
    return _lookup(name)


def _interp(values, xp: np.ndarray, fp: np.ndarray):
    out = np.interp(np.asarray(values, dtype=float), xp, fp)  # clips to [xp[0], xp[-1]]
    return out if isinstance(values, np.ndarray) or np.ndim(values) else float(out)


def anchors(scale: str) -> tuple[np.ndarray, np.ndarray]:
    """The conversion's anchors: internal HAM-D-17 points and the matching points on `scale`."""
    return _ARRAYS[_lookup(scale).name]


def to_internal(scale: str, values) -> np.ndarray | float:
    """Scores on `scale` -> internal HAM-D-17 points (a float for a scalar, else an array)."""
    internal, points = _ARRAYS[_lookup(scale).name]
    return _interp(values, points, internal)


def from_internal(scale: str, values) -> np.ndarray | float:
    """Internal HAM-D-17 points -> scores on `scale` (a float for a scalar, else an array)."""
    internal, points = _ARRAYS[_lookup(scale).name]
    return _interp(values, internal, points)
