"""The ``skanomaly`` console command: fit, score and explain image folders.

Run ``skanomaly --help`` (or ``python -m skanomaly --help``) for usage. Exit
codes: 0 success, 1 some images could not be read and were skipped (or
``--strict`` stopped at the first), 2 usage or fatal error (missing path,
empty folder, bad option, unusable model file, unwritable output).
"""

import argparse
import csv
import re
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from ._constants import EXPLAIN_METHODS, PRECISIONS

__all__ = ["main"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MODEL_FORMAT = 1
# Images read and scored per step: bounds memory on large folders.
CHUNK = 64
OVERLAY_SIDE = 384
THUMB_SIDE = 128

_PICKLE_NOTE = (
    "Model files are joblib pickles: loading one runs code, so only load model "
    "files you created or trust."
)


# ----------------------------------------------------------------- errors
class UsageError(Exception):
    """Bad command line or input: one line on stderr, exit code 2."""


class ImageReadError(Exception):
    """An unreadable image under ``--strict``: exit code 1."""


def _say(message):
    print(message, file=sys.stderr, flush=True)


def _warn(message):
    _say(f"skanomaly: warning: {message}")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line, via :class:`UsageError`."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------- arguments
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _number_in(low, high, low_included):
    """An argparse type for a float in ``[low, high]`` (or ``(low, high]``)."""
    interval = f"{'[' if low_included else '('}{low:g}, {high:g}]"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (low <= value <= high and (low_included or value > low)):
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text!r}")
        return value

    return parse


_contamination = _number_in(0, 0.5, low_included=False)
_fraction = _number_in(0, 0.5, low_included=True)


def _levels(text):
    """``all``, or comma-separated level indices and/or names."""
    text = text.strip()
    if text == "all":
        return "all"
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(
            f"expected 'all' or comma-separated indices/names like 0,1,2 or stem,head; got {text!r}"
        )
    return [int(p) if re.fullmatch(r"\d+", p) else p for p in parts]


def _common(parser):
    """Options shared by every subcommand."""
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--device", default="auto", help="where the network runs: auto (default), cpu or cuda"
    )
    group.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="autocast dtype of the network: auto (default; float16 on CUDA, "
        "float32 on CPUs), float32, float16 or bfloat16",
    )
    group.add_argument(
        "--batch-size", type=_positive_int, default=None, metavar="N",
        help="images per forward pass (default: the detector's, 16)",
    )
    group.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bars on stderr (default: on when stderr is a terminal)",
    )
    group.add_argument(
        "--strict", action="store_true",
        help="stop at the first unreadable image (exit 1) instead of skipping it",
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", help="show full tracebacks on errors"
    )


def build_parser():
    """The ``argparse`` parser of the ``skanomaly`` command."""
    parser = _Parser(
        prog="skanomaly",
        description=(
            "Training-free visual anomaly detection: fit on a folder of normal "
            "(good) images, then score and explain new images."
        ),
        epilog=(
            "Exit codes: 0 success, 1 some images were unreadable and skipped, "
            "2 usage or fatal error. Start with: skanomaly demo"
        ),
    )
    parser.add_argument("--version", action="version", version=f"skanomaly {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    paths_help = (
        "image files and/or folders; a folder stands for its .png, .jpg, .jpeg, "
        ".bmp, .tif and .tiff files (not recursive)"
    )
    model_help = f"a model file written by 'skanomaly fit'. {_PICKLE_NOTE}"

    fit = sub.add_parser(
        "fit",
        help="fit a detector on a folder of normal images",
        description=(
            "Fit an anomaly detector on normal (defect-free) images and save it. "
            "A few dozen images or more make a useful model. " + _PICKLE_NOTE
        ),
    )
    fit.add_argument("normal", nargs="+", metavar="NORMAL_DIR", help=paths_help)
    fit.add_argument("-o", "--output", required=True, metavar="MODEL",
                     help="where to write the model file, e.g. model.joblib")
    fit.add_argument("--backbone", default="tf_efficientnet_lite0",
                     help="timm EfficientNet name (default: tf_efficientnet_lite0, "
                          "bundled weights, works offline)")
    fit.add_argument("--levels", type=_levels, default="all",
                     help="feature levels: 'all' (default) or comma-separated indices "
                          "or names, e.g. 0,1,2,3 or stage3,stage4,head")
    fit.add_argument("--contamination", type=_contamination, default=0.05,
                     help="fraction of new normal images to flag, in (0, 0.5]; sets the "
                          "threshold from out-of-fold training scores (default: 0.05)")
    fit.add_argument("--explain-method", default="spatial",
                     choices=EXPLAIN_METHODS,
                     help="how 'explain' draws maps (default: spatial, the fastest)")
    fit.add_argument("--holdout", type=_fraction, default=0.0, metavar="FRACTION",
                     help="fraction of the normal images kept out of the fit to set the "
                          "threshold on them instead (default: 0, fit on all and set the "
                          "threshold from out-of-fold scores)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the hold-out split (default: 0)")
    _common(fit)

    score = sub.add_parser(
        "score",
        help="score images with a fitted model (fast, no heat maps)",
        description=(
            "Score images: one row per image with its score, decision and label "
            "(normal/anomalous). Higher anomaly_score is more anomalous; an image is "
            "anomalous when its decision is negative."
        ),
    )
    score.add_argument("model", metavar="MODEL", help=model_help)
    score.add_argument("paths", nargs="+", metavar="PATHS", help=paths_help)
    score.add_argument("--csv", metavar="FILE",
                       help="write the scores as CSV to FILE ('-' for stdout) instead "
                            "of printing a table")
    _common(score)

    explain = sub.add_parser(
        "explain",
        help="score images and write heat-map overlays and an HTML report",
        description=(
            "Score images, draw a heat-map overlay PNG for each anomalous one "
            "(every one with --all) and write OUTDIR/index.html, a report that opens "
            "from disk and lists every image with its score."
        ),
    )
    explain.add_argument("model", metavar="MODEL", help=model_help)
    explain.add_argument("paths", nargs="+", metavar="PATHS", help=paths_help)
    explain.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                         help="folder for the report, created if missing")
    explain.add_argument("--all", action="store_true",
                         help="explain every image, not only the anomalous ones")
    explain.add_argument("--max-explain", type=_positive_int, default=None, metavar="N",
                         help="explain at most the N most anomalous of them")
    explain.add_argument("--method", default=None,
                         choices=EXPLAIN_METHODS,
                         help="override the model's explain method")
    explain.add_argument("--title", default=None, help="title of the report")
    _common(explain)

    demo = sub.add_parser(
        "demo",
        help="fit, score and explain real solar-cell images, and write a report",
        description=(
            "Fit on defect-free monocrystalline ELPV solar cells (bundled with the "
            "elpv-dataset package, works offline), score held-out normal and "
            "defective cells, print the AUROC and the most anomalous cells, and "
            "write an HTML report of heat maps."
        ),
    )
    demo.add_argument("-o", "--output", default="skanomaly_report", metavar="OUTDIR",
                      help="folder for the report (default: skanomaly_report)")
    demo.add_argument("--n-train", type=_positive_int, default=60, metavar="N",
                      help="normal cells to fit on (default: 60)")
    demo.add_argument("--n-test", type=_positive_int, default=30, metavar="N",
                      help="held-out normal cells and defective cells each (default: 30)")
    demo.add_argument("--max-explain", type=_positive_int, default=12, metavar="N",
                      help="heat maps for at most the N most anomalous flagged cells "
                           "(default: 12)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--holdout", type=_fraction, default=0.0, metavar="FRACTION",
                      help="fraction of the training cells that set the threshold "
                           "(default: 0; see 'skanomaly fit --help')")
    _common(demo)
    return parser


# ----------------------------------------------------------------- images
def collect_images(paths):
    """Expand files and folders to ``(files, n_ignored)``.

    Raises :class:`UsageError` for a missing path or a folder without images.
    """
    files, ignored = [], 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            entries = sorted(p for p in path.iterdir() if p.is_file())
            images = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
            if not images:
                what = f" (only {len(entries)} non-image file(s))" if entries else ""
                raise UsageError(
                    f"folder {str(path)!r} holds no image files{what}; expected "
                    + ", ".join(IMAGE_EXTENSIONS)
                )
            ignored += len(entries) - len(images)
            files.extend(images)
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{str(path)!r} does not exist")
    if ignored:
        _warn(f"ignored {ignored} non-image file(s) in the given folder(s)")
    return files


class _Reader:
    """Reads images one by one, skipping (or, strict, stopping at) bad ones."""

    def __init__(self, strict):
        self.strict = strict
        self.skipped = []

    def read(self, path):
        from ._images import read_image

        try:
            return read_image(path)
        except (ValueError, OSError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if self.strict:
                raise ImageReadError(message) from exc
            _warn(f"skipping an unreadable image: {message}")
            self.skipped.append(path)
            return None

    def report(self):
        if self.skipped:
            _warn(f"{len(self.skipped)} unreadable image(s) skipped")


def _progress_bar(enabled, total, desc, unit="image"):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)


def _progress_default(args):
    if args.progress is not None:
        return args.progress
    return sys.stderr.isatty()


# ------------------------------------------------------------------ model
def save_model(detector, path):
    """Write ``detector`` with a version stamp; OSError becomes UsageError."""
    import joblib
    import sklearn

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"cannot write the model to {str(path)!r}: it is a folder")
    payload = {
        "skanomaly_version": __version__,
        "format": MODEL_FORMAT,
        "sklearn_version": sklearn.__version__,
        "detector": detector,
    }
    try:
        joblib.dump(payload, path)
    except OSError as exc:
        raise UsageError(f"cannot write the model file {str(path)!r}: {exc.strerror or exc}") from exc


def _major_minor(version):
    return tuple(str(version).split(".")[:2])


def load_model(path):
    """Read a model file written by :func:`save_model`, or raise UsageError."""
    import joblib

    from .detector import EfficientNetGaussianDetector

    path = Path(path)
    if not path.exists():
        raise UsageError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise UsageError(f"model file {str(path)!r} is a folder")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = joblib.load(path)
    except Exception as exc:
        raise UsageError(
            f"{str(path)!r} is not a readable skanomaly model file "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})"
        ) from exc
    if not isinstance(payload, dict) or "skanomaly_version" not in payload:
        raise UsageError(f"{str(path)!r} is not a skanomaly model file (write one with 'skanomaly fit')")
    version = payload.get("skanomaly_version")
    if payload.get("format") != MODEL_FORMAT or _major_minor(version) != _major_minor(__version__):
        raise UsageError(
            f"model file {str(path)!r} was written by skanomaly {version} (format "
            f"{payload.get('format')}), incompatible with skanomaly {__version__}; "
            "fit it again with this version"
        )
    detector = payload.get("detector")
    if not isinstance(detector, EfficientNetGaussianDetector) or not hasattr(detector, "offset_"):
        raise UsageError(f"model file {str(path)!r} holds no fitted detector")
    return detector


def _configure(detector, args, progress=False):
    params = {"device": args.device, "precision": args.precision, "progress": progress}
    if args.batch_size is not None:
        params["batch_size"] = args.batch_size
    detector.set_params(**params)
    try:
        detector._torch_device()
    except ValueError as exc:
        raise UsageError(f"--device: {exc}") from exc
    return detector


# ---------------------------------------------------------------- scoring
def _rel(path):
    """``path`` relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def score_files(detector, files, reader, progress, on_image=None):
    """Score ``files`` in chunks; returns ``(kept_files, scores)``.

    ``on_image(index_in_kept, path, image)`` is called for each readable image
    (e.g. to write its thumbnail) while it is in memory.
    """
    kept, scores = [], []
    bar = _progress_bar(progress, len(files), "Scoring")
    try:
        for start in range(0, len(files), CHUNK):
            images, paths = [], []
            for path in files[start : start + CHUNK]:
                image = reader.read(path)
                if image is not None:
                    if on_image is not None:
                        on_image(len(kept) + len(paths), path, image)
                    images.append(image)
                    paths.append(path)
            if images:
                scores.append(detector.score_samples(images))
                kept.extend(paths)
            if bar is not None:
                bar.update(len(files[start : start + CHUNK]))
    finally:
        if bar is not None:
            bar.close()
    return kept, (np.concatenate(scores) if scores else np.empty(0))


def _labels(decision):
    return np.where(decision < 0, "anomalous", "normal")


def _write_csv(rows, target):
    header = ["path", "score", "anomaly_score", "decision", "label"]
    if target == "-":
        handle, close = sys.stdout, False
    else:
        try:
            handle = open(target, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from exc
        close = True
    try:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(
                [row["path"], f"{row['score']:.6g}", f"{row['anomaly_score']:.6g}",
                 f"{row['decision']:.6g}", row["label"]]
            )
    finally:
        if close:
            handle.close()


def _rows(files, scores, offset, display=None):
    decision = scores - offset
    labels = _labels(decision)
    return [
        {
            "path": display[i] if display is not None else _rel(path),
            "score": float(scores[i]),
            "anomaly_score": float(-scores[i]),
            "decision": float(decision[i]),
            "label": str(labels[i]),
        }
        for i, path in enumerate(files)
    ]


def _print_table(rows, threshold, out=None):
    out = out or sys.stdout
    print(f"{'anomaly_score':>13}  {'label':<9}  path", file=out)
    for row in rows:
        print(f"{row['anomaly_score']:>13.4g}  {row['label']:<9}  {row['path']}", file=out)
    _print_summary(rows, threshold, out)


def _print_summary(rows, threshold, out=None):
    out = out or sys.stdout
    n_bad = sum(r["label"] == "anomalous" for r in rows)
    print(
        f"{len(rows)} image(s) scored, {n_bad} anomalous "
        f"(anomaly_score > threshold {threshold:.4g})",
        file=out,
    )


# ------------------------------------------------------------------ report
def _safe_name(index, path):
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:60] or "image"
    return f"{index:04d}_{stem}.png"


def _shrink(image, side):
    from PIL import Image

    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def _write_png(array, path):
    from PIL import Image

    try:
        Image.fromarray(array).save(path, format="PNG", optimize=False)
    except OSError as exc:
        raise UsageError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc


def _prepare_outdir(out_dir):
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


def explain_and_report(detector, files, out_dir, args, *, display=None, truth=None,
                       explain_all=False, max_explain=None, title=None, progress=False):
    """Score ``files``, explain the flagged ones and write the report.

    Returns ``(rows, index_path, reader)``.
    """
    from .plotting import overlay_heatmap
    from .report import write_report

    out_dir = _prepare_outdir(out_dir)
    reader = _Reader(args.strict)
    thumbs = {}

    def thumbnail(index, path, image):
        name = _safe_name(len(thumbs), path)
        _write_png(_shrink(image, THUMB_SIDE), out_dir / "thumbnails" / name)
        thumbs[str(path)] = f"thumbnails/{name}"

    kept, scores = score_files(detector, files, reader, progress, on_image=thumbnail)
    if not kept:
        return [], None, reader
    shown = None
    if display is not None:
        position = {str(p): d for p, d in zip(files, display)}
        shown = [position[str(p)] for p in kept]
    rows = _rows(kept, scores, detector.offset_, shown)
    if truth is not None:
        by_path = {str(p): t for p, t in zip(files, truth)}
        for row, path in zip(rows, kept):
            row["truth"] = by_path[str(path)]
    for row, path in zip(rows, kept):
        row["thumbnail"] = thumbs[str(path)]
        row["overlay"] = None

    order = np.argsort(scores, kind="stable")  # most anomalous first
    chosen = [i for i in order if explain_all or rows[i]["label"] == "anomalous"]
    if max_explain is not None:
        chosen = chosen[:max_explain]
    maps = {}
    bar = _progress_bar(progress, len(chosen), "Explaining")
    try:
        for start in range(0, len(chosen), CHUNK):
            block = chosen[start : start + CHUNK]
            images = {}
            for i in block:
                image = reader.read(kept[i])  # read before: a file may change meanwhile
                if image is not None:
                    images[i] = image
            if images:
                result = detector.explain(list(images.values()))
                for i, anomaly_map in zip(images, result):
                    image = _shrink(images[i], OVERLAY_SIDE)
                    maps[i] = (image, _shrink_map(anomaly_map, image.shape[:2]))
            if bar is not None:
                bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    if maps:
        values = np.concatenate([m.ravel() for _, m in maps.values()])
        vmin, vmax = float(values.min()), float(np.percentile(values, 99.9))
        vmax = max(vmax, vmin + 1e-12)
        for i, (image, anomaly_map) in maps.items():
            name = _safe_name(i, kept[i])
            try:
                overlay_heatmap(
                    image, anomaly_map, path=out_dir / "overlays" / name, vmin=vmin, vmax=vmax,
                )
            except OSError as exc:
                raise UsageError(str(exc).splitlines()[0]) from exc
            rows[i]["overlay"] = f"overlays/{name}"
    _write_csv(rows, out_dir / "scores.csv")
    try:
        index = write_report(
            out_dir, rows, threshold=-detector.offset_,
            title=title or "skanomaly report",
            notes=(
                f"Model: {detector.backbone}, {detector.n_samples_fit_} training images, "
                f"contamination {detector.contamination:g}. Heat maps share one color "
                f"scale ({vmin:.3g} to {vmax:.3g})." if maps else
                f"Model: {detector.backbone}, {detector.n_samples_fit_} training images, "
                f"contamination {detector.contamination:g}."
            ),
        )
    except OSError as exc:
        raise UsageError(f"cannot write the report in {str(out_dir)!r}: {exc.strerror or exc}") from exc
    return rows, index, reader


def _shrink_map(anomaly_map, shape):
    from ._resize import resize_bilinear

    anomaly_map = np.asarray(anomaly_map, dtype=np.float64)
    if anomaly_map.shape == tuple(shape):
        return anomaly_map
    return resize_bilinear(anomaly_map, tuple(shape))


# --------------------------------------------------------------- commands
def fit_detector(detector, images, holdout, seed=0):
    """Fit ``detector`` on ``images``; with ``holdout`` > 0, set its threshold
    from held-out images instead of out-of-fold training scores.

    A random ``holdout`` fraction of the images is kept out of the fit and
    :meth:`~EfficientNetGaussianDetector.calibrate` sets ``offset_`` from
    their scores at a false-positive rate of ``contamination``, so about that
    fraction of new normal images is flagged. Returns the number of held-out
    images (0 when the threshold comes from out-of-fold training scores).
    """
    n_hold = int(round(holdout * len(images)))
    if holdout > 0 and (n_hold < 1 or len(images) - n_hold < 2):
        _warn(
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


def cmd_fit(args):
    from .detector import EfficientNetGaussianDetector

    files = collect_images(args.normal)
    output = Path(args.output)
    if output.is_dir():
        raise UsageError(f"cannot write the model to {str(output)!r}: it is a folder")
    if not output.parent.is_dir():
        raise UsageError(f"cannot write the model file {str(output)!r}: folder "
                         f"{str(output.parent)!r} does not exist")
    reader = _Reader(args.strict)
    progress = _progress_default(args)
    bar = _progress_bar(progress, len(files), "Reading")
    images = []
    for path in files:
        image = reader.read(path)
        if image is not None:
            images.append(image)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    reader.report()
    if len(images) < 2:
        raise UsageError(
            f"fitting needs at least 2 readable normal images; got {len(images)}"
        )
    detector = EfficientNetGaussianDetector(
        args.backbone, levels=args.levels, contamination=args.contamination,
        explain_method=args.explain_method,
    )
    _configure(detector, args, progress)
    try:
        n_hold = fit_detector(detector, images, args.holdout, args.seed)
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from exc
    detector.set_params(progress=False, device="auto", precision="auto")
    save_model(detector, output)
    source = f"{n_hold} held-out image(s)" if n_hold else "out-of-fold training scores"
    print(
        f"Fitted on {len(images) - n_hold} image(s) (levels "
        f"{', '.join(detector.level_names_)}); threshold on anomaly_score "
        f"{-detector.offset_:.4g}, from {source}; model written to {output}"
    )
    return 1 if reader.skipped else 0


def cmd_score(args):
    detector = load_model(args.model)
    files = collect_images(args.paths)
    _configure(detector, args)
    reader = _Reader(args.strict)
    kept, scores = score_files(detector, files, reader, _progress_default(args))
    reader.report()
    rows = _rows(kept, scores, detector.offset_)
    if args.csv:
        _write_csv(rows, args.csv)
        if args.csv != "-":
            _print_summary(rows, -detector.offset_)
            print(f"Scores written to {args.csv}")
    else:
        _print_table(rows, -detector.offset_)
    if not kept:
        _warn("no image could be read")
    return 1 if reader.skipped else 0


def cmd_explain(args):
    detector = load_model(args.model)
    if args.method is not None:
        detector.set_params(explain_method=args.method)
    files = collect_images(args.paths)
    _configure(detector, args)
    rows, index, reader = explain_and_report(
        detector, files, args.output, args, explain_all=args.all,
        max_explain=args.max_explain, title=args.title, progress=_progress_default(args),
    )
    reader.report()
    if index is None:
        _warn("no image could be read; no report written")
        return 1
    n_overlays = sum(r["overlay"] is not None for r in rows)
    _print_summary(rows, -detector.offset_)
    print(f"{n_overlays} heat map(s) drawn. Report: {index.resolve()}")
    return 1 if reader.skipped else 0


def cmd_demo(args):
    from sklearn.metrics import roc_auc_score

    from .datasets import load_elpv
    from .detector import EfficientNetGaussianDetector

    progress = _progress_default(args)
    out_dir = _prepare_outdir(args.output)
    try:
        data = load_elpv(cell_type="mono", resize=8)  # labels and paths only
    except ImportError as exc:
        raise UsageError("the demo needs the elpv-dataset package: pip install elpv-dataset") from exc
    files = np.array([Path(f) for f in data.filenames], dtype=object)
    rng = np.random.default_rng(args.seed)
    normal = rng.permutation(np.flatnonzero(data.y == 1))
    defective = rng.permutation(np.flatnonzero((data.y == -1) & (data.proba == 1.0)))
    n_test = min(args.n_test, len(defective))
    if args.n_train + n_test > len(normal):
        raise UsageError(
            f"--n-train + --n-test must be at most {len(normal)} normal cells"
        )
    train = normal[: args.n_train]
    test = np.concatenate([normal[args.n_train : args.n_train + n_test], defective[:n_test]])
    if len(train) < 2:
        raise UsageError("--n-train must be at least 2")
    print(
        f"ELPV monocrystalline solar cells: {len(train)} defect-free cells to learn from, "
        f"scoring {n_test} defect-free + {n_test} defective held-out cells."
    )
    reader = _Reader(args.strict)
    images = [im for im in (reader.read(p) for p in files[train]) if im is not None]
    detector = EfficientNetGaussianDetector()
    _configure(detector, args, progress)
    n_hold = fit_detector(detector, images, args.holdout, args.seed)
    detector.set_params(progress=False)
    del images
    print(f"Fitted on {len(train) - n_hold} cells; threshold set on the other {n_hold}." if n_hold
          else f"Fitted on {len(train)} cells; threshold from their out-of-fold scores.")
    test_files = list(files[test])
    display = [f"{Path(p).name}" for p in test_files]
    truth = ["defective" if data.y[i] == -1 else "normal" for i in test]
    rows, index, reader2 = explain_and_report(
        detector, test_files, out_dir, args, display=display, truth=truth,
        explain_all=False, max_explain=args.max_explain,
        title="skanomaly demo: ELPV solar cells", progress=progress,
    )
    reader.report()
    reader2.report()
    y_true = [r["truth"] == "defective" for r in rows]
    anomaly = [r["anomaly_score"] for r in rows]
    if 0 < sum(y_true) < len(y_true):
        print(f"Image AUROC (defective vs normal): {roc_auc_score(y_true, anomaly):.3f}")
    ranked = sorted(rows, key=lambda r: -r["anomaly_score"])[:5]
    print("Most anomalous cells:")
    for row in ranked:
        print(f"  {row['anomaly_score']:9.4g}  {row['label']:<9}  (truly {row['truth']})  {row['path']}")
    _print_summary(rows, -detector.offset_)
    print(f"Report: {index.resolve()}")
    return 1 if (reader.skipped or reader2.skipped) else 0


_COMMANDS = {"fit": cmd_fit, "score": cmd_score, "explain": cmd_explain, "demo": cmd_demo}


def main(argv=None):
    """Run the ``skanomaly`` command; returns the exit code."""
    parser = build_parser()
    verbose = "-v" in (argv if argv is not None else sys.argv[1:]) or "--verbose" in (
        argv if argv is not None else sys.argv[1:]
    )
    try:
        args = parser.parse_args(argv)
        verbose = args.verbose if hasattr(args, "verbose") else verbose
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        if verbose:
            traceback.print_exc()
        _say(f"skanomaly: error: {exc}")
        return 2
    except ImageReadError as exc:
        if verbose:
            traceback.print_exc()
        _say(f"skanomaly: error: {exc} (stopped by --strict)")
        return 1
    except KeyboardInterrupt:
        _say("skanomaly: interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - one line unless --verbose
        if verbose:
            traceback.print_exc()
        message = str(exc).splitlines()[0] if str(exc) else ""
        hint = "" if verbose else " (run with --verbose for the traceback)"
        _say(f"skanomaly: error: {type(exc).__name__}: {message}{hint}")
        return 2
