"""Explained inspection runs: maps, masks, regions and the HTML report.

:func:`explain_and_report` scores image files with their per-level distances
(:func:`~skanomaly.inspection.score_files`), explains the flagged ones,
thresholds their maps at the detector's pixel threshold into masks and
regions (:mod:`skanomaly.segmentation`), draws heat-map overlays with the
regions outlined and writes the HTML report (:mod:`skanomaly.report`),
``scores.csv`` and, if asked, a regions CSV. :func:`explain_regions` finds
the regions alone (``skanomaly score --regions``), and :func:`run_demo`
chains it all on real solar cells.
"""

import re
from pathlib import Path

import numpy as np

from ._console import UsageError, warn
from ._files import write_png
from ._progress import progress as progress_bar
from ._resize import resize_bilinear, shrink_image
from .inspection import (
    CHUNK,
    ImageReader,
    first_line,
    fit_on_files,
    score_files,
    score_rows,
    summary,
    write_csv,
    write_regions_csv,
)
from .report import color_scale, score_histogram, write_report

__all__ = [
    "explain_and_report",
    "explain_regions",
    "optional_pixel_threshold",
    "prepare_outdir",
    "require_pixel_threshold",
    "run_demo",
    "write_evaluation_report",
]

# Longest side, in pixels, of the images in the report.
OVERLAY_SIDE = 384
THUMB_SIDE = 128
# Ground-truth outlines: magenta, which the heat maps' colormap never shows.
TRUTH_COLOR = (255, 0, 255)
# The score histogram's colours of the kinds of images other than normal.
_KIND_COLORS = ("#c0392b", "#e67e22", "#8e44ad", "#16a085", "#7f6000")


# ----------------------------------------------------------------- report
def prepare_outdir(out_dir):
    """Create ``out_dir`` and its image folders, and check it is writable.

    Returns
    -------
    out_dir : pathlib.Path

    Raises
    ------
    UsageError
        If ``out_dir`` is a file or cannot be written to.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output {str(out_dir)!r} exists and is not a folder")
    try:
        for sub in ("", "thumbnails", "overlays"):
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".skanomaly_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write to the output folder {str(out_dir)!r}: {exc.strerror or exc}"
        ) from exc
    return out_dir


def _safe_name(index, path):
    """A PNG file name for image ``index``, readable and safe on any system."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:60] or "image"
    return f"{index:04d}_{stem}.png"


def explain_and_report(
    detector,
    files,
    out_dir,
    reader,
    *,
    display=None,
    truth=None,
    explain_all=False,
    max_explain=None,
    title=None,
    progress=False,
    regions=None,
    min_area=1,
):
    """Score ``files``, explain the flagged ones and write the report.

    ``out_dir`` receives ``index.html``, ``scores.csv``, a thumbnail of
    every readable image and a heat-map overlay of each explained one: the
    anomalous ones (all with ``explain_all``), most anomalous first, at most
    ``max_explain``. The overlays outline the regions above the detector's
    pixel threshold (of at least ``min_area`` pixels); the report lists
    their number and area and, for every image, a bar per level of its
    distance against a normal image's (``level_reference_``). ``regions``
    names a CSV file for the region table of the explained images.
    ``display`` replaces the file names shown and ``truth`` adds a
    ground-truth column, one entry per file each. Above the table, a
    histogram shows the anomaly scores against the threshold, one colour
    per ground truth where given.

    Returns
    -------
    rows : list of dict
        :func:`~skanomaly.inspection.score_rows` of the readable files, with
        their ``thumbnail``, ``overlay`` (None if not explained),
        ``regions`` and ``defect_area`` (None if not explained), ``levels``
        and ``truth``.
    index : pathlib.Path or None
        The report, or None if no image could be read (nothing is written).

    Raises
    ------
    UsageError
        If ``regions`` is asked for but the detector has no pixel threshold
        for its maps.
    """
    out_dir = prepare_outdir(out_dir)
    threshold = _pixel_threshold(detector, required=regions is not None)
    thumbnails = []

    def thumbnail(index, path, image):
        thumbnails.append(_write_thumbnail(out_dir, index, path, image))

    # The levels play no part in the worst patch alone: no bars for them.
    kept, scores, distances = score_files(
        detector,
        files,
        reader,
        progress,
        on_image=thumbnail,
        with_levels=detector.image_score != "patches",
    )
    if not kept:
        return [], None
    rows = score_rows(kept, scores, detector.offset_, _lookup(files, display, kept))
    truths = _lookup(files, truth, kept)
    names, levels, caption = _level_values(detector, distances, scores)
    for i, row in enumerate(rows):
        if truths is not None:
            row["truth"] = _judged(truths[i], row["label"] == "anomalous")
        row["thumbnail"], row["overlay"] = thumbnails[i], None
        row["regions"] = row["defect_area"] = None
        row["levels"] = None if levels is None else list(zip(names, levels[i].tolist()))

    order = np.argsort(scores, kind="stable")  # most anomalous first
    chosen = [i for i in order if explain_all or rows[i]["label"] == "anomalous"][:max_explain]
    for i in set(range(len(rows))) - set(chosen):
        rows[i]["overlay_note"] = (
            f"not drawn: beyond the {max_explain} most anomalous (--max-explain)"
            if explain_all or rows[i]["label"] == "anomalous"
            else "not drawn: judged normal"
        )
    found = _explain(
        detector, [kept[i] for i in chosen], reader.read, progress, threshold, min_area
    )
    explained = dict(zip(chosen, found, strict=True))
    scale = _draw_overlays(explained, kept, rows, out_dir, threshold)
    write_csv(rows, out_dir / "scores.csv")
    if regions is not None:
        write_regions_csv(_region_rows(explained, rows), regions)
    figure = _score_figure(-scores, truths, -detector.offset_)
    index = _write_index(detector, out_dir, rows, title, scale, threshold, caption, figure=figure)
    return rows, index


def explain_regions(detector, files, reader, rows, threshold, *, progress=False, min_area=1):
    """The region table of the anomalous ones of the scored ``files``.

    ``rows`` are their :func:`~skanomaly.inspection.score_rows`, one per
    file, and ``threshold`` the pixel threshold
    (:func:`require_pixel_threshold`). Returns one dict per region with the
    keys of :data:`~skanomaly.inspection.REGION_COLUMNS`, the images in the
    order of ``files``.
    """
    chosen = [i for i, row in enumerate(rows) if row["label"] == "anomalous"]
    found = _explain(
        detector, [files[i] for i in chosen], reader.read, progress, threshold, min_area
    )
    return _region_rows(dict(zip(chosen, found, strict=True)), rows)


def write_evaluation_report(
    detector, X, y, filenames, result, out_dir, *, defect_type=None, masks=None, progress=False
):
    """Write the report of a labelled evaluation in ``out_dir``.

    ``result`` is :func:`~skanomaly.inspection.evaluate_labelled`'s for the
    images ``X`` (labels ``y``, +1 normal, -1 defective; their
    ``filenames``); regions of its ``min_area`` or more pixels are outlined
    at its ``pixel_threshold``, where it has one. The report lists every
    image with its ground truth (``defect_type`` per image where given, else
    "defective"; "false alarm" or "missed" added where the model misjudged
    it), shows a histogram of the anomaly scores of each kind against the
    threshold and the evaluation's summary lines, and draws a heat map of
    each defective image, each false alarm and each normal image with a
    region at the pixel threshold, with the ``masks`` outlined in
    :data:`TRUTH_COLOR` where given. The maps are ``result["maps"]`` where it
    has them, else explained here. ``out_dir`` also receives
    ``scores.csv``.

    Returns
    -------
    index : pathlib.Path
        The written ``index.html``.
    """
    from .inspection import evaluation_report

    out_dir = prepare_outdir(out_dir)
    threshold, min_area = result.get("pixel_threshold"), result["min_area"]
    rows = score_rows(filenames, result["scores"], detector.offset_)
    for i, row in enumerate(rows):
        row["thumbnail"] = _write_thumbnail(out_dir, i, filenames[i], X[i])
        row["overlay"] = row["regions"] = row["defect_area"] = None
        row["truth"] = _truth(y[i], result["flagged"][i], defect_type, i)
    drawn = (y == -1) | result["flagged"]
    if "regions" in result:
        # Normal images with a region: the summary counts them, the page shows them.
        drawn |= result["regions"]["false_regions"] > 0
    chosen = np.flatnonzero(drawn)
    for i in np.flatnonzero(~drawn):
        rows[i]["overlay_note"] = "not drawn: normal, not flagged, no region"
    if "maps" in result:
        found = [_entry(X[i], result["maps"][i], threshold, min_area) for i in chosen]
    else:
        found = _explain(detector, chosen, X.__getitem__, progress, threshold, min_area)
    if masks is not None:
        for i, entry in zip(chosen, found, strict=True):
            entry["truth"] = _shrunk_mask(masks[i], entry["image"].shape[:2])
    scale = _draw_overlays(dict(zip(chosen, found)), filenames, rows, out_dir, threshold)
    write_csv(rows, out_dir / "scores.csv")
    kinds = np.where(y == 1, "normal", "defective")
    figure = _score_figure(-result["scores"], kinds, -detector.offset_)
    # The misjudged images are not listed: the table shows them.
    report = evaluation_report(result, y, filenames, -detector.offset_, 0)
    summary = report.splitlines()
    if masks is not None:
        summary.append("Magenta outlines: the defects' ground-truth masks.")
    title = "skanomaly evaluation"
    return _write_index(detector, out_dir, rows, title, scale, threshold, None, summary, figure)


def _truth(label, flagged, defect_type, i):
    """The ground-truth column of image ``i``: its kind, and the model's
    mistake where it made one."""
    kind = "normal" if label == 1 else "defective" if defect_type is None else defect_type[i]
    return _judged(str(kind), flagged)


def _judged(kind, flagged):
    """A ground-truth ``kind`` ("normal" or a defect), with the model's
    mistake added where it made one."""
    if flagged == (kind == "normal"):
        return f"{kind}, {'false alarm' if kind == 'normal' else 'missed'}"
    return kind


def require_pixel_threshold(detector):
    """The detector's pixel threshold for its maps; :class:`UsageError` if
    it has none."""
    return _pixel_threshold(detector, required=True)


def optional_pixel_threshold(detector):
    """The detector's pixel threshold for its maps; None, with a warning,
    if it has none."""
    return _pixel_threshold(detector, required=False)


def _pixel_threshold(detector, required):
    """The detector's pixel threshold for its maps, or None (with a warning:
    no outlines) when it has none and ``required`` is False."""
    from sklearn.exceptions import NotFittedError

    try:
        return detector.resolve_pixel_threshold()
    except NotFittedError as exc:
        calibration = getattr(detector, "pixel_calibration_", None) or {}
        params = detector.get_params()
        changed = [k for k in calibration if k in params and calibration[k] != params[k]]
        if changed:
            # Only --method, --smoothing and --lam change the maps of a loaded model.
            settings = ", ".join(f"{k}={calibration[k]!r}" for k in changed)
            message = (
                f"the model's pixel threshold was set for its own maps ({settings}), not "
                "for those that --method, --smoothing or --lam ask for; leave those out, "
                "or fit a model with them (skanomaly fit --explain-method, --smoothing, "
                "--lam)"
            )
        else:
            message = (
                "the model has no pixel threshold; 'skanomaly calibrate MODEL "
                "NORMAL_DIR' sets one from normal images, or "
                "'skanomaly calibrate MODEL --pixel-threshold MAP_VALUE' as given"
            )
        if required:
            raise UsageError(f"regions need a pixel threshold: {message}") from exc
        warn(f"no region outlines: {message}")
        return None


def _level_values(detector, distances, scores):
    """What the report's bars show for ``distances``, their names and their
    caption: each level's distance in standard deviations above that of a
    normal image (``level_reference_``), or, without it, its share of the
    sum. A detector whose ``scores`` add the worst patch gets a last bar,
    that part of the score (also in standard deviations of normal images):
    without it an image flagged by one patch would show normal bars. With
    the worst patch alone the levels play no part: no bars (all None)."""
    if detector.image_score == "patches":
        return None, None, None
    names = list(detector.level_names_)
    reference = getattr(detector, "level_reference_", None)
    if reference is None:
        return (
            names,
            distances / distances.sum(axis=1, keepdims=True),
            "Levels: each bar is a level's share of the summed distance (stem first, head last).",
        )
    mean, std = reference
    values = (distances - mean) / std
    caption = (
        "Levels: each bar is a level's distance (stem first, head last) in standard "
        "deviations above that of a new normal image; the tallest drove the score."
    )
    if detector.image_score == "pooled+patches":
        from ._patch_score import patch_part
        from .gaussian import ScoreRule, combine_levels

        pooled = combine_levels(distances, ScoreRule.of(detector))
        worst = patch_part(scores, pooled, detector.score_center_, detector.score_scale_)
        values, names = np.column_stack([values, worst]), [*names, "worst patch"]
        caption += (
            " The last bar is the worst patch's distance to the normal patches, in standard "
            "deviations above the training images' worst patches."
        )
    return names, values, caption


def _region_rows(explained, rows):
    """One dict per region of the ``explained`` images (index: entry of
    :func:`_explain`), in the order of ``rows``."""
    table = []
    for i in sorted(explained):
        entry = explained[i]
        if entry is None or entry["table"] is None:
            continue
        regions = entry["table"]
        for r in range(len(regions["region"])):
            table.append(
                {
                    "path": rows[i]["path"],
                    **{k: v[r].item() for k, v in regions.items() if k != "image"},
                }
            )
    return table


def _lookup(files, values, kept):
    """``values`` (one per file) of the ``kept`` files, or None."""
    if values is None:
        return None
    by_path = {str(p): value for p, value in zip(files, values, strict=True)}
    return [by_path[str(p)] for p in kept]


def _write_thumbnail(out_dir, index, path, image):
    """Write the thumbnail of image ``index`` and return its link."""
    name = _safe_name(index, path)
    _write_image(shrink_image(image, THUMB_SIDE), out_dir / "thumbnails" / name)
    return f"thumbnails/{name}"


def _write_image(array, path):
    try:
        write_png(array, path)
    except OSError as exc:
        raise UsageError(first_line(exc)) from exc


def _explain(detector, items, read, progress, threshold, min_area):
    """One :func:`_entry` per item, None for the images that ``read(item)``
    could not read (again: None)."""
    found = []
    with progress_bar(enabled=progress, total=len(items), desc="Explaining") as bar:
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            # Read again rather than kept from scoring, which bounds memory; a
            # file that became unreadable meanwhile is skipped.
            images = [read(item) for item in chunk]
            readable = [image for image in images if image is not None]
            explained = iter(detector.explain(readable) if readable else ())
            found += [
                None if image is None else _entry(image, next(explained), threshold, min_area)
                for image in images
            ]
            bar.update(len(chunk))
    return found


def _score_figure(anomaly, kinds, threshold):
    """:func:`~skanomaly.report.score_histogram` of the ``anomaly`` scores:
    one group per distinct ground truth of ``kinds`` (normal in blue), or
    one group of all images where ``kinds`` is None."""
    if kinds is None:
        return score_histogram([("images", anomaly, "#777777")], threshold)
    kinds = np.asarray(kinds)
    names = sorted(set(kinds.tolist()), key=lambda k: (k != "normal", k))
    others = iter(_KIND_COLORS)
    groups = [
        (k, anomaly[kinds == k], "#3572b0" if k == "normal" else next(others, "#777777"))
        for k in names
    ]
    return score_histogram(groups, threshold)


def _entry(image, anomaly_map, threshold, min_area):
    """``image``, ``map`` and ``mask`` at overlay size and ``table``, the
    regions at the image's size (``mask`` and ``table`` None without a
    ``threshold``)."""
    from .segmentation import masks_from_maps, region_table

    entry = {"mask": None, "table": None}
    entry["image"], entry["map"] = _shrunk(image, anomaly_map)
    if threshold is not None:
        # Regions at the image's own size, so that areas and boxes are in
        # its pixels; the mask is shrunk to draw.
        entry["table"] = region_table([anomaly_map], threshold, min_area)
        mask = masks_from_maps([anomaly_map], threshold, min_area)[0]
        entry["mask"] = _shrunk_mask(mask, entry["image"].shape[:2])
    return entry


def _shrunk(image, anomaly_map):
    """``image`` and its map at most :data:`OVERLAY_SIDE` pixels a side."""
    image = shrink_image(image, OVERLAY_SIDE)
    anomaly_map = np.asarray(anomaly_map, dtype=np.float64)
    if anomaly_map.shape != image.shape[:2]:
        anomaly_map = resize_bilinear(anomaly_map, image.shape[:2])
    return image, anomaly_map


def _shrunk_mask(mask, shape):
    if mask.shape == tuple(shape):
        return mask
    return resize_bilinear(mask.astype(np.float64), shape) >= 0.5


def _draw_overlays(explained, kept, rows, out_dir, threshold=None):
    """Write an overlay per ``explained[i]`` on one color scale, with its
    regions outlined (and its ground-truth mask, an entry's ``truth`` at
    overlay size, in :data:`TRUTH_COLOR`), link it in ``rows[i]`` with the
    regions' number and area, and return the scale ``(vmin, vmax)`` (None
    if nothing was explained). The scale reaches the pixel ``threshold``
    where given: maps that stay below it, as normal images' do, are not
    stretched to the colormap's top."""
    # Plotting imports scipy, which `skanomaly --help` need not wait for.
    from .plotting import overlay_heatmap
    from .segmentation import draw_outlines

    explained = {i: entry for i, entry in explained.items() if entry is not None}
    if not explained:
        return None
    values = np.concatenate([entry["map"].ravel() for entry in explained.values()])
    vmin, vmax = float(values.min()), float(np.percentile(values, 99.9))
    if threshold is not None:
        vmax = max(vmax, threshold)
    if vmax <= vmin:
        # Constant maps, all drawn at the low end, on a scale that reads well
        # (1e-12 added to a value of 1e4 or more would round away).
        vmax = vmin + max(abs(vmin), 1.0)
    for i, entry in explained.items():
        name = _safe_name(i, kept[i])
        overlay = overlay_heatmap(entry["image"], entry["map"], vmin=vmin, vmax=vmax)
        if entry.get("truth") is not None:
            overlay = draw_outlines(overlay, entry["truth"], color=TRUTH_COLOR)
        if entry["mask"] is not None:
            overlay = draw_outlines(overlay, entry["mask"])
            rows[i]["regions"] = len(entry["table"]["region"])
            rows[i]["defect_area"] = int(entry["table"]["area"].sum())
        _write_image(overlay, out_dir / "overlays" / name)
        rows[i]["overlay"] = f"overlays/{name}"
    return vmin, vmax


def _write_index(
    detector, out_dir, rows, title, scale, threshold, caption, summary=(), figure=None
):
    notes = [
        f"Model: {detector.backbone}, {detector.n_samples_fit_} training images, "
        f"contamination {detector.contamination:g}."
    ]
    if scale is not None:
        notes.append(f"Heat maps share one color scale ({scale[0]:.3g} to {scale[1]:.3g}).")
        # The bar shows which colour a value gets, and where the outlines fall.
        figure = (figure or "") + color_scale(*scale, threshold)
    if threshold is not None:
        calibration = getattr(detector, "pixel_calibration_", None) or {}
        fpr = ""
        if calibration:
            rate = calibration["fpr"]
            fpr = (
                " (set as given)"
                if rate is None
                else f" (normal-pixel false-positive rate {rate:g})"
            )
        notes.append(
            f"White outlines: regions above the pixel threshold {threshold:.4g}{fpr}; "
            "areas in pixels of the image."
        )
    if caption is not None:
        notes.append(caption)
    try:
        return write_report(
            out_dir,
            rows,
            threshold=-detector.offset_,
            title=title or "skanomaly report",
            notes=[*summary, " ".join(notes)],
            figure=figure,
        )
    except OSError as exc:
        raise UsageError(
            f"cannot write the report in {str(out_dir)!r}: {exc.strerror or exc}"
        ) from exc


# ------------------------------------------------------------------- demo
def _demo_split(labels, proba, n_train, n_test, seed):
    """Indices of the training cells, and of the normal and the defective
    test cells, among ELPV cells with these ``labels`` and ``proba``."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(labels == 1))
    defective = rng.permutation(np.flatnonzero((labels == -1) & (proba == 1.0)))
    n_test = min(n_test, len(defective))
    if n_train + n_test > len(normal):
        raise UsageError(f"--n-train + --n-test must be at most {len(normal)} normal cells")
    # The default image score standardises each training cell against the others.
    if n_train < 3:
        raise UsageError("--n-train must be at least 3")
    return normal[:n_train], normal[n_train : n_train + n_test], defective[:n_test]


def run_demo(detector, out_dir, *, n_train, n_test, max_explain, seed, holdout, strict, progress):
    """Fit ``detector`` on real solar cells, explain held-out ones, report.

    Fits on ``n_train`` defect-free monocrystalline ELPV cells, scores
    ``n_test`` held-out defect-free and ``n_test`` defective cells, writes
    the report of :func:`explain_and_report` in ``out_dir`` and prints the
    image ROC AUC and the most anomalous cells on stdout.

    Returns
    -------
    n_skipped : int
        The number of unreadable images skipped.
    """
    from sklearn.metrics import roc_auc_score

    from .datasets import load_elpv

    out_dir = prepare_outdir(out_dir)
    try:
        data = load_elpv(cell_type="mono", resize=8)  # labels and paths only
    except ImportError as exc:
        raise UsageError(
            "the demo needs the elpv-dataset package: pip install elpv-dataset"
        ) from exc
    files = np.array([Path(f) for f in data.filenames], dtype=object)
    train, normal, defective = _demo_split(data.y, data.proba, n_train, n_test, seed)
    test = np.concatenate([normal, defective])
    print(
        f"ELPV monocrystalline solar cells: {len(train)} defect-free cells to learn from, "
        f"scoring {len(normal)} defect-free + {len(defective)} defective held-out cells."
    )
    reader = ImageReader(strict)
    n_fit, n_hold = fit_on_files(
        detector, list(files[train]), reader, holdout=holdout, seed=seed, progress=progress
    )
    detector.set_params(progress=False)
    print(
        f"Fitted on {n_fit} cells; threshold set on the other {n_hold}."
        if n_hold
        else f"Fitted on {n_fit} cells; threshold from their out-of-fold scores."
    )
    test_reader = ImageReader(strict)
    rows, index = explain_and_report(
        detector,
        list(files[test]),
        out_dir,
        test_reader,
        display=[Path(p).name for p in files[test]],
        truth=["defective" if data.y[i] == -1 else "normal" for i in test],
        max_explain=max_explain,
        title="skanomaly demo: ELPV solar cells",
        progress=progress,
    )
    test_reader.report()
    y_true = [r["truth"].startswith("defective") for r in rows]
    if 0 < sum(y_true) < len(y_true):
        anomaly = [r["anomaly_score"] for r in rows]
        print(f"Image AUROC (defective vs normal): {roc_auc_score(y_true, anomaly):.3f}")
    print("Most anomalous cells:")
    for row in sorted(rows, key=lambda r: -r["anomaly_score"])[:5]:
        print(
            f"  {row['anomaly_score']:9.4g}  {row['label']:<9}  "
            f"(truly {row['truth']})  {row['path']}"
        )
    print(summary(rows, -detector.offset_))
    print(f"Report: {index.resolve()}")
    return len(reader.skipped) + len(test_reader.skipped)
