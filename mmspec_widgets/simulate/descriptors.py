"""Spectral descriptors: one physical number per spectrum, and their trends.

The one definition of each number the project reads off a spectrum to judge
simulations (``mmspec validate``, ``mmspec simulate --assemble --trends``,
the trends figure, the docs):

* half-step: the energy where the spectrum, scaled so that the mean of its
  last 10 % is 1, first reaches 0.5 (:func:`half_step`);
* O K pre-edge weight: area 528.9 - 532.0 eV over area 528.9 - 550.0 eV,
  negative values clipped (:func:`preedge_weight`);
* L3 centroid: first moment of the clipped spectrum over 853.1 - 862 eV (Ni),
  635.1 - 648 eV (Mn), 775.1 - 786 eV (Co) (:func:`centroid`).

:func:`trend_metrics` correlates each with the label physics says it should
follow (Spearman with average ranks, Pearson, and the mean per oxidation
state).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "L3_WINDOWS",
    "EXPECTED",
    "MIN_LEVEL",
    "half_step",
    "half_steps",
    "preedge_weight",
    "centroid",
    "spectral_descriptors",
    "spearman",
    "levels",
    "trend_metrics",
]

#: L3 window (eV) of each L2,3 edge's centroid.
L3_WINDOWS = {"Ni_L23": (853.1, 862.0), "Mn_L23": (635.1, 648.0), "Co_L23": (775.1, 786.0)}

#: O K pre-edge window (eV) and the window the pre-edge weight divides by.
O_K_PREEDGE = (528.9, 532.0)
O_K_TOTAL = (528.9, 550.0)


def half_step(energy, mu, tail: float = 0.1) -> float:
    """Energy (eV) where ``mu``, scaled so the mean of its last ``tail`` share
    of points is 1, first reaches 0.5 (linear interpolation); NaN if never."""
    e = np.asarray(energy, float)
    y = np.asarray(mu, float)
    n = max(1, int(round(tail * y.size)))
    level = float(np.mean(y[-n:]))
    if not np.isfinite(level) or level <= 0:
        return float("nan")
    y = y / level
    k = np.flatnonzero(y >= 0.5)
    if not k.size or k[0] == 0:
        return float("nan")
    j = int(k[0])
    return float(e[j - 1] + (0.5 - y[j - 1]) * (e[j] - e[j - 1]) / ((y[j] - y[j - 1]) or 1.0))


def half_steps(energy, mu) -> np.ndarray:
    """:func:`half_step` of each row of ``mu`` (NaN for a row with NaN)."""
    y = np.atleast_2d(np.asarray(mu, float))
    return np.array([half_step(energy, r) if np.isfinite(r).all() else np.nan for r in y])


def _area(e, y, lo, hi):
    m = (e >= lo - 1e-6) & (e <= hi + 1e-6)  # grid points on the bounds count
    yy = np.clip(y[..., m], 0, None)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has trapz only
    return trapezoid(yy, e[m], axis=-1)


def preedge_weight(energy, mu):
    """O K pre-edge weight: area 528.9 - 532.0 eV over area 528.9 - 550.0 eV
    (negative values clipped); works on ``(..., energy)`` arrays."""
    e = np.asarray(energy, float)
    y = np.asarray(mu, float)
    return _area(e, y, *O_K_PREEDGE) / _area(e, y, *O_K_TOTAL)


def _moment(e, mu, lo, hi):
    m = (e >= lo - 1e-6) & (e <= hi + 1e-6)
    y = np.clip(np.asarray(mu, float)[..., m], 0, None)
    s = y.sum(axis=-1)
    return (y * e[m]).sum(axis=-1) / np.where(s > 0, s, np.nan)


def centroid(edge: str, energy, mu):
    """First moment (eV) of the clipped spectrum over the edge's L3 window
    (:data:`L3_WINDOWS`); works on ``(..., energy)`` arrays."""
    return _moment(np.asarray(energy, float), mu, *L3_WINDOWS[edge])


def spectral_descriptors(ds) -> dict[str, np.ndarray]:
    """One number per sample and edge, in physical units.

    Returns
    -------
    dict
        ``O_K_preedge`` (:func:`preedge_weight`), ``O_K_preedge_centroid``
        (first moment over 528.9 - 532.0 eV), ``Ni_L3_centroid`` /
        ``Mn_L3_centroid`` / ``Co_L3_centroid`` (:func:`centroid`, eV),
        ``<TM>_K_edge`` (:func:`half_step`, eV), ``Li_K_peak`` (energy of the
        Li K maximum, eV).
    """
    def grid(edge):
        return np.asarray(ds[f"energy_{edge}"].values, float)

    def rows(edge):
        return np.asarray(ds[edge].values, float)

    out = {}
    if "O_K" in ds:
        out["O_K_preedge"] = preedge_weight(grid("O_K"), rows("O_K"))
        out["O_K_preedge_centroid"] = _moment(grid("O_K"), rows("O_K"), *O_K_PREEDGE)
    for el in ("Mn", "Co", "Ni"):
        if f"{el}_L23" in ds:
            out[f"{el}_L3_centroid"] = centroid(f"{el}_L23", grid(f"{el}_L23"),
                                                rows(f"{el}_L23"))
        if f"{el}_K" in ds:
            out[f"{el}_K_edge"] = half_steps(grid(f"{el}_K"), rows(f"{el}_K"))
    if "Li_K" in ds:
        y = rows("Li_K")
        pk = grid("Li_K")[np.argmax(np.nan_to_num(y, nan=-np.inf), axis=1)]
        pk[~np.isfinite(y).all(axis=1)] = np.nan
        out["Li_K_peak"] = pk
    return out


def spearman(a, b) -> tuple[float, int]:
    """Spearman's rho with tied values at their average rank (labels tie a lot:
    most Mn regions are Mn4+), and the number of samples used (both finite);
    NaN where fewer than 4 or either does not vary."""
    from scipy.stats import rankdata

    a, b = np.asarray(a, float), np.asarray(b, float)
    m = np.isfinite(a) & np.isfinite(b)
    if m.sum() < 4 or np.ptp(a[m]) == 0 or np.ptp(b[m]) == 0:
        return float("nan"), int(m.sum())
    return float(np.corrcoef(rankdata(a[m]), rankdata(b[m]))[0, 1]), int(m.sum())


#: fewest regions of a label value for its mean to count in ``monotonic``
MIN_LEVEL = 3


def levels(x, label, sign):
    """Mean descriptor per label value (oxidation states, to 0.25), and whether
    the means of the values held by at least :data:`MIN_LEVEL` regions follow
    the expected sign from each to the next."""
    x, label = np.asarray(x, float), np.asarray(label, float)
    m = np.isfinite(x) & np.isfinite(label)
    lab = np.round(label[m] * 4) / 4
    out = [[float(v), int(np.sum(lab == v)), round(float(np.mean(x[m][lab == v])), 3)]
           for v in np.unique(lab)]
    means = np.array([lv[2] for lv in out if lv[1] >= MIN_LEVEL])
    mono = bool(means.size > 1 and sign and np.all(np.sign(np.diff(means)) == sign))
    return out, mono


#: (descriptor, label, sign expected from physics)
EXPECTED = [
    ("O_K_preedge", "li_content", -1),   # holes on O 2p - TM 3d on delithiation
    ("O_K_preedge_centroid", "li_content", +1),  # new low-energy pre-edge when charged
    ("O_K_preedge", "ni_oxidation", +1),
    ("O_K_preedge", "o_vacancy", -1),    # fewer TM-O bonds, reduced TMs
    ("Ni_L3_centroid", "ni_oxidation", +1),
    ("Co_L3_centroid", "co_oxidation", +1),
    ("Mn_L3_centroid", "mn_oxidation", +1),
    ("Ni_K_edge", "ni_oxidation", +1),
    ("Co_K_edge", "co_oxidation", +1),
    ("Mn_K_edge", "mn_oxidation", +1),
    ("Li_K_peak", "li_content", 0),
    ("Ni_L3_centroid", "antisite", -1),  # Ni2+ in the Li layer
]


def trend_metrics(ds) -> list[dict]:
    """Spearman rank correlation of each descriptor with its label.

    Returns
    -------
    list of dict
        descriptor, label, rho (:func:`spearman`), n (samples used), expected
        sign (+1, -1, or 0 for no firm expectation), ``agrees`` (sign of rho
        matches), ``pearson``; for oxidation-state labels also ``levels``
        (``[state, n, mean descriptor]`` per state, to 0.25) and ``monotonic``
        (the means of the states of at least :data:`MIN_LEVEL` regions follow
        the expected sign from each to the next). A label most regions share
        (Mn4+) ties most ranks, which holds rho down however clean the trend:
        the levels show it.
    """
    desc = spectral_descriptors(ds)
    rows = []
    for d, lab, sign in EXPECTED:
        if d not in desc or lab not in ds:
            continue
        x, y = np.asarray(desc[d], float), np.asarray(ds[lab].values, float)
        rho, n = spearman(x, y)
        ok = np.isfinite(x) & np.isfinite(y)
        r = (float(np.corrcoef(x[ok], y[ok])[0, 1])
             if ok.sum() >= 4 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0 else float("nan"))
        row = {"descriptor": d, "label": lab, "rho": rho, "n": n, "expected": sign,
               "agrees": bool(sign and np.isfinite(rho) and np.sign(rho) == sign),
               "pearson": r}
        if lab.endswith("_oxidation"):
            row["levels"], row["monotonic"] = levels(x, y, sign)
        rows.append(row)
    return rows
