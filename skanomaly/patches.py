"""A nearest-neighbour memory of normal patch features, for localization.

Every location of a mid-level feature map is a patch feature: the channels
of the ``PATCH_LEVELS`` stages there, the deeper one upsampled to the
shallower one's grid. ``fit`` samples the training images' patch features
uniformly and keeps as its memory at most ``PATCH_MEMORY_SIZE`` of them,
chosen by PatchCore's greedy coreset rule (:func:`k_centres`), or with
``patch_coreset`` that share of it (:class:`PatchReservoir`); the default
explain method measures how far each patch of a new image lies from its
nearest normal patch and descends that distance. Nothing is trained: the
memory is a selection of features.
"""

import copy
import numbers

import numpy as np
import torch

from ._reservoir import reservoir_add, reservoir_slots

__all__ = [
    "PATCH_MEMORY_SIZE",
    "PatchIndex",
    "PatchReservoir",
    "k_centres",
    "nearest_patches",
    "worst_patch_distances",
]

# Rows of the memory: 16384 x 304 float32 (Lite0, both neighbourhood sizes)
# is 20 MB, the patches of about 21 images at 224 px.
PATCH_MEMORY_SIZE = 16384
# The memory is chosen by k_centres from a uniform sample of this many times
# its rows. Fitted on 300 magnetic tiles, a uniform memory of 16,384 rows
# (1 patch in 14) gave clearly weaker maps and worst-patch scores than the
# memory of every patch: a rare normal patch was often left out, and then
# measured as a defect. k-centres from four times as many recovered most of
# the gap at the same search time (docs/benchmarks.rst, The patch memory). The
# sample costs up to 80 MB during fit (Lite0, both neighbourhood sizes), and
# the selection about 3 s on a 2-core CPU once the sample is full.
_POOL_FACTOR = 4
# Centres chosen per round of k_centres, among this many times as many
# candidates.
_CENTRES_PER_ROUND = 256
_CANDIDATE_FACTOR = 4
# Rows whose gaps each product of a round updates: 8 MB of products at a
# time, which also ran faster than one product of the whole sample (1.15
# against 1.43 s for 4,096 centres of 65,536 rows).
_UPDATE_ROWS = 8192
# Rows of the memory whose leave-one-image-out distances set the threshold.
_THRESHOLD_SAMPLE = 2048
# Rows whose distances set the typical normal image's excess (the gate of
# the descent): more, as each image's mean rests on its few beyond the threshold.
_EXCESS_SAMPLE = 4 * _THRESHOLD_SAMPLE
# The share of normal patches whose nearest-neighbour distance lies below
# the threshold: the descent leaves patches under it alone.
PATCH_QUANTILE = 0.9
# Patches searched in the whole memory first (each later block twice the
# last), after a cover of about _COVER_FACTOR * sqrt(rows) of its rows has
# bounded every patch (every k-th row: any subset bounds it); after the
# first block, a finer cover of every (k // _FINER_COVER)-th row tightens
# the bounds still above the worst distance found, where that is every
# _FINEST_STEP-th row or sparser. One of half the rows cost about what it
# saved (0.9-1.1x either way). One of a third, which the default 10% score
# coreset of 1,638 rows now gets (every 13th row, then every 3rd), searched
# it 0.97-1.20x as fast as the coarse cover alone in calls of 8 images
# (median 1.08) and 1.03-1.31x in calls of one (median 1.08), on ELPV
# cells, cookies, tiles and five PIPED types (features of 60 training
# images; one A/B of 9 interleaved repeats on a 2-core AMD EPYC, 2026-12-07).
# They set the speed only, not the result. A cover search costs its patches
# times its rows; the blocks cost the memory's rows times the patches they
# search, fewer the tighter the covers bound them; so the best cover grows
# with the memory, but slower. With the finer cover behind it, a coarse
# cover of 3 * sqrt(rows) (382 rows for 16,384) searched full memories
# 1.02-1.35x and 30% coresets 0.96-1.15x faster than 4 * sqrt(rows) in
# two interleaved A/Bs of 9 repeats on five sets, in calls of 16 images
# and of one; 10% coresets (no finer cover) ran at 0.77-1.13x, median
# 0.96, about a wash. The finer cover (then 2,048 of 16,384 rows) cut the
# patches searched in the whole memory per test image from 98-111 to 32-34
# on cookies and ELPV cells and from 40-45 to 19-21 on tiles and two PIPED
# types; 16 patches and doubling the blocks took training images, which
# prune little, from 31 to 19 (tiles) and 19 to 13 ms (cookies).
_COVER_FACTOR = 3
_FINER_COVER = 4
_FINEST_STEP = 3
_SEARCH_BLOCK = 16


def nearest_patches(queries, memory, k=1, chunk=1024, memory_norms=None):
    """Distances to, and indices of, the ``k`` nearest rows of ``memory``.

    ``queries`` is ``(..., c)``, ``memory`` ``(m, c)``, both tensors; the
    distances come back sorted, ``(..., k)``. Computed in chunks of rows so
    that the distance matrix stays small. ``memory_norms``, the squared
    norms of the memory's rows, can be passed by callers that search the
    same memory many times: computing them costs as much as the product for
    a few queries.

    Raises
    ------
    ValueError
        If ``memory`` is not 2-D with at least ``k`` rows, or ``queries``'
        last axis differs from its channels. Values are not checked (that
        would cost a pass over the memory per call): NaN gives NaN distances.
    """
    if memory.ndim != 2 or not 1 <= k <= len(memory):
        raise ValueError(
            f"memory must be 2-D with at least k={k} rows; got shape {tuple(memory.shape)}."
        )
    if not isinstance(chunk, numbers.Integral) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer; got {chunk!r}.")
    if queries.ndim < 1 or queries.shape[-1] != memory.shape[1]:
        raise ValueError(
            f"queries have shape {tuple(queries.shape)}; their last axis must be "
            f"the memory's {memory.shape[1]} channels."
        )
    flat = queries.reshape(-1, queries.shape[-1])
    # |q - m|^2 = |q|^2 + (|m|^2 - 2 q.m): the nearest rows are those of the
    # smallest bracket, so the whole (chunk, m) matrix needs only the bracket.
    if memory_norms is None:
        memory_norms = memory.square().sum(1)
    distances, indices = [], []
    for start in range(0, len(flat), chunk):
        rows = flat[start : start + chunk]
        brackets = torch.addmm(memory_norms, rows, memory.T, alpha=-2)
        # min is about 3x faster than topk for the one nearest row.
        found = brackets.min(1, keepdim=True) if k == 1 else brackets.topk(k, largest=False)
        distances.append(exact_distances(rows, memory, found.indices))
        indices.append(found.indices)
    shape = (*queries.shape[:-1], k)
    return torch.cat(distances).reshape(shape), torch.cat(indices).reshape(shape)


def exact_distances(rows, memory, indices):
    """``(..., k)`` distances of each of the ``(..., c)`` ``rows`` to its
    ``(..., k)`` ``indices`` rows of ``memory``, from their differences: the
    bracket's ``|q|^2 + |m|^2 - 2 q.m`` cancels where a patch nearly equals
    a normal one, and in float32 left an error of about 0.01 on distances of
    0.03 (a normal image's worst patch, measured against its near-copies).
    Plain tensor operations, so that the exported graph traces it too."""
    return (rows[..., None, :] - memory[indices]).square().sum(-1).sqrt()


def worst_patch_distances(images, memory):
    """The largest nearest-patch distance of each image: PatchCore's image
    score (Roth et al., 2022).

    ``images`` holds each image's ``(p, c)`` patch rows (arrays or tensors),
    ``memory`` the ``(m, c)`` normal patches, or a :class:`PatchIndex` of
    them for callers that search the same memory many times; returns
    ``(len(images),)``. Exact, but only a few patches per image are searched
    in the whole memory, those of all images together: see
    :func:`_worst_patches`.

    Raises
    ------
    ValueError
        If ``memory`` is not a non-empty finite 2-D array, or an image's rows
        are not finite ``(p, c)`` with ``p >= 1`` and the memory's ``c``.
    """
    if not len(images):
        raise ValueError("images is empty: pass each image's (p, c) patch rows.")
    index = memory if isinstance(memory, PatchIndex) else PatchIndex(memory)
    images = [
        _checked_rows(rows, f"images[{i}]", index.rows.shape[1])[0].to(index.rows.dtype)
        for i, rows in enumerate(images)
    ]
    return _worst_patches(images, index)


class PatchIndex:
    """A patch memory prepared for :func:`worst_patch_distances`: checked,
    with its rows' squared norms and its cover computed once, which spares
    each later search a pass over the memory (for a single image, a good
    part of the search's cost).

    Parameters
    ----------
    memory : array-like of shape (m, c)
        The normal patches; a float32 array is shared, not copied.
    cover_rows : int, default=None
        About how many rows of the memory (every ``m // cover_rows``-th)
        bound the search first; None takes about ``3 * sqrt(m)``. A finer
        cover, of every fourth of those steps where that is every third
        row or sparser, then tightens the bounds that matter. The covers
        set the search's speed only, not its distances.

    Attributes
    ----------
    rows : torch.Tensor of shape (m, c)
        The memory as a tensor.
    norms : torch.Tensor of shape (m,)
        The rows' squared norms.
    covers : list of (torch.Tensor, torch.Tensor)
        Each cover's rows and squared norms, coarse to fine.

    Raises
    ------
    ValueError
        If ``memory`` is not a non-empty finite 2-D float array, or
        ``cover_rows`` is not a positive integer.

    Examples
    --------
    >>> import numpy as np
    >>> from skanomaly.patches import PatchIndex, worst_patch_distances
    >>> memory = np.random.default_rng(0).normal(size=(4096, 8)).astype(np.float32)
    >>> index = PatchIndex(memory)
    >>> [len(rows) for rows, _ in index.covers]
    [196, 820]
    >>> images = [memory[:10] + 0.5, memory[10:20]]
    >>> np.round(worst_patch_distances(images, index), 3)
    array([1.414, 0.   ])
    """

    def __init__(self, memory, cover_rows=None):
        self.rows, self.norms = _checked_rows(memory, "memory")
        if cover_rows is None:
            step = max(1, round(np.sqrt(len(self.rows)) / _COVER_FACTOR))
        elif isinstance(cover_rows, numbers.Integral) and cover_rows >= 1:
            step = max(1, len(self.rows) // cover_rows)
        else:
            raise ValueError(f"cover_rows must be a positive integer or None; got {cover_rows!r}.")
        finer = step // _FINER_COVER
        steps = [step] + ([finer] if finer >= _FINEST_STEP else [])
        # (rows, squared norms) of each cover, coarse to fine.
        self.covers = [(self.rows[::k], self.norms[::k]) for k in steps]


def k_centres(rows, n):
    """Indices of ``n`` of the ``(m, c)`` ``rows``, chosen greedily: each is
    the row farthest from those chosen before it, starting from row 0.

    PatchCore's coreset (Roth et al., 2022; Sener and Savarese, 2018): the
    chosen rows cover the others within about twice the smallest possible
    radius, so a patch's distance to its nearest chosen row stays close to
    its distance to the nearest row, and outlying rows, which a uniform
    subsample would drop, are kept first. Costs one pass over ``rows`` per
    chosen row, done in matrix products of up to ``_CENTRES_PER_ROUND``.
    """
    rows, norms = _checked_rows(rows, "rows")
    if not isinstance(n, numbers.Integral) or not 1 <= n <= len(rows):
        raise ValueError(f"Cannot choose {n!r} of rows of shape {tuple(rows.shape)}.")
    chosen = [0]
    # Squared distance of each row to its nearest chosen row, by
    # |r - c|^2 = |r|^2 + |c|^2 - 2 r.c.
    gaps = norms + norms[0] - 2 * rows @ rows[0]
    # A chosen row's own gap rounds to about eps * |r|^2, not 0, which
    # could outrank a near-duplicate's: -inf keeps it from coming back.
    gaps[0] = -np.inf
    while len(chosen) < n:
        new = _next_centres(rows, norms, gaps, min(_CENTRES_PER_ROUND, n - len(chosen)))
        centres, centre_norms = rows[new].T, norms[new][None, :]
        # In blocks of rows: one product over the whole sample held a
        # (rows, centres) temporary of 64 MB at PatchCore's sample size.
        for start in range(0, len(rows), _UPDATE_ROWS):
            block = slice(start, start + _UPDATE_ROWS)
            # |c|^2 - 2 r.c in one product; |r|^2 is the same for every c.
            update = torch.addmm(centre_norms, rows[block], centres, alpha=-2)
            torch.minimum(gaps[block], update.min(dim=1).values + norms[block], out=gaps[block])
        gaps[new] = -np.inf
        chosen.extend(new.tolist())
    return np.array(chosen, np.int64)


def _next_centres(rows, norms, gaps, most):
    """The next (at most ``most``) rows that the one-at-a-time greedy rule
    would choose, given each row's squared ``gaps`` to the chosen ones.

    The rule runs among the rows of largest gap only, whose gaps it updates
    exactly; it stops once the farthest of them lies nearer than the largest
    gap left outside them, which bounds every other row's (gaps only shrink),
    so each row it returns is the one the rule would take next. The first
    always is, so every round makes progress.
    """
    top = torch.topk(gaps, min(_CANDIDATE_FACTOR * most + 1, len(gaps)))
    candidates, bound = top.indices, -np.inf
    if len(candidates) > _CANDIDATE_FACTOR * most:
        candidates, bound = candidates[:-1], float(top.values[-1])
    # In row order, so that argmax breaks ties by the first row, as the rule does.
    candidates = candidates.sort().values
    candidate_gaps = gaps[candidates]
    c, c_norms = rows[candidates], norms[candidates]
    between = torch.addmm(c_norms[None, :], c, c.T, alpha=-2).add_(c_norms[:, None])
    picked = []
    while len(picked) < most:
        best = int(candidate_gaps.argmax())
        if not np.isfinite(float(candidate_gaps[best])) or (
            picked and float(candidate_gaps[best]) < bound
        ):
            break
        picked.append(best)
        torch.minimum(candidate_gaps, between[best], out=candidate_gaps)
        candidate_gaps[best] = -np.inf
    return candidates[picked]


def _checked_rows(rows, name, channels=None):
    """``(rows, squared norms)`` as tensors, refused unless finite, 2-D,
    non-empty and of ``channels`` columns (when given)."""
    rows = torch.as_tensor(rows)
    if rows.ndim != 2 or not rows.shape[0] or not rows.is_floating_point():
        raise ValueError(
            f"{name} must be a non-empty 2-D float array of patch features, one "
            f"row each; got shape {tuple(rows.shape)} and dtype {rows.dtype}."
        )
    if channels is not None and rows.shape[1] != channels:
        raise ValueError(f"{name} has {rows.shape[1]} channels but the memory has {channels}.")
    norms = rows.square().sum(1)
    # A NaN or infinity anywhere makes its row's norm one: checking the norms
    # costs nothing next to computing them, unlike a pass over the memory.
    if not torch.isfinite(norms).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    return rows, norms


def _worst_patches(images, index):
    """The largest of each image's rows' nearest distances to the memory
    of ``index`` (a :class:`PatchIndex`), for a list of ``(p_i, c)``
    tensors.

    A patch's distance to its nearest row of a cover, a subset of the
    memory, bounds its distance to the whole memory from above. Each image's
    first ``_SEARCH_BLOCK`` patches in decreasing order of that bound are
    searched in the whole memory, which gives a worst distance found; a
    finer cover then tightens the bounds still above it, and the rest are
    searched in blocks, in decreasing order of bound, until the next bound
    is no larger than the worst distance found: none of the others can
    exceed it. On magnetic tile and cookie images, normal or not, the first
    block settled most images and a few blocks the rest. An image whose
    patches all lie near the memory (a training image: some of its own
    patches are in it) prunes little, down to about the cost of searching
    every patch. All images' blocks go into one product per round: a product
    reads the whole memory, which costs about as much for 16 rows as for
    64, so one for a batch of images runs faster per patch than one each.
    """
    sizes = [len(rows) for rows in images]
    # One image, as an inspection line scores them, spares the copy.
    rows, ends = images[0] if len(images) == 1 else torch.cat(images), np.cumsum(sizes)
    coarse, *finer = index.covers
    # Bounds and indices live on the host, as numpy arrays: their
    # bookkeeping is many small steps, each several times slower in torch.
    bound = _nearest_distances(rows, coarse).cpu().numpy()
    pending = [start + np.argsort(-bound[start:end]) for start, end in zip(ends - sizes, ends)]
    worst = np.full(len(images), -np.inf)
    pending = _search_blocks(rows, bound, pending, worst, index, rounds=1)
    for cover in finer:
        tighten = np.concatenate(pending)
        if len(tighten):
            found = _nearest_distances(rows[torch.from_numpy(tighten)], cover).cpu().numpy()
            # The covers need not be nested: keep the smaller bound.
            bound[tighten] = np.minimum(bound[tighten], found)
        pending = [p[np.argsort(-bound[p])] for p in pending]
    _search_blocks(rows, bound, pending, worst, index, size=2 * _SEARCH_BLOCK)
    return worst


def _search_blocks(rows, bound, pending, worst, index, rounds=np.inf, size=_SEARCH_BLOCK):
    """Search each image's ``pending`` patches (indices into ``rows`` in
    decreasing order of ``bound``) in the whole memory, ``size`` of each
    in the first round and twice as many in each next, for ``rounds``
    rounds or until none is left whose bound exceeds the image's ``worst``
    distance, which is raised in place. Returns those left."""
    pending = _above(pending, bound, worst)
    while rounds > 0 and any(len(p) for p in pending):
        taken = [p[:size] for p in pending]
        searched = torch.from_numpy(np.concatenate(taken))
        found = _nearest_distances(rows[searched], (index.rows, index.norms)).cpu().numpy()
        for i, part in enumerate(np.split(found, np.cumsum([len(t) for t in taken])[:-1])):
            if len(part):
                worst[i] = max(worst[i], part.max())
        pending = _above([p[size:] for p in pending], bound, worst)
        # Each block twice the last: an image that prunes little is searched
        # in a few large products, which run faster per patch than many small
        # ones, and one that prunes well still stops after a small one.
        size, rounds = 2 * size, rounds - 1
    return pending


def _above(pending, bound, worst):
    """Each image's ``pending`` patches whose ``bound`` exceeds its
    ``worst`` distance: those that can still be its worst. In order of
    bound, they are a prefix."""
    return [p[bound[p] > w] for p, w in zip(pending, worst)]


def _nearest_distances(rows, cover):
    """Each of ``rows``' distance to its nearest row of ``cover``, a
    ``(rows, squared norms)`` pair."""
    return nearest_patches(rows, cover[0], memory_norms=cover[1])[0][:, 0]


class PatchReservoir:
    """A uniform sample of the patch features, with the index of the image
    each came from, and the memory :meth:`memory` chooses from it.

    Parameters
    ----------
    size : int
        Rows of the memory; the sample holds up to ``_POOL_FACTOR`` times
        as many.
    seed : int, default=0
        Seed of the sampling.
    """

    def __init__(self, size=PATCH_MEMORY_SIZE, seed=0):
        self.size = size
        self.seen = 0
        self.n_images = 0
        self.rows = None
        self.owners = None
        # Indices of the rows in the memory, and how many of its first rows
        # the image scores search (:meth:`memory` sets them).
        self.kept = None
        self.n_score = None
        self.rng = np.random.default_rng(seed)

    def add(self, patches):
        """Offer the patches of each image of a batch: a list of ``(p_i, c)``."""
        owners = np.concatenate(
            [np.full(len(p), self.n_images + i, np.int64) for i, p in enumerate(patches)]
        )
        rows = np.concatenate(patches).astype(np.float32)
        self.n_images += len(patches)
        if self.rows is None:
            self.rows = np.empty((0, rows.shape[1]), np.float32)
            self.owners = np.empty(0, np.int64)
        slots = reservoir_slots(self.rng, self.seen, len(rows), _POOL_FACTOR * self.size)
        self.rows, self.owners = reservoir_add([self.rows, self.owners], [rows, owners], slots)
        self.seen += len(rows)
        self.kept = None

    def memory(
        self, quantile=PATCH_QUANTILE, coreset=1.0, score_coreset=1.0, columns=None, cache=None
    ):
        """``(rows, threshold, excess)``: the memory, the ``quantile`` of the
        sampled patches' distances to its nearest row of another image (an
        honest normal distance: a patch's own image is left out, as a new
        image's would be), and the median over images of their sampled
        patches' mean distance beyond that threshold (how far a typical
        normal image lies beyond normal).

        The memory is the sample itself where it holds at most ``size``
        rows, else the ``size`` rows of it that :func:`k_centres` chooses;
        with ``coreset`` < 1, that share of ``size`` (or of the sample,
        where smaller), chosen the same way. Its first ``n_score`` rows,
        ``score_coreset`` times ``size`` or all where fewer, are those that
        :func:`k_centres` chooses among its rows in the columns that the
        image scores compare (``columns(rows)``; None: all), moved to the
        front: the image scores search them alone, a coreset in their own
        metric. The measured patches come from
        the whole sample either way, as new patches are measured against
        the memory. The threshold rests on 2,048 of them,
        the excess on up to four times as many: an image's mean rests on its
        few patches beyond the threshold, and from 2,048 the median varied by
        a tenth to a sixth between samples and fell short of the value from
        every patch.

        ``cache(function)``, where given, returns ``function`` through a
        cache (the detector's feature cache): the choice is a pure function
        of the sample and these settings, and most of a fit's time once the
        features come from the cache.
        """
        # From a copy of the generator: a memory made mid-stream (partial_fit,
        # then a score) must leave the draws of later add() calls as they were.
        sample = copy.deepcopy(self.rng).permutation(len(self.rows))[:_EXCESS_SAMPLE]
        choose = _choose if cache is None else cache(_choose)
        self.kept, self.n_score, threshold, excess = choose(
            self.rows, self.owners, self.size, coreset, score_coreset, columns, sample, quantile
        )
        return self.rows[self.kept], threshold, excess

    def without(self, owners, score=False):
        """The memory's rows that none of the images ``owners`` gave; if that
        leaves none, those that its first did not give; else all of them.
        With ``score``, of the rows the image scores search only.
        :meth:`memory` must have been called since the last :meth:`add`."""
        if self.kept is None:
            # Which rows the memory holds is only known once it is chosen.
            raise RuntimeError("PatchReservoir.memory() must be called before without().")
        kept = self.kept[: self.n_score] if score else self.kept
        kept_owners = self.owners[kept]
        others = ~np.isin(kept_owners, owners)
        if not others.any():
            others = ~np.isin(kept_owners, owners[:1])
        # One copy of the rows, indexed once.
        return self.rows[kept[others] if others.any() else kept]

    def copy(self):
        new = copy.copy(self)
        new.rows = None if self.rows is None else self.rows.copy()
        new.owners = None if self.owners is None else self.owners.copy()
        new.kept = None if self.kept is None else self.kept.copy()
        new.rng = copy.deepcopy(self.rng)
        return new


def _choose(rows, owners, size, coreset, score_coreset, columns, sample, quantile):
    """``(kept, n_score, threshold, excess)`` of :meth:`PatchReservoir.memory`
    for the sampled ``rows`` of images ``owners``: the indices of the
    memory's rows, how many of the first the image scores search, and the
    threshold and excess measured on the rows ``sample``."""
    n = max(1, round(coreset * min(len(rows), size)))
    kept = np.arange(len(rows)) if n == len(rows) else k_centres(rows, n)
    n_score = min(n, max(1, round(score_coreset * size)))
    if n_score < n:
        first = k_centres(rows[kept] if columns is None else columns(rows[kept]), n_score)
        rest = np.setdiff1d(np.arange(n), first, assume_unique=True)
        kept = kept[np.concatenate([first, rest])]
    nearest = _nearest_other_image(rows, owners, kept, sample)
    first = nearest[:_THRESHOLD_SAMPLE]
    first = first[np.isfinite(first)]
    # One image only: no other image to measure against.
    if not len(first):
        return kept, n_score, 0.0, 0.0
    threshold = float(np.quantile(first, quantile))
    finite = np.isfinite(nearest)
    excess = np.clip(nearest[finite] - threshold, 0, None)
    sampled_owners = owners[sample][finite]
    images, counts = np.unique(sampled_owners, return_counts=True)
    per_image = np.bincount(sampled_owners, excess)[images] / counts
    return kept, n_score, threshold, float(np.median(per_image))


def _nearest_other_image(rows, owners, kept, sample):
    """Each ``sample`` row's distance to its nearest ``kept`` row from
    another image (inf where there is none), in blocks of 2,048 rows."""
    memory, kept_owners = torch.from_numpy(rows[kept]), owners[kept]
    rows = torch.from_numpy(rows)
    nearest = np.empty(len(sample), np.float32)
    for start in range(0, len(sample), _THRESHOLD_SAMPLE):
        block = sample[start : start + _THRESHOLD_SAMPLE]
        distances = torch.cdist(rows[torch.from_numpy(block)], memory)
        same = owners[block][:, None] == kept_owners[None, :]
        distances[torch.from_numpy(same)] = np.inf
        nearest[start : start + len(block)] = distances.min(dim=1).values.numpy()
    return nearest
