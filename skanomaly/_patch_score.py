"""The image scores that use the worst patch: ``image_score="pooled+patches"``
(the pooled distance plus the worst patch's) and ``"patches"`` (the worst
patch's alone).

A small defect changes a few patches and barely moves a globally pooled
feature; PatchCore (Roth et al., 2022) scores an image by its worst patch
instead, the largest distance of a patch feature to its nearest normal
patch. The two distances live on different scales, so for the sum each is
standardised by normal images alone: the pooled one by the training images'
out-of-fold distances, the patch one by training images measured against
the patch memory without their own patches, as a new image would be. The
worst patch alone needs no Gaussian and no spread, so it also scores with
one or two normal images: the few-shot recipe of nearest-patch detectors
such as AnomalyDINO (Damm et al., 2025).

Where ``patch_neighborhood`` puts several sizes side by side for the maps,
the image scores compare the features of the widest size alone: image
scores need no fine position, and the 3 x 3 averages score images better
than single locations do (benchmarks/results/fusion.md; left_out.md on
tiles no choice had seen).
"""

import warnings

import numpy as np

from ._constants import CALIBRATE_ADVICE
from ._stacklevel import user_stacklevel
from ._stream import SCORE_SAMPLE_SIZE
from .gaussian import combine_levels
from .patches import worst_patch_distances
from .threshold import conformal_offset, out_of_fold_distances

__all__ = [
    "FEWEST_FOR_SUM",
    "check_image_score",
    "fused_scores",
    "patch_part",
    "score_columns",
    "score_neighborhood",
    "statistics",
]


#: The fewest normal images ``"pooled+patches"`` fits on: each image's
#: pooled distance is standardised against the others'.
FEWEST_FOR_SUM = 3


def check_image_score(image_score, threshold, n_images=None):
    """Refuse what the patch score cannot be standardised or thresholded
    with; ``n_images`` None leaves the count to be checked later (a
    partial_fit stream has not ended)."""
    if image_score == "pooled":
        return
    if threshold == "chi2":
        raise ValueError(
            "threshold='chi2' is the law of the pooled distances alone; with "
            f"image_score={image_score!r} use threshold='out_of_fold'."
        )
    # Two images are each other's only reference: both get the same pooled
    # distance, which no spread can standardise.
    if image_score == "pooled+patches" and n_images is not None and n_images < FEWEST_FOR_SUM:
        raise ValueError(
            f"image_score={image_score!r} standardises each training image's "
            f"scores against the other images, so it needs at least {FEWEST_FOR_SUM} normal "
            f"images; got {n_images}. For fewer, use image_score='pooled' (the "
            "pooled Gaussians alone) or 'patches' (the worst patch alone); on the "
            "command line, --image-score."
        )


def score_neighborhood(neighborhood):
    """The size whose patch features the image scores compare: the widest
    of a ``patch_neighborhood`` tuple, or the one size."""
    return max(neighborhood) if isinstance(neighborhood, tuple) else neighborhood


def score_columns(rows, neighborhood):
    """The columns of patch ``rows`` (an array: the memory, or an image's
    patches; made with ``neighborhood``) that hold the features of
    :func:`score_neighborhood`: the last block, as
    :func:`~skanomaly.features.patch_features` puts the sizes side by side
    in increasing order; contiguous, so that the search reads rows whole."""
    if not isinstance(neighborhood, tuple):
        return rows
    return np.ascontiguousarray(rows[:, -(rows.shape[1] // len(neighborhood)) :])


def fused_scores(distances, worst, center, scale):
    """Normality scores: minus the standardised sum of the combined pooled
    ``distances`` and the ``worst`` patch distances, ``(n,)`` arrays or
    tensors each (the exported graph traces it)."""
    return -((distances - center[0]) / scale[0] + (worst - center[1]) / scale[1])


def patch_part(scores, distances, center, scale):
    """The standardised worst-patch part of fused ``scores``, given their
    combined pooled ``distances``: :func:`fused_scores` solved for it."""
    return -scores - (distances - center[0]) / scale[0]


def statistics(image_score, state, pooled_normal, rule, contamination):
    """``(score_center_, score_scale_, offset_)`` of a fit's ``state``.

    The worst patch of each image of ``state.sample`` (at most 64) is
    measured against the patch memory without its own patches (a single
    image against its augmented views, with a warning: they resemble it
    more than new images do). For ``"patches"`` the score is minus that
    distance: no standardisation (None, None). For the sum, the
    pooled part is standardised by ``pooled_normal``, the training images'
    out-of-fold combined distances, and the patch part by those worst
    patches. ``offset_`` is the conformal ``contamination`` quantile of
    those images' scores (their pooled part out of fold too; their augmented
    views stay in the moments, as only the images are kept). Averaged over
    draws of training images, it aims to flag at most ``contamination`` of
    new normal images, or ``1 / (n + 1)`` where that is larger (1.5% for 64
    images): exactly so were their scores exchangeable with new images'.
    One fit's rate scatters around that, the less the more images it has,
    and ``calibrate`` on more images narrows it.
    """
    if image_score == "patches":
        _, worst = _held_out_sample(state)
        if len(worst) == 1:
            warnings.warn(
                "offset_ comes from the only training image measured against its own "
                "augmented views, which resemble it more than new images do, so predict "
                f"may flag most new normal images. {CALIBRATE_ADVICE}, or rank by "
                "score_samples.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        return None, None, _offset(-worst, contamination)
    rows, worst = _held_out_sample(state)
    pooled = combine_levels(out_of_fold_distances(state.moments, rows, npca=state.npca), rule)
    center = np.array([pooled_normal.mean(), worst.mean()])
    scale = np.array([pooled_normal.std(ddof=1), worst.std(ddof=1)])
    if not (scale > 0).all():
        part = "pooled distances" if scale[0] <= 0 else "worst-patch distances"
        raise ValueError(
            f"The training images' {part} do not vary (too few different "
            "images); fit on more normal images, or use image_score='pooled'."
        )
    return center, scale, _offset(fused_scores(pooled, worst, center, scale), contamination)


def _held_out_sample(state):
    """The pooled features (one array per level) and worst-patch distances
    of the images of ``state.sample``, each against the patch memory
    without its own patches, from the features the fit's pass kept."""
    rows, worst = [], []
    for index, (pooled, patch_rows) in enumerate(state.sample.features):
        _, memory = state.leave_out(index, [], score=True)
        memory = score_columns(memory, state.patch_neighborhood)
        worst.append(worst_patch_distances([patch_rows], memory))
        rows.append(pooled)
    return [np.concatenate(level) for level in zip(*rows)], np.concatenate(worst)


def _offset(scores, contamination):
    """The conformal offset of the training images' ``scores``, with a
    warning where they are fewer than the sample's ``SCORE_SAMPLE_SIZE``
    (whose floor of 1 in 65 is documented) and too few for ``contamination``
    (one image has a warning of its own)."""
    n = len(scores)
    if 1 < n < SCORE_SAMPLE_SIZE and contamination < 1 / (n + 1):
        warnings.warn(
            f"offset_ rests on the {n} training images, so it flags about 1 in "
            f"{n + 1} new normal images ({1 / (n + 1):.0%}) on average, more than "
            f"contamination={contamination:g}. {CALIBRATE_ADVICE}, or fit on more images.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    with warnings.catch_warnings():
        # Its own warning speaks of calibration images.
        warnings.simplefilter("ignore", UserWarning)
        offset, _ = conformal_offset(scores, contamination)
    return offset
