"""Why a value is missing: detection threshold and the reason bit flags.

Shared by :mod:`mmspec_widgets.quantify` (``detected_<edge>``,
``quantify_reason``) and :mod:`mmspec_widgets.learn.fusion` (the maps'
``nan_reason``), which both re-export these names; pure constants and two
small functions, no xarray.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DETECTION_Z", "REASONS", "TARGET_REASONS", "reason_attrs", "explain_reasons"]

#: An edge counts as detected where its jump exceeds this many standard
#: deviations (counting + background extrapolation, ``jump_<edge>_std``).
DETECTION_Z = 3.0

#: Why a pixel's values are NaN or limited: bit flags of ``quantify_reason``
#: (and of the maps' ``nan_reason``, :meth:`~mmspec_widgets.learn.fusion.MultimodalModel.predict`),
#: stored as CF ``flag_masks`` / ``flag_meanings``; :func:`explain_reasons`
#: turns a value into words.
REASONS = {
    1: "no_O_K_jump_masked_pixel",
    2: "O_K_not_detected_vacuum_or_too_few_counts",
    4: "Li_K_not_detected_Li_not_measurable",
    8: "no_TM_L23_edge_detected_TM_fractions_not_measurable",
    16: "no_usable_edge",
    32: "an_edge_given_is_not_detected_and_was_not_used",
    64: "an_edge_was_ignored_as_far_out_of_distribution",
    128: "no_usable_Ni_edge_Ni_oxidation_NaN",
    256: "no_usable_Mn_edge_Mn_oxidation_NaN",
    512: "no_usable_Co_edge_Co_oxidation_NaN",
    1024: "TM_fractions_NaN_not_every_TM_measured",
    2048: "Li_content_NaN_Li_K_given_but_not_detected",
    4096: "a_target_the_training_set_does_not_vary_is_NaN_see_attrs_not_learnt",
}


#: the bits of :data:`REASONS` that explain a NaN of each target, most specific first
TARGET_REASONS = {"ni_oxidation": (128,), "mn_oxidation": (256,), "co_oxidation": (512,),
                  "ni_fraction": (1024, 8), "mn_fraction": (1024, 8), "co_fraction": (1024, 8),
                  "li_content": (2048, 4)}


def reason_attrs(long_name: str) -> dict:
    """CF flag attributes of a reason variable (see :data:`REASONS`)."""
    return {"long_name": long_name, "flag_masks": np.array(list(REASONS), dtype=np.int32),
            "flag_meanings": " ".join(REASONS.values())}


def explain_reasons(value: int) -> list[str]:
    """The reasons (words) packed in one value of ``quantify_reason`` / ``nan_reason``.

    Parameters
    ----------
    value : int
        Bit flags (:data:`REASONS`).

    Returns
    -------
    list of str
        One phrase per flag set; empty when none is.
    """
    v = int(value)
    return [m.replace("_", " ") for bit, m in REASONS.items() if v & bit]
