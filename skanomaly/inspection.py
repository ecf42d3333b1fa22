"""Inspection runs: a fitted detector applied to image files on disk.

The name is the industry's: in automated visual inspection a station reads
the images of parts, scores them, flags the defective ones and reports. This
module is that station's first half for the command line. It turns paths
into image files (:func:`collect_images`), reads them while skipping or
stopping at bad ones (:class:`ImageReader`), fits on them
(:func:`fit_on_files`), scores them in chunks that bound memory
(:func:`score_files`), measures a model on labelled folders
(:func:`evaluate_labelled`) and writes scores and regions as CSV;
:mod:`skanomaly.explain_report` explains the flagged ones into masks,
regions and an HTML report. :mod:`skanomaly.cli` only parses arguments and
calls these.

Errors meant for the user are :class:`~skanomaly._console.UsageError` (exit
code 2) and :class:`~skanomaly._console.ImageReadError` (exit code 1), and
warnings are ``skanomaly: warning:`` lines on stderr.
"""

import csv
import sys
from pathlib import Path

import numpy as np

from ._console import ImageReadError, UsageError, warn
from ._files import IMAGE_EXTENSIONS, atomic_write, list_images
from ._progress import progress as progress_bar

__all__ = [
    "REGION_COLUMNS",
    "ImageReader",
    "calibrate_on_files",
    "collect_images",
    "first_line",
    "fit_detector",
    "fit_on_files",
    "format_table",
    "score_files",
    "score_rows",
    "summary",
    "write_csv",
    "write_regions_csv",
]

# Images read and scored per step: bounds memory on large folders.
CHUNK = 64
# Fewer where their pixels take this many bytes (512 MiB): 64 RGB images of
# 2.8 megapixels, or about 15 of 12.
CHUNK_BYTES = 2**29
#: The columns of a regions CSV: the image's path, then those of
#: :func:`skanomaly.segmentation.region_table` but its index.
REGION_COLUMNS = ("path", "region", "area", "top", "left", "bottom", "right", "peak", "mean")


# ------------------------------------------------------------------ input
def collect_images(paths):
    """Expand image files and folders to a list of files.

    A folder stands for its image files, not recursively; hidden files
    (names starting with ``"."``) are skipped, and its other files are
    counted in one warning.

    Parameters
    ----------
    paths : list of str or path-like
        Image files and folders.

    Returns
    -------
    files : list of pathlib.Path

    Raises
    ------
    UsageError
        If a path does not exist or a folder holds no image files.
    """
    files, ignored = [], 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images, n_other = list_images(path)
            if not images:
                what = f" (only {n_other} non-image file(s))" if n_other else ""
                raise UsageError(
                    f"folder {str(path)!r} holds no image files{what}; expected "
                    + ", ".join(IMAGE_EXTENSIONS)
                )
            ignored += n_other
            files.extend(images)
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{str(path)!r} does not exist")
    if ignored:
        warn(f"ignored {ignored} non-image file(s) in the given folder(s)")
    return files


def first_line(exc):
    """The first line of an exception's message (or its type's name)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class ImageReader:
    """Reads images one by one, skipping (or, ``strict``, stopping at) bad ones.

    Parameters
    ----------
    strict : bool
        Raise :class:`~skanomaly._console.ImageReadError` at the first
        unreadable image instead of warning and skipping it.

    Attributes
    ----------
    skipped : list of path-like
        The images skipped so far.
    """

    def __init__(self, strict):
        self.strict = strict
        self.skipped = []

    def read(self, path):
        """The image at ``path`` as an array, or None if it was skipped."""
        # _images imports torch, which `skanomaly --help` must not wait for.
        from ._images import read_image

        try:
            return read_image(path)
        except (ValueError, OSError) as exc:
            if self.strict:
                raise ImageReadError(first_line(exc)) from exc
            warn(f"skipping an unreadable image: {first_line(exc)}")
            self.skipped.append(path)
            return None

    def chunks(self, files, *, progress=False, desc="Reading"):
        """Yield ``(paths, images)``, the readable files of each run of
        :data:`CHUNK` files (fewer where their pixels pass
        :data:`CHUNK_BYTES`) and their arrays, so that one chunk at a time is
        in memory; chunks with none readable are left out. The bar advances
        once the caller is done with a chunk."""
        with progress_bar(enabled=progress, total=len(files), desc=desc) as bar:
            paths, images, tried, size = [], [], 0, 0
            for index, path in enumerate(files):
                image = self.read(path)
                tried += 1
                if image is not None:
                    paths.append(path)
                    images.append(image)
                    size += image.nbytes
                if tried == CHUNK or size >= CHUNK_BYTES or index == len(files) - 1:
                    if images:
                        yield paths, images
                    bar.update(tried)
                    paths, images, tried, size = [], [], 0, 0

    def readable(self, files, *, progress=False):
        """The readable ``files``, each read once to check it and let go: for
        the detector to read again from disk, a batch at a time."""
        bar = progress_bar(files, enabled=progress, total=len(files), desc="Reading")
        return [path for path in bar if self.read(path) is not None]

    def report(self):
        """Warn once about the number of images skipped, if any."""
        if self.skipped:
            warn(f"{len(self.skipped)} unreadable image(s) skipped")


# -------------------------------------------------------------------- fit
def fit_detector(detector, images, holdout, seed=0, pixel_fpr=0.01):
    """Fit ``detector`` on ``images`` and set its pixel threshold; with
    ``holdout`` > 0, set both thresholds from held-out images instead of
    out-of-fold training scores and maps.

    A random ``holdout`` fraction of the images is kept out of the fit and
    :meth:`~skanomaly.EfficientNetGaussianDetector.calibrate` sets
    ``offset_`` from their scores at a false-positive rate of
    ``contamination``, so about that fraction of new normal images is
    flagged; :meth:`~skanomaly.EfficientNetGaussianDetector.calibrate_pixels`
    sets ``pixel_threshold_`` from their maps at ``pixel_fpr``, or from the
    training sample without a hold-out, so that model files carry it. Too
    few images to hold any out (or to fit on the rest) fall back, with a
    warning, to out-of-fold training scores.

    Returns
    -------
    n_hold : int
        The number of held-out images (0 when the threshold comes from
        out-of-fold training scores).
    """
    from ._base import fewest_images

    n_hold = round(holdout * len(images))
    if holdout > 0 and (n_hold < 1 or len(images) - n_hold < fewest_images(detector)):
        warn(
            f"too few images ({len(images)}) to hold out {holdout:g} of them; the "
            "threshold comes from out-of-fold training scores"
        )
        n_hold = 0
    if n_hold == 0:
        detector.fit(images).calibrate_pixels(fpr=pixel_fpr)
        return 0
    order = np.random.default_rng(seed).permutation(len(images))
    held = set(order[:n_hold].tolist())
    detector.fit([im for i, im in enumerate(images) if i not in held])
    held_out = [images[i] for i in sorted(held)]
    detector.calibrate(held_out, fpr=detector.contamination)
    detector.calibrate_pixels(held_out, fpr=pixel_fpr)
    return n_hold


def fit_on_files(detector, files, reader, *, holdout, seed, progress, pixel_fpr=0.01):
    """:func:`fit_detector` on the readable ``files``.

    Each file is read once to check it, before the network runs (so that
    ``--strict`` stops early), and let go; the detector is handed the
    readable paths and reads them again a batch at a time, so memory does
    not grow with the folder.

    Returns
    -------
    n_fit, n_hold : int
        The number of images fitted on, and of those held out to set the
        threshold.

    Raises
    ------
    UsageError
        If fewer than 2 images are readable (1 with augmented views), or the
        fit refuses the images or the detector's parameters.
    """
    readable = reader.readable(files, progress=progress)
    reader.report()
    # One image is enough with augmented views of it (a Gaussian needs 2 samples).
    if len(readable) < (1 if detector.augment else 2):
        raise UsageError(
            "fitting needs at least 2 readable normal images, or one with --augment; "
            f"got {len(readable)}"
        )
    try:
        n_hold = fit_detector(detector, readable, holdout, seed, pixel_fpr)
    except ValueError as exc:
        raise UsageError(first_line(exc)) from exc
    return len(readable) - n_hold, n_hold


def calibrate_on_files(detector, files, reader, *, fpr, pixel_fpr, progress):
    """Set both thresholds of the fitted ``detector`` from the readable
    ``files``: :meth:`~skanomaly.EfficientNetGaussianDetector.calibrate`
    at ``fpr`` and
    :meth:`~skanomaly.EfficientNetGaussianDetector.calibrate_pixels` at
    ``pixel_fpr``. The detector reads them from disk a batch at a time.

    Returns
    -------
    n_images : int
        The number of images read.

    Raises
    ------
    UsageError
        If no image is readable, or the detector refuses the images.
    """
    readable = reader.readable(files, progress=progress)
    reader.report()
    if not readable:
        raise UsageError("calibrating needs at least one readable normal image; got 0")
    try:
        detector.calibrate(readable, fpr=fpr).calibrate_pixels(readable, fpr=pixel_fpr)
    except ValueError as exc:
        raise UsageError(first_line(exc)) from exc
    return len(readable)


# ---------------------------------------------------------------- scoring
def score_files(detector, files, reader, progress, on_image=None, with_levels=False):
    """Score ``files`` a chunk at a time (:meth:`ImageReader.chunks`).

    Parameters
    ----------
    detector : EfficientNetGaussianDetector
        A fitted detector.
    files : list of path-like
        The images to score.
    reader : ImageReader
        Reads them, and records the skipped ones.
    progress : bool
        Show a progress bar on stderr.
    on_image : callable, default=None
        ``on_image(index_in_kept, path, image)`` is called for each readable
        image while it is in memory (e.g. to write its thumbnail).
    with_levels : bool, default=False
        Also return the ``level_distances``, from the same forward pass.

    Returns
    -------
    kept : list of path-like
        The readable files, in order.
    scores : ndarray of shape (len(kept),)
        Their ``score_samples``.
    distances : ndarray of shape (len(kept), n_levels) or None
        Their ``level_distances`` with ``with_levels``.
    """
    kept, scores, distances = [], [], []
    for paths, images in reader.chunks(files, progress=progress, desc="Scoring"):
        if on_image is not None:
            for i, (path, image) in enumerate(zip(paths, images)):
                on_image(len(kept) + i, path, image)
        if with_levels:
            chunk_distances, chunk_scores = detector.level_distances(images, return_scores=True)
            distances.append(chunk_distances)
        else:
            chunk_scores = detector.score_samples(images)
        scores.append(chunk_scores)
        kept.extend(paths)
    scores = np.concatenate(scores) if scores else np.empty(0)
    if not with_levels:
        return kept, scores, None
    return kept, scores, np.concatenate(distances) if distances else None


def _relative(path):
    """``path`` relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def score_rows(files, scores, offset, display=None):
    """One dict per image: ``path``, ``score``, ``anomaly_score``,
    ``decision`` and ``label`` ("normal" or "anomalous").

    ``path`` is ``display[i]`` when given, else the file's path relative to
    the working directory when inside it.
    """
    decision = scores - offset
    labels = np.where(decision < 0, "anomalous", "normal")
    return [
        {
            "path": display[i] if display is not None else _relative(path),
            "score": float(scores[i]),
            "anomaly_score": float(-scores[i]),
            "decision": float(decision[i]),
            "label": str(labels[i]),
        }
        for i, path in enumerate(files)
    ]


def write_csv(rows, target):
    """Write the :func:`score_rows` ``rows`` as CSV to ``target`` (``"-"``:
    stdout).

    A file is written with :func:`~skanomaly._files.atomic_write`: an
    interrupted write leaves the previous file as it was.
    """
    _write_table(_write_rows, rows, target)


def write_regions_csv(rows, target):
    """Write region ``rows`` (dicts with the keys of :data:`REGION_COLUMNS`)
    as CSV to ``target`` (``"-"``: stdout), as :func:`write_csv` does."""
    _write_table(_write_region_rows, rows, target)


def _write_table(write, rows, target):
    if target == "-":
        write(rows, sys.stdout)
        return
    try:
        # A file name that is not UTF-8 (its bytes are surrogates in Python)
        # goes into the file as those bytes, so that it names the file still.
        with atomic_write(
            target, "w", newline="", encoding="utf-8", errors="surrogateescape"
        ) as handle:
            write(rows, handle)
    except OSError as exc:
        raise UsageError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from exc


def _write_rows(rows, handle):
    writer = csv.writer(handle)
    writer.writerow(["path", "score", "anomaly_score", "decision", "label"])
    for row in rows:
        writer.writerow(
            [
                row["path"],
                f"{row['score']:.6g}",
                f"{row['anomaly_score']:.6g}",
                f"{row['decision']:.6g}",
                row["label"],
            ]
        )


def _write_region_rows(rows, handle):
    writer = csv.writer(handle)
    writer.writerow(REGION_COLUMNS)
    for row in rows:
        writer.writerow(
            [f"{row[c]:.6g}" if isinstance(row[c], float) else row[c] for c in REGION_COLUMNS]
        )


def format_table(rows):
    """The :func:`score_rows` ``rows`` as a text table, one line each."""
    lines = [f"{'anomaly_score':>13}  {'label':<9}  path"]
    lines += [f"{row['anomaly_score']:>13.4g}  {row['label']:<9}  {row['path']}" for row in rows]
    return "\n".join(lines)


# The exact pixel metrics sort every pixel of the set at once, tens of bytes
# each; past this many pixels both are binned image by image on a grid of
# thresholds, which bounds the memory at a negligible difference
# (benchmarks/results/pixel_metrics.md).
_EXACT_PIXELS = 20_000_000
_GRID = 10_000


def evaluate_labelled(
    detector, X, y, masks=None, defect_type=None, pixel_threshold=None, min_area=1
):
    """How well a fitted ``detector`` separates labelled images (``y``: +1
    normal, -1 anomalous; both must be present). A dict of:

    - ``image_auroc``, ``average_precision`` (of the anomalous class),
      ``scores`` and ``flagged`` (per image: what ``predict`` flags at the
      model's threshold);
    - with boolean ``masks`` (all False for normal images), :meth:`explain`'s
      ``maps``, their ``pixel_auroc`` and ``au_pro`` (up to a false-positive
      rate of 0.3, as in MVTec AD; ``num_thresholds`` of the grid they were
      binned on, None where exact), ``quiet_pixel_threshold`` (the lowest
      pixel threshold that outlines no region on the normal images, see
      :func:`_between`) and ``quiet_regions``, the
      :func:`~skanomaly.metrics.region_hits` of the maps at it;
    - with a ``pixel_threshold`` (the model's, kept for the report's
      outlines), and masks, ``regions``: the region hits at it;
    - ``min_area``: regions of fewer pixels are left out of all of these
      (and of the report's outlines);
    - with each image's ``defect_type``, ``per_type``: for each type, on its
      images and the normal ones, ``n_images``, ``image_auroc``, ``recall``
      and, with masks, ``pixel_auroc`` and ``au_pro``, and ``defects`` and
      ``found`` with the regions.
    """
    from sklearn.metrics import average_precision_score

    from .metrics import image_roc_auc, region_hits

    scores = detector.score_samples(X)
    flagged = scores < detector.offset_
    result = {
        "image_auroc": image_roc_auc(y, scores),
        "average_precision": float(average_precision_score(y == -1, -scores)),
        "scores": scores,
        "flagged": flagged,
    }
    if masks is not None:
        result["maps"] = detector.explain(X)
        n_pixels = sum(np.size(mask) for mask in masks)
        result["num_thresholds"] = _GRID if n_pixels > _EXACT_PIXELS else None
        result["pixel_auroc"], result["au_pro"] = _map_metrics(
            masks, result["maps"], result["num_thresholds"]
        )
        quiet = _quiet_pixel_threshold(result["maps"], y, min_area)
        result["quiet_pixel_threshold"] = quiet
        result["quiet_regions"] = region_hits(masks, result["maps"], quiet, min_area)
        if pixel_threshold is not None:
            result["regions"] = region_hits(masks, result["maps"], pixel_threshold, min_area)
    if pixel_threshold is not None:
        result["pixel_threshold"] = pixel_threshold
    result["min_area"] = min_area
    if defect_type is not None:
        result["per_type"] = {
            kind: _type_metrics(result, y, defect_type == kind, masks)
            for kind in np.unique(defect_type[y == -1])
        }
    return result


def _quiet_pixel_threshold(maps, y, min_area):
    """The lowest pixel threshold that outlines no region of ``min_area``
    pixels or more on the normal images (``y == 1``): between the highest of
    their :func:`_quiet_value` and the next value of any map, as the
    shortest float that parses back to itself."""
    lowest = max(_quiet_value(maps[i], min_area) for i in np.flatnonzero(y == 1))
    return float(_just_above(lowest, np.concatenate([m[m > lowest] for m in maps])))


def _quiet_value(anomaly_map, min_area):
    """The lowest value of ``anomaly_map`` above which it has no region of
    ``min_area`` pixels or more: its maximum for single pixels, else found
    by bisection, as regions only shrink while the threshold rises."""
    from .segmentation import masks_from_maps

    if min_area == 1:
        return float(anomaly_map.max())
    values = np.unique(anomaly_map)
    low, high = 0, len(values) - 1  # nothing lies above values[-1]
    while low < high:
        middle = (low + high) // 2
        if masks_from_maps([anomaly_map], values[middle], min_area)[0].any():
            low = middle + 1
        else:
            high = middle
    return float(values[high])


def _type_metrics(result, y, ours, masks):
    """The metrics of the images of one defect type (``ours``) against the
    normal ones."""
    from ._map_checks import missing_class
    from .metrics import image_roc_auc

    both = (y == 1) | ours
    metrics = {
        "n_images": int(ours.sum()),
        "image_auroc": image_roc_auc(y[both], result["scores"][both]),
        "recall": float(result["flagged"][ours].mean()),
    }
    if masks is not None:
        subset = _subset(both, masks, result["maps"])
        # A type whose masks are all empty has no defect pixel to measure
        # the maps on; the others still have theirs.
        if missing_class(subset[0]) is None:
            pixel_auroc, au_pro = _map_metrics(*subset, result["num_thresholds"])
            metrics.update(pixel_auroc=pixel_auroc, au_pro=au_pro)
        else:
            metrics["empty_masks"] = True
    if "regions" in result:
        metrics.update({k: int(result["regions"][k][ours].sum()) for k in ("defects", "found")})
    return metrics


def _map_metrics(masks, maps, num_thresholds):
    """Pixel AUROC and AU-PRO (FPR <= 0.3, as in MVTec AD) of ``maps``, on a
    grid of ``num_thresholds`` (None: exact)."""
    from .metrics import pixel_roc_auc, pro_score

    return (
        pixel_roc_auc(masks, maps, num_thresholds),
        pro_score(masks, maps, max_fpr=0.3, num_thresholds=num_thresholds),
    )


def _subset(keep, *sequences):
    """The items of each array or list of ``sequences`` where ``keep``."""
    return [[items[i] for i in np.flatnonzero(keep)] for items in sequences]


def evaluation_report(result, y, filenames, threshold, max_listed=10):
    """The lines ``skanomaly evaluate`` prints for an :func:`evaluate_labelled`
    ``result``: the image metrics, the counts flagged at ``threshold`` (on
    ``anomaly_score``) and at the two thresholds that flag every defective
    image and no normal one, the metrics of each defect type where the
    result has them, then up to ``max_listed`` misjudged
    images by name: the normal ones flagged, most anomalous first, then the
    defective ones missed, least anomalous first; and the map metrics if
    measured."""
    scores, flagged = result["scores"], result["flagged"]
    false_alarms = np.flatnonzero(flagged & (y == 1))
    missed = np.flatnonzero(~flagged & (y == -1))
    n_normal, n_anomalous = int((y == 1).sum()), int((y == -1).sum())
    n_found = n_anomalous - len(missed)
    lines = [
        f"Evaluated on {n_normal} normal and {n_anomalous} defective image(s): image AUROC "
        f"{result['image_auroc']:.3f}, average precision {result['average_precision']:.3f}",
        f"At the model's threshold (anomaly_score > {threshold:.4g}): {len(false_alarms)}/"
        f"{n_normal} normal images flagged (false-alarm rate "
        f"{len(false_alarms) / n_normal:.1%}), {n_found}/{n_anomalous} defective ones "
        f"(recall {n_found / n_anomalous:.1%})",
        _operating_points(-scores, y),
    ]
    lines += [_type_line(kind, metrics) for kind, metrics in result.get("per_type", {}).items()]
    wrong = np.r_[
        false_alarms[np.argsort(scores[false_alarms])], missed[np.argsort(-scores[missed])]
    ]
    lines += [
        f"  {'false alarm' if y[i] == 1 else 'missed'}: {filenames[i]} "
        f"(anomaly_score {-scores[i]:.4g})"
        for i in wrong[:max_listed]
    ]
    if 0 < max_listed < len(wrong):
        lines.append(f"  ... and {len(wrong) - max_listed} more")
    if "au_pro" in result:
        grid = result["num_thresholds"]
        lines.append(
            f"Heat maps: pixel AUROC {result['pixel_auroc']:.3f}, "
            f"AU-PRO (FPR <= 0.3) {result['au_pro']:.3f}"
            + (f" (on a grid of {grid:,} thresholds, for so many pixels)" if grid else "")
        )
    sized = "" if result["min_area"] == 1 else f" of {result['min_area']}+ pixels"
    if "regions" in result:
        lines.append(_regions_line(result["regions"], result["pixel_threshold"], y, sized))
    if "quiet_regions" in result:
        quiet = result["quiet_pixel_threshold"]
        lines.append(_quiet_line(result["quiet_regions"], quiet, y, sized))
    return "\n".join(lines)


def _quiet_line(regions, threshold, y, sized=""):
    """The line on the lowest pixel threshold that outlines nothing on the
    normal images, as typed back (``calibrate --pixel-threshold``); the
    regions ``sized`` (" of N+ pixels") where a minimum area applies."""
    found, share = _found(regions)
    return (
        f"A pixel threshold of {threshold!r} would outline no region{sized} on the "
        f"{int((y == 1).sum())} normal images and find {found} defects{share}, "
        f"with {int(regions['false_regions'].sum())} region(s) outside every defect"
    )


def _regions_line(regions, threshold, y, sized=""):
    """The line on the regions (``sized`` as for :func:`_quiet_line`) that
    the maps outline at the pixel threshold."""
    found, share = _found(regions)
    false, on_normal = regions["false_regions"], regions["false_regions"][y == 1]
    where = (
        f"{int(on_normal.sum())} of them on {int((on_normal > 0).sum())}/{len(on_normal)}"
        if on_normal.any()
        else f"none on the {len(on_normal)}"
    )
    return (
        f"Regions{sized} at the model's pixel threshold (map > {threshold:.6g}): {found} "
        f"defects found{share}; {int(false.sum())} region(s) outside every defect, "
        f"{where} normal images"
    )


def _found(regions):
    """``("found/defects", " (share)")`` of region hits, as both lines print
    them (no share without defects)."""
    defects, found = int(regions["defects"].sum()), int(regions["found"].sum())
    return f"{found}/{defects}", f" ({found / defects:.1%})" if defects else ""


def _operating_points(anomaly, y):
    """The line on the two thresholds an inspection weighs: the one that
    flags every defective image and the fewest normal ones, and the one
    that flags no normal image and the most defective ones; each printed
    between two scores (:func:`_between`), so that it can be typed back as
    printed (``calibrate --threshold``)."""
    normal, defective = anomaly[y == 1], anomaly[y == -1]
    lowest, highest = defective.min(), normal.max()
    below = anomaly[anomaly < lowest]
    catch_all = _between(below.max() if below.size else lowest - 1, lowest)
    quiet = _just_above(highest, anomaly[anomaly > highest])
    n_alarms = int((normal > float(catch_all)).sum())
    n_caught = int((defective > float(quiet)).sum())
    return (
        f"A threshold of {catch_all} would flag every defective image and "
        f"{n_alarms}/{len(normal)} normal ones ({n_alarms / len(normal):.1%}); one of "
        f"{quiet} no normal image and {n_caught}/{len(defective)} defective ones "
        f"({n_caught / len(defective):.1%})"
    )


def _just_above(low, above):
    """A threshold just above ``low``, as :func:`_between` prints it: below
    the smallest of ``above`` (the values larger than ``low``), or where
    there is none, below ``low`` plus its magnitude (at least 1), a step
    that a float that large does not lose."""
    return _between(low, above.min() if above.size else low + max(abs(low), 1))


def _between(low, high):
    """The midpoint of two different scores written with the fewest
    significant digits (at least 4) whose value still lies strictly between
    them: close scores need more digits than 4, or the threshold typed back
    would fall on one of them."""
    middle = (low + high) / 2
    for digits in range(4, 18):
        text = f"{middle:.{digits}g}"
        if low < float(text) < high:
            return text
    return repr(float(middle))


def _type_line(kind, metrics):
    """The line of one defect type's :func:`_type_metrics`."""
    line = (
        f"  {kind} ({metrics['n_images']} image(s)): image AUROC "
        f"{metrics['image_auroc']:.3f}, recall {metrics['recall']:.1%}"
    )
    if "au_pro" in metrics:
        line += f", pixel AUROC {metrics['pixel_auroc']:.3f}, AU-PRO {metrics['au_pro']:.3f}"
    if metrics.get("empty_masks"):
        line += ", no pixel metrics (its masks mark no defect pixel)"
    if "found" in metrics:
        line += f", defects found {metrics['found']}/{metrics['defects']}"
    return line


def summary(rows, threshold):
    """One line: how many images were scored and how many are anomalous."""
    n_bad = sum(r["label"] == "anomalous" for r in rows)
    return (
        f"{len(rows)} image(s) scored, {n_bad} anomalous "
        f"(anomaly_score > threshold {threshold:.4g})"
    )
