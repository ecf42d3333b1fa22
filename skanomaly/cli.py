"""The ``skanomaly`` console command: fit, score and explain image folders.

Run ``skanomaly --help`` (or ``python -m skanomaly --help``) for usage. Exit
codes: 0 success, 1 some images could not be read and were skipped (or
``--strict`` stopped at the first), 2 usage or fatal error (missing path,
empty folder, bad option, unusable model file, unwritable output), 130
interrupted, 141 the reader of the output closed it (``| head``).

This module runs what :mod:`skanomaly._cli_parser` parses: the work on image files
is :mod:`skanomaly.inspection`'s and :mod:`skanomaly.explain_report`'s, model
files are :mod:`skanomaly.persistence`'s.
"""

import contextlib
import os
import sys
import traceback
from pathlib import Path

from . import persistence
from ._cli_parser import build_parser
from ._console import ImageReadError, UsageError, one_line_warnings, say, warn
from ._files import IMAGE_EXTENSIONS, check_writable
from .explain_report import (
    explain_and_report,
    explain_regions,
    optional_pixel_threshold,
    prepare_outdir,
    require_pixel_threshold,
    run_demo,
    write_evaluation_report,
)
from .inspection import (
    ImageReader,
    calibrate_on_files,
    collect_images,
    evaluate_labelled,
    evaluation_report,
    fit_on_files,
    format_table,
    score_files,
    score_rows,
    summary,
    write_csv,
    write_regions_csv,
)

__all__ = ["main"]


def _progress_default(args):
    if args.progress is not None:
        return args.progress
    return sys.stderr.isatty()


# ---------------------------------------------------------------- helpers
@contextlib.contextmanager
def _usage_errors():
    """Turn the library's ValueError and OSError into a one-line usage error."""
    try:
        yield
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from exc


def _check_output(path, what, model=None, images=()):
    """Refuse, before any work, an output ``path`` that cannot be written,
    or that names the ``model`` file or one of the input ``images`` (which
    it would replace)."""
    if not str(path):
        raise UsageError(f"the path of {what} is empty")
    with _usage_errors():
        path = check_writable(path, what)
    if not path.is_file():
        return
    # Only images are read as inputs, so only an image name can be one.
    inputs = list(images) if path.suffix.lower() in IMAGE_EXTENSIONS else []
    for source in ([model] if model is not None else []) + inputs:
        if Path(source).is_file() and os.path.samefile(path, source):
            kind = "the model file" if source is model else "one of the input images"
            raise UsageError(f"cannot write {what} to {str(path)!r}: it is {kind}")


def _load_model(args):
    """The fitted detector in the model file of ``args``, or a usage error."""
    with _usage_errors():
        return persistence.load(args.model, trust_pickle=args.trust_pickle)


def _check_device(detector):
    """Refuse a ``--device`` this machine lacks before any image is read."""
    from .features import resolve_device

    try:
        resolve_device(detector.device)
    except ValueError as exc:
        raise UsageError(f"--device: {exc}") from exc


def _override_maps(detector, args):
    """Apply ``--method``, ``--smoothing`` and ``--lam`` where given."""
    given = {"explain_method": args.method, "smoothing": args.smoothing, "lam": args.lam}
    detector.set_params(**{k: v for k, v in given.items() if v is not None})


def _configure(detector, args, progress=False):
    """Apply the common options to ``detector`` and check its device."""
    params = {"device": args.device, "precision": args.precision, "progress": progress}
    if args.batch_size is not None:
        params["batch_size"] = args.batch_size
    detector.set_params(**params)
    _check_device(detector)
    return detector


# --------------------------------------------------------------- commands
def cmd_fit(args):
    """``skanomaly fit``: fit on normal images and save the model."""
    from .detector import EfficientNetGaussianDetector

    files = collect_images(args.normal)
    output = Path(args.output)
    _check_output(output, "the model file", images=files)
    # Before the images are read, which takes a while.
    if args.weights is not None and not Path(args.weights).is_file():
        raise UsageError(f"--weights: {args.weights!r} is not a file")
    progress = _progress_default(args)
    detector = EfficientNetGaussianDetector(
        args.backbone,
        weights=args.weights,
        levels=args.levels,
        contamination=args.contamination,
        explain_method=args.explain_method,
        smoothing=args.smoothing,
        lam=args.lam,
        input_size=args.input_size,
        keep_aspect=args.keep_aspect,
        pooling=args.pooling,
        npca=args.npca,
        standardize=args.standardize,
        augment=args.augment,
        image_score=args.image_score,
        patch_neighborhood=args.patch_neighborhood,
        patch_coreset=args.patch_coreset,
        score_coreset=args.score_coreset,
    )
    _configure(detector, args, progress)
    reader = ImageReader(args.strict)
    n_fit, n_hold = fit_on_files(
        detector,
        files,
        reader,
        holdout=args.holdout,
        seed=args.seed,
        progress=progress,
        pixel_fpr=args.pixel_fpr,
    )
    # The saved model runs wherever it is loaded, without bars.
    detector.set_params(progress=False, device="auto", precision="auto")
    with _usage_errors():
        persistence.save(detector, output)
    source = f"{n_hold} held-out image(s)" if n_hold else "out-of-fold training scores"
    print(
        f"Fitted on {n_fit} image(s) (levels "
        f"{', '.join(detector.level_names_)}); threshold on anomaly_score "
        f"{-detector.offset_:.4g}, from {source}; pixel threshold "
        f"{detector.pixel_threshold_:.4g} (pixel false-positive rate {args.pixel_fpr:g}); "
        f"model written to {output}"
    )
    return 1 if reader.skipped else 0


def cmd_calibrate(args):
    """``skanomaly calibrate``: both thresholds from held-out normal images,
    or either as given."""
    given = args.threshold is not None or args.pixel_threshold is not None
    if given == bool(args.normal):
        raise UsageError(
            "give NORMAL_DIR (normal images to calibrate on) or --threshold and/or "
            f"--pixel-threshold, {'not both' if given else 'one of them'}"
        )
    detector = _load_model(args)
    output = Path(args.output or args.model)
    files = [] if given else collect_images(args.normal)
    _check_output(output, "the model file", images=files)
    if given:
        return _set_thresholds(detector, args.threshold, args.pixel_threshold, output)
    progress = _progress_default(args)
    _configure(detector, args, progress)
    fpr = detector.contamination if args.fpr is None else args.fpr
    reader = ImageReader(args.strict)
    n_images = calibrate_on_files(
        detector, files, reader, fpr=fpr, pixel_fpr=args.pixel_fpr, progress=progress
    )
    # As fit: the saved model runs wherever it is loaded, without bars.
    detector.set_params(progress=False, device="auto", precision="auto")
    with _usage_errors():
        persistence.save(detector, output)
    print(
        f"Calibrated on {n_images} normal image(s): threshold on anomaly_score "
        f"{-detector.offset_:.4g} (false-positive rate {fpr:g}); pixel threshold "
        f"{detector.pixel_threshold_:.4g} (pixel false-positive rate {args.pixel_fpr:g}); "
        f"model written to {output}"
    )
    return 1 if reader.skipped else 0


def _set_thresholds(detector, threshold, pixel_threshold, output):
    """``calibrate --threshold/--pixel-threshold``: the thresholds as given,
    the other kept."""
    said = []
    if threshold is None:
        said.append("threshold on anomaly_score kept")
    else:
        detector.offset_ = -threshold
        said.append(f"threshold on anomaly_score set to {threshold!r}")
    if pixel_threshold is None:
        said.append("pixel threshold kept")
    else:
        detector.calibrate_pixels(threshold=pixel_threshold)
        said.append(f"pixel threshold set to {pixel_threshold!r} for the model's maps")
    with _usage_errors():
        persistence.save(detector, output)
    said = "; ".join(said)
    print(f"{said[0].upper()}{said[1:]}; model written to {output}")
    return 0


def cmd_score(args):
    """``skanomaly score``: a table or CSV of scores."""
    detector = _load_model(args)
    files = collect_images(args.paths)
    _configure(detector, args)
    # Checked before the scoring, which may take long.
    if args.csv is not None and args.csv != "-":
        _check_output(args.csv, "the CSV file", args.model, files)
    if args.regions is not None and args.regions != "-":
        _check_output(args.regions, "the regions CSV file", args.model, files)
    threshold = require_pixel_threshold(detector) if args.regions else None
    reader = ImageReader(args.strict)
    progress = _progress_default(args)
    kept, scores, _ = score_files(detector, files, reader, progress)
    reader.report()
    if not kept:
        raise UsageError("no image could be read; nothing written")
    rows = score_rows(kept, scores, detector.offset_)
    if args.regions:
        regions = explain_regions(
            detector, kept, reader, rows, threshold, progress=progress, min_area=args.min_area
        )
        write_regions_csv(regions, args.regions)
    if args.csv:
        write_csv(rows, args.csv)
        if args.csv != "-":
            print(summary(rows, -detector.offset_))
            print(f"Scores written to {args.csv}")
    else:
        print(format_table(rows))
        print(summary(rows, -detector.offset_))
    if args.regions and args.csv != "-":
        print(f"{len(regions)} region(s) written to {args.regions}")
    return 1 if reader.skipped else 0


def cmd_explain(args):
    """``skanomaly explain``: scores, heat maps and an HTML report."""
    detector = _load_model(args)
    _override_maps(detector, args)
    files = collect_images(args.paths)
    _configure(detector, args)
    if args.regions is not None and args.regions != "-":
        _check_output(args.regions, "the regions CSV file", args.model, files)
    reader = ImageReader(args.strict)
    rows, index = explain_and_report(
        detector,
        files,
        args.output,
        reader,
        explain_all=args.all,
        max_explain=args.max_explain,
        title=args.title,
        progress=_progress_default(args),
        regions=args.regions,
        min_area=args.min_area,
    )
    reader.report()
    if index is None:
        warn("no image could be read; no report written")
        return 1
    n_overlays = sum(r["overlay"] is not None for r in rows)
    print(summary(rows, -detector.offset_))
    print(f"{n_overlays} heat map(s) drawn. Report: {index.resolve()}")
    if args.regions:
        n_regions = sum(r["regions"] or 0 for r in rows)
        print(f"{n_regions} region(s) written to {args.regions}")
    return 1 if reader.skipped else 0


def cmd_evaluate(args):
    """``skanomaly evaluate``: accuracy on labelled folders."""
    from .datasets import load_folder, load_mvtec_ad

    folders = args.normal is not None and args.anomalous is not None
    if args.mvtec is None:
        unusable = not folders
    else:
        unusable = any((args.normal, args.anomalous, args.masks, args.mask_suffix))
    if unusable:
        raise UsageError("give NORMAL_DIR and DEFECT_DIR (and --masks), or --mvtec alone")
    if folders:
        named = {"NORMAL_DIR": args.normal, "DEFECT_DIR": args.anomalous, "--masks": args.masks}
        seen = {}
        for name, folder in named.items():
            if folder is not None:
                other = seen.setdefault(os.path.realpath(folder), name)
                if other != name:
                    raise UsageError(f"{other} and {name} are the same folder")
    if args.output is not None:
        prepare_outdir(args.output)  # before the evaluation, which takes a while
    detector = _load_model(args)
    _override_maps(detector, args)
    progress = _progress_default(args)
    _configure(detector, args, progress)
    with _usage_errors():
        if folders:
            data = load_folder(
                args.normal, args.anomalous, args.masks, mask_suffix=args.mask_suffix
            )
            X, y, masks, kinds = data.X, data.y, data.masks, None
        else:
            if not (Path(args.mvtec) / "test").is_dir():
                raise UsageError(
                    f"--mvtec: {args.mvtec!r} has no test/ folder; give the folder of one "
                    "category, which holds test/ (and ground_truth/)"
                )
            data = load_mvtec_ad(args.mvtec, train=False)
            X, y, masks, kinds = data.X_test, data.y_test, data.masks_test, data.defect_type
            for label, missing in ((1, "test/good"), (-1, "a defect folder in test/")):
                if not (y == label).any():
                    raise UsageError(f"--mvtec: no images in {missing}; evaluation needs both")
        # The pixel threshold outlines the report's regions and, with masks,
        # counts the defects they find.
        wanted = masks is not None or args.output is not None
        pixel_threshold = optional_pixel_threshold(detector) if wanted else None
        result = evaluate_labelled(detector, X, y, masks, kinds, pixel_threshold, args.min_area)
    print(evaluation_report(result, y, data.filenames, -detector.offset_))
    if args.output is not None:
        index = write_evaluation_report(
            detector,
            X,
            y,
            data.filenames,
            result,
            args.output,
            defect_type=kinds,
            masks=masks,
            progress=progress,
        )
        print(f"Report: {index.resolve()}")
    return 0


def cmd_demo(args):
    """``skanomaly demo``: fit, score and explain real solar cells."""
    from .detector import EfficientNetGaussianDetector

    progress = _progress_default(args)
    detector = _configure(EfficientNetGaussianDetector(), args, progress)
    n_skipped = run_demo(
        detector,
        args.output,
        n_train=args.n_train,
        n_test=args.n_test,
        max_explain=args.max_explain,
        seed=args.seed,
        holdout=args.holdout,
        strict=args.strict,
        progress=progress,
    )
    return 1 if n_skipped else 0


def cmd_export(args):
    """``skanomaly export``: the model as an ONNX graph."""
    _check_output(args.output, "the ONNX file", model=args.model)
    if Path(args.model).suffix.lower() == ".onnx":
        raise UsageError(
            f"{args.model!r} is an ONNX file; MODEL is a model file written by "
            "'skanomaly fit', which export turns into ONNX"
        )
    detector = _load_model(args)
    if detector.keep_aspect and args.image_size is None:
        raise UsageError(
            "the model resizes each image in its own aspect ratio (fit --keep-aspect), "
            "so its graph is for one image size: give it with --image-size HEIGHT WIDTH"
        )
    # The graph is traced on the CPU, whatever device the model names.
    detector.set_params(device="cpu", progress=False)
    try:
        detector.export_onnx(args.output, maps=args.maps, image_size=args.image_size)
    except (ValueError, OSError, ImportError) as exc:
        raise UsageError(str(exc)) from exc
    outputs = "scores and maps" if args.maps else "scores"
    size = "any image size" if args.image_size is None else "{}x{} images".format(*args.image_size)
    print(
        f"ONNX graph written to {args.output}: uint8 (n, H, W, 3) RGB images ({size}) -> "
        f"{outputs}; anomalous where scores < offset = {detector.offset_:.6g} "
        "(in the file's metadata)"
    )
    return 0


_COMMANDS = {
    "fit": cmd_fit,
    "calibrate": cmd_calibrate,
    "score": cmd_score,
    "explain": cmd_explain,
    "evaluate": cmd_evaluate,
    "demo": cmd_demo,
    "export": cmd_export,
}


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
        with one_line_warnings(verbose):
            return _COMMANDS[args.command](args)
    except UsageError as exc:
        if verbose:
            traceback.print_exc()
        say(f"skanomaly: error: {exc}")
        return 2
    except ImageReadError as exc:
        if verbose:
            traceback.print_exc()
        say(f"skanomaly: error: {exc} (stopped by --strict)")
        return 1
    except KeyboardInterrupt:
        say("skanomaly: interrupted")
        return 130
    except BrokenPipeError:
        # The reader of the output left (| head): stop quietly, as a
        # program killed by SIGPIPE does, and keep Python from reporting the
        # flush at exit that would fail again.
        with contextlib.suppress(OSError, ValueError):  # stdout may have no descriptor
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        message = str(exc).splitlines()[0] if str(exc) else ""
        hint = "" if verbose else " (run with --verbose for the traceback)"
        say(f"skanomaly: error: {type(exc).__name__}: {message}{hint}")
        return 2
