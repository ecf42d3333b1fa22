"""Algorithm R, for the bounded samples that ``fit`` keeps.

The training rows of the out-of-fold threshold (:class:`~skanomaly.threshold.Reservoir`)
and the patch memory (:class:`~skanomaly.patches.PatchReservoir`) are uniform
samples of a stream of unknown length; each asks this module which slot a
new item takes. (The sample of images, ``InputSample``, draws keys instead,
for a second sample nested in the first.)
"""

import numpy as np

__all__ = ["reservoir_add", "reservoir_slots"]


def reservoir_slots(rng, seen, n, size):
    """The slot that each of ``n`` new items takes in a uniform sample of at
    most ``size`` items, after ``seen`` items; -1 for an item not kept.

    Algorithm R (Vitter, 1985): the first ``size`` items fill the slots in
    order; item number ``t`` (from 0) then replaces a random slot with
    probability ``size / (t + 1)``. One vectorized draw gives the same
    numbers as offering the items one by one.
    """
    t = seen + np.arange(n)
    slots = t.copy()
    late = t >= size
    slots[late] = rng.integers(0, t[late] + 1)
    slots[slots >= size] = -1
    return slots


def reservoir_add(kept, new, slots):
    """Place new items into the sample: ``kept`` and ``new`` are lists of
    arrays that share their first axis (an item is one index of all of
    them), ``slots`` comes from :func:`reservoir_slots`. Returns the updated
    arrays; items taking the same slot leave the later one there, as if
    offered one by one."""
    # Until the sample is full, item i fills slot len + i; a later item's
    # random slot always lies below that.
    grow = slots == len(kept[0]) + np.arange(len(slots))
    kept = [np.concatenate([k, a[grow]]) for k, a in zip(kept, new, strict=True)]
    replace = (slots >= 0) & ~grow
    for k, a in zip(kept, new, strict=True):
        k[slots[replace]] = a[replace]
    return kept
