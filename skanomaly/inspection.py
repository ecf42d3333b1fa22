"""Inspection runs: a fitted detector applied to image files on disk.

The name is the industry's: in automated visual inspection a station reads
the images of parts, scores them, flags the defective ones and reports. This
module is that station for the command line. It turns paths into image files
(:func:`collect_images`), reads them while skipping or stopping at bad ones
(:class:`ImageReader`), fits on them (:func:`fit_on_files`), scores them in
chunks that bound memory (:func:`score_files`), and explains the flagged ones
into an HTML report of thumbnails and heat-map overlays
(:func:`explain_and_report`); :func:`run_demo` chains all of it on real
solar cells. :mod:`skanomaly.cli` only parses arguments and calls these.

Errors meant for the user are :class:`~skanomaly._console.UsageError` (exit
code 2) and :class:`~skanomaly._console.ImageReadError` (exit code 1), and
warnings are ``skanomaly: warning:`` lines on stderr.
"""

import csv
import re
import sys
from pathlib import Path

import numpy as np

from ._console import ImageReadError, UsageError, warn
from ._files import IMAGE_EXTENSIONS, atomic_write, list_images, write_png
from ._progress import progress as progress_bar
from ._resize import resize_bilinear, shrink_image
from .report import write_report

__all__ = [
    "ImageReader",
    "collect_images",
    "explain_and_report",
    "fit_detector",
    "fit_on_files",
    "format_table",
    "prepare_outdir",
    "run_demo",
    "score_files",
    "score_rows",
    "summary",
    "write_csv",
]

# Images read and scored per step: bounds memory on large folders.
CHUNK = 64
# Longest side, in pixels, of the images in the report.
OVERLAY_SIDE = 384
THUMB_SIDE = 128


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


def _first_line(exc):
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
                raise ImageReadError(_first_line(exc)) from exc
            warn(f"skipping an unreadable image: {_first_line(exc)}")
            self.skipped.append(path)
            return None

    def read_all(self, files, *, progress=False):
        """The readable images of ``files``, in order."""
        bar = progress_bar(files, enabled=progress, total=len(files), desc="Reading")
        return [image for image in map(self.read, bar) if image is not None]

    def report(self):
        """Warn once about the number of images skipped, if any."""
        if self.skipped:
            warn(f"{len(self.skipped)} unreadable image(s) skipped")


# -------------------------------------------------------------------- fit
def fit_detector(detector, images, holdout, seed=0):
    """Fit ``detector`` on ``images``; with ``holdout`` > 0, set its threshold
    from held-out images instead of out-of-fold training scores.

    A random ``holdout`` fraction of the images is kept out of the fit and
    :meth:`~skanomaly.EfficientNetGaussianDetector.calibrate` sets
    ``offset_`` from their scores at a false-positive rate of
    ``contamination``, so about that fraction of new normal images is
    flagged. Too few images to hold any out (or to fit on the rest) fall
    back, with a warning, to out-of-fold training scores.

    Returns
    -------
    n_hold : int
        The number of held-out images (0 when the threshold comes from
        out-of-fold training scores).
    """
    n_hold = round(holdout * len(images))
    if holdout > 0 and (n_hold < 1 or len(images) - n_hold < 2):
        warn(
            f"too few images ({len(images)}) to hold out {holdout:g} of them; the "
            "threshold comes from out-of-fold training scores"
        )
        n_hold = 0
    if n_hold == 0:
        detector.fit(images)
        return 0
    order = np.random.default_rng(seed).permutation(len(images))
    held = set(order[:n_hold].tolist())
    detector.fit([im for i, im in enumerate(images) if i not in held])
    detector.calibrate([images[i] for i in sorted(held)], fpr=detector.contamination)
    return n_hold


def fit_on_files(detector, files, reader, *, holdout, seed, progress):
    """Read ``files`` with ``reader`` and :func:`fit_detector` on them.

    Returns
    -------
    n_fit, n_hold : int
        The number of images fitted on, and of those held out to set the
        threshold.

    Raises
    ------
    UsageError
        If fewer than 2 images are readable, or the fit refuses the images
        or the detector's parameters.
    """
    images = reader.read_all(files, progress=progress)
    reader.report()
    if len(images) < 2:
        raise UsageError(f"fitting needs at least 2 readable normal images; got {len(images)}")
    try:
        n_hold = fit_detector(detector, images, holdout, seed)
    except ValueError as exc:
        raise UsageError(_first_line(exc)) from exc
    return len(images) - n_hold, n_hold


# ---------------------------------------------------------------- scoring
def score_files(detector, files, reader, progress, on_image=None):
    """Score ``files`` in chunks of :data:`CHUNK` images.

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

    Returns
    -------
    kept : list of path-like
        The readable files, in order.
    scores : ndarray of shape (len(kept),)
        Their ``score_samples``.
    """
    kept, scores = [], []
    with progress_bar(enabled=progress, total=len(files), desc="Scoring") as bar:
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            images, paths = [], []
            for path in chunk:
                image = reader.read(path)
                if image is not None:
                    if on_image is not None:
                        on_image(len(kept) + len(paths), path, image)
                    images.append(image)
                    paths.append(path)
            if images:
                scores.append(detector.score_samples(images))
                kept.extend(paths)
            bar.update(len(chunk))
    return kept, (np.concatenate(scores) if scores else np.empty(0))


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
    if target == "-":
        _write_rows(rows, sys.stdout)
        return
    try:
        with atomic_write(target, "w", newline="", encoding="utf-8") as handle:
            _write_rows(rows, handle)
    except OSError as exc:
        raise UsageError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from exc


def _write_rows(rows, handle):
    writer = csv.writer(handle)
    writer.writerow(["path", "score", "anomaly_score", "decision", "label"])
    for row in rows:
        writer.writerow(
            [row["path"], f"{row['score']:.6g}", f"{row['anomaly_score']:.6g}",
             f"{row['decision']:.6g}", row["label"]]
        )


def format_table(rows):
    """The :func:`score_rows` ``rows`` as a text table, one line each."""
    lines = [f"{'anomaly_score':>13}  {'label':<9}  path"]
    lines += [f"{row['anomaly_score']:>13.4g}  {row['label']:<9}  {row['path']}" for row in rows]
    return "\n".join(lines)


def summary(rows, threshold):
    """One line: how many images were scored and how many are anomalous."""
    n_bad = sum(r["label"] == "anomalous" for r in rows)
    return (
        f"{len(rows)} image(s) scored, {n_bad} anomalous "
        f"(anomaly_score > threshold {threshold:.4g})"
    )


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


def explain_and_report(detector, files, out_dir, reader, *, display=None, truth=None,
                       explain_all=False, max_explain=None, title=None, progress=False):
    """Score ``files``, explain the flagged ones and write the report.

    ``out_dir`` receives ``index.html``, ``scores.csv``, a thumbnail of
    every readable image and a heat-map overlay of each explained one: the
    anomalous ones (all with ``explain_all``), most anomalous first, at most
    ``max_explain``. ``display`` replaces the file names shown and ``truth``
    adds a ground-truth column, one entry per file each.

    Returns
    -------
    rows : list of dict
        :func:`score_rows` of the readable files, with their ``thumbnail``,
        ``overlay`` (None if not explained) and ``truth``.
    index : pathlib.Path or None
        The report, or None if no image could be read (nothing is written).
    """
    out_dir = prepare_outdir(out_dir)
    thumbnails = []

    def thumbnail(index, path, image):
        name = _safe_name(index, path)
        _write_image(shrink_image(image, THUMB_SIDE), out_dir / "thumbnails" / name)
        thumbnails.append(f"thumbnails/{name}")

    kept, scores = score_files(detector, files, reader, progress, on_image=thumbnail)
    if not kept:
        return [], None
    rows = score_rows(kept, scores, detector.offset_, _lookup(files, display, kept))
    truths = _lookup(files, truth, kept)
    for i, row in enumerate(rows):
        if truths is not None:
            row["truth"] = truths[i]
        row["thumbnail"], row["overlay"] = thumbnails[i], None

    order = np.argsort(scores, kind="stable")  # most anomalous first
    chosen = [i for i in order if explain_all or rows[i]["label"] == "anomalous"][:max_explain]
    maps = _explain(detector, [kept[i] for i in chosen], reader, progress)
    scale = _draw_overlays(dict(zip(chosen, maps, strict=True)), kept, rows, out_dir)
    write_csv(rows, out_dir / "scores.csv")
    return rows, _write_index(detector, out_dir, rows, title, scale)


def _lookup(files, values, kept):
    """``values`` (one per file) of the ``kept`` files, or None."""
    if values is None:
        return None
    by_path = {str(p): value for p, value in zip(files, values, strict=True)}
    return [by_path[str(p)] for p in kept]


def _write_image(array, path):
    try:
        write_png(array, path)
    except OSError as exc:
        raise UsageError(_first_line(exc)) from exc


def _explain(detector, paths, reader, progress):
    """``(image, anomaly_map)`` per path, both at overlay size; None for the
    images that could not be read again."""
    maps = []
    with progress_bar(enabled=progress, total=len(paths), desc="Explaining") as bar:
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start : start + CHUNK]
            # Read again rather than kept from scoring, which bounds memory; a
            # file that became unreadable meanwhile is skipped.
            images = [reader.read(path) for path in chunk]
            readable = [image for image in images if image is not None]
            explained = iter(detector.explain(readable) if readable else ())
            for image in images:
                maps.append(None if image is None else _shrunk(image, next(explained)))
            bar.update(len(chunk))
    return maps


def _shrunk(image, anomaly_map):
    """``image`` and its map at most :data:`OVERLAY_SIDE` pixels a side."""
    image = shrink_image(image, OVERLAY_SIDE)
    anomaly_map = np.asarray(anomaly_map, dtype=np.float64)
    if anomaly_map.shape != image.shape[:2]:
        anomaly_map = resize_bilinear(anomaly_map, image.shape[:2])
    return image, anomaly_map


def _draw_overlays(maps, kept, rows, out_dir):
    """Write an overlay per ``maps[i]`` on one color scale, link it in
    ``rows[i]``, and return the scale ``(vmin, vmax)`` (None if no maps)."""
    # Plotting imports scipy, which `skanomaly --help` need not wait for.
    from .plotting import overlay_heatmap

    maps = {i: pair for i, pair in maps.items() if pair is not None}
    if not maps:
        return None
    values = np.concatenate([m.ravel() for _, m in maps.values()])
    vmin, vmax = float(values.min()), float(np.percentile(values, 99.9))
    vmax = max(vmax, vmin + 1e-12)
    for i, (image, anomaly_map) in maps.items():
        name = _safe_name(i, kept[i])
        try:
            overlay_heatmap(image, anomaly_map, path=out_dir / "overlays" / name,
                            vmin=vmin, vmax=vmax)
        except OSError as exc:
            raise UsageError(_first_line(exc)) from exc
        rows[i]["overlay"] = f"overlays/{name}"
    return vmin, vmax


def _write_index(detector, out_dir, rows, title, scale):
    notes = (
        f"Model: {detector.backbone}, {detector.n_samples_fit_} training images, "
        f"contamination {detector.contamination:g}."
    )
    if scale is not None:
        notes += f" Heat maps share one color scale ({scale[0]:.3g} to {scale[1]:.3g})."
    try:
        return write_report(
            out_dir, rows, threshold=-detector.offset_,
            title=title or "skanomaly report", notes=notes,
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
    if n_train < 2:
        raise UsageError("--n-train must be at least 2")
    return normal[:n_train], normal[n_train : n_train + n_test], defective[:n_test]


def run_demo(detector, out_dir, *, n_train, n_test, max_explain, seed, holdout, strict,
             progress):
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
    n_fit, n_hold = fit_on_files(detector, list(files[train]), reader, holdout=holdout,
                                 seed=seed, progress=progress)
    detector.set_params(progress=False)
    print(f"Fitted on {n_fit} cells; threshold set on the other {n_hold}." if n_hold
          else f"Fitted on {n_fit} cells; threshold from their out-of-fold scores.")
    test_reader = ImageReader(strict)
    rows, index = explain_and_report(
        detector, list(files[test]), out_dir, test_reader,
        display=[Path(p).name for p in files[test]],
        truth=["defective" if data.y[i] == -1 else "normal" for i in test],
        max_explain=max_explain, title="skanomaly demo: ELPV solar cells", progress=progress,
    )
    test_reader.report()
    y_true = [r["truth"] == "defective" for r in rows]
    if 0 < sum(y_true) < len(y_true):
        anomaly = [r["anomaly_score"] for r in rows]
        print(f"Image AUROC (defective vs normal): {roc_auc_score(y_true, anomaly):.3f}")
    print("Most anomalous cells:")
    for row in sorted(rows, key=lambda r: -r["anomaly_score"])[:5]:
        print(f"  {row['anomaly_score']:9.4g}  {row['label']:<9}  "
              f"(truly {row['truth']})  {row['path']}")
    print(summary(rows, -detector.offset_))
    print(f"Report: {index.resolve()}")
    return len(reader.skipped) + len(test_reader.skipped)
