"""The ``argparse`` parser of the ``skanomaly`` command (:func:`build_parser`):
subcommands, options, their types and help texts. :mod:`skanomaly.cli` runs
what it parses."""

import argparse
import math
import re

from . import __version__, persistence
from ._console import UsageError
from ._constants import (
    AUGMENTS,
    EXPLAIN_METHODS,
    IMAGE_SCORES,
    PATCH_NEIGHBORHOOD,
    PATCH_NEIGHBORHOOD_SCALES,
    PATCH_NEIGHBORHOODS,
    POOLINGS,
    PRECISIONS,
)

__all__ = ["build_parser"]

_MODEL_NOTE = (
    "Model files hold arrays and settings only, never code, so loading one runs nothing from it."
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line, via :class:`UsageError`,
    and reads negative numbers in e-notation (``--threshold -1e-3``, as the
    thresholds are printed) as values, not as options."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse's own pattern (Python 3.11/3.12) knows -2 and -2.5 only.
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

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


def _float_type(accepts, expected):
    """An argparse type for a float that ``accepts(value)``; text that is no
    number is refused with the rest, as ``expected``."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def _number_in(low, high, low_included):
    """An argparse type for a float in ``[low, high]`` (or ``(low, high]``)."""
    interval = f"{'[' if low_included else '('}{low:g}, {high:g}]"
    return _float_type(
        lambda v: low <= v <= high and (low_included or v > low), f"a number in {interval}"
    )


_contamination = _number_in(0, 0.5, low_included=False)
_fraction = _number_in(0, 0.5, low_included=True)
_share = _number_in(0, 1, low_included=False)
# A blur in pixels or an L1 weight: any finite size, 0 for none.
_nonnegative = _float_type(lambda v: 0 <= v < math.inf, "a number >= 0")
_finite = _float_type(math.isfinite, "a finite number")
# A false-positive rate, or NPCA's share of the variance.
_open_share = _float_type(lambda v: 0 < v < 1, "a number in (0, 1)")


def _region_file(text):
    if text == "-":
        raise argparse.ArgumentTypeError("expected a file name ('-' is not accepted here)")
    return text


def _region_options(parser, which):
    """``--regions`` and ``--min-area``, for the subcommands that find regions."""
    parser.add_argument(
        "--regions",
        type=_region_file,
        default=None,
        metavar="FILE",
        help=f"write the anomalous regions of {which} as CSV to FILE: one row "
        "per region above the model's pixel threshold, with its area, "
        "bounding box, peak and mean map value",
    )
    _min_area(parser)


def _min_area(parser):
    """``--min-area``: the smallest region that counts."""
    parser.add_argument(
        "--min-area",
        type=_positive_int,
        default=1,
        metavar="PIXELS",
        help="leave out regions of fewer pixels (default: 1)",
    )


def _pixel_fpr(parser, source):
    """``--pixel-fpr``, the pixel threshold's rate, set ``source``."""
    parser.add_argument(
        "--pixel-fpr",
        type=_open_share,
        default=0.01,
        metavar="RATE",
        help="share of the pixels of normal images that the defect masks and "
        f"regions flag, in (0, 1); sets the pixel threshold {source} (default: 0.01)",
    )


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


def _neighborhood(text):
    """A side such as 3, or sides such as 1,3 whose features go side by side."""
    allowed = {
        ",".join(map(str, v)) if isinstance(v, tuple) else str(v): v
        for v in (*PATCH_NEIGHBORHOODS, *PATCH_NEIGHBORHOOD_SCALES)
    }
    value = allowed.get(text.replace(" ", ""))
    if value is None:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(allowed)}; got {text!r}")
    return value


def _map_options(parser, why=""):
    """``--method``, ``--smoothing`` and ``--lam``: the model's map settings,
    overridden."""
    parser.add_argument(
        "--method",
        default=None,
        choices=EXPLAIN_METHODS,
        help=f"override the model's explain method{why}",
    )
    parser.add_argument(
        "--smoothing",
        type=_nonnegative,
        default=None,
        metavar="SIGMA",
        help="override the model's blur of the maps, in pixels of a 224 px network input",
    )
    parser.add_argument(
        "--lam",
        type=_nonnegative,
        default=None,
        help="override the model's L1 weight of the descents (--lam of fit)",
    )


def _common(parser, strict=True):
    """Options shared by every subcommand; ``--strict`` only by those that
    skip unreadable images."""
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--device", default="auto", help="where the network runs: auto (default), cpu or cuda"
    )
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="autocast dtype of the network: auto (default; float16 on CUDA, "
        "float32 on CPUs), float32, float16 or bfloat16 (faster on CPUs with "
        "AVX512-BF16; score in the dtype the model was fitted in)",
    )
    group.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="images per forward pass (default: the detector's, 16)",
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: on when stderr is a terminal)",
    )
    if strict:
        group.add_argument(
            "--strict",
            action="store_true",
            help="stop at the first unreadable image (exit 1) instead of skipping it",
        )
    group.add_argument(
        "-v", "--verbose", action="store_true", help="show full tracebacks on errors"
    )


def _model_argument(parser, help_text):
    """MODEL and ``--trust-pickle``, for the subcommands that read a model."""
    parser.add_argument("model", metavar="MODEL", help=help_text)
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="also accept a model file of the first format (a joblib pickle of early "
        "builds of skanomaly 0.1); loading a "
        "pickle runs any code it holds, so only for files you wrote or trust",
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
            "2 usage or fatal error, 130 interrupted, 141 output pipe closed. "
            "Start with: skanomaly demo"
        ),
    )
    parser.add_argument("--version", action="version", version=f"skanomaly {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    paths_help = (
        "image files and/or folders; a folder stands for its .png, .jpg, .jpeg, "
        ".bmp, .tif and .tiff files (not recursive; hidden files are skipped)"
    )
    model_help = f"a model file written by 'skanomaly fit'. {_MODEL_NOTE}"

    fit = sub.add_parser(
        "fit",
        help="fit a detector on a folder of normal images",
        description=(
            "Fit an anomaly detector on normal (defect-free) images and save it. "
            "A few dozen images or more make a useful model. " + _MODEL_NOTE
        ),
    )
    fit.add_argument("normal", nargs="+", metavar="NORMAL_DIR", help=paths_help)
    fit.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="MODEL",
        help="where to write the model file, e.g. model"
        f"{persistence.MODEL_SUFFIX}; it is written to a temporary file "
        "beside it first, so an interrupted fit keeps the previous one",
    )
    fit.add_argument(
        "--backbone",
        default="tf_efficientnet_lite0",
        help="timm EfficientNet name (default: tf_efficientnet_lite0, "
        "bundled weights, works offline)",
    )
    fit.add_argument(
        "--weights",
        default=None,
        metavar="STATE_DICT",
        help="a state dict file of --backbone (timm or lukemelas key names): its own "
        "weights offline, where none are bundled; the model file refers to it",
    )
    fit.add_argument(
        "--levels",
        type=_levels,
        default="all",
        help="feature levels: 'all' (default) or comma-separated indices "
        "or names, e.g. 0,1,2,3 or stage3,stage4,head",
    )
    fit.add_argument(
        "--contamination",
        type=_contamination,
        default=0.05,
        help="fraction of new normal images to flag, in (0, 0.5]; sets the "
        "threshold from out-of-fold training scores (default: 0.05)",
    )
    fit.add_argument(
        "--explain-method",
        default="descent",
        choices=EXPLAIN_METHODS,
        help="how 'explain' draws maps (default: descent, the most accurate; "
        "spatial is the fastest)",
    )
    fit.add_argument(
        "--input-size",
        type=_positive_int,
        default=None,
        metavar="PIXELS",
        help="side of the square each image is resized to for the network, 32 to "
        "4096 (default: the backbone's, 224 for Lite0); larger sees smaller defects "
        "and costs more",
    )
    fit.add_argument(
        "--keep-aspect",
        action="store_true",
        help="resize each image to as many pixels as that square in its own aspect "
        "ratio instead of stretching it",
    )
    fit.add_argument(
        "--smoothing",
        type=_nonnegative,
        default=4.0,
        metavar="SIGMA",
        help="blur of the maps (Gaussian sigma), in pixels of a 224 px network input, "
        "whatever --input-size is (default: 4, PatchCore's; 2 can outline specks and "
        "thin scratches better)",
    )
    fit.add_argument(
        "--lam",
        type=_nonnegative,
        default=0.0,
        help="L1 weight of the descent maps, a share of each image's largest gradient: "
        "0 (default) dense maps, 0.1 sparse ones, 1 or more the prior map unchanged",
    )
    fit.add_argument(
        "--pooling",
        default="mean",
        choices=POOLINGS,
        help="how each level's feature maps are pooled: mean (default, "
        "Rippel et al.) or max (small defects weigh more)",
    )
    fit.add_argument(
        "--npca",
        type=_open_share,
        default=None,
        metavar="SHARE",
        help="leave out of each level's distance its directions of most variance, as "
        "many as hold this share of it (NPCA, Rippel et al.; default: keep all)",
    )
    fit.add_argument(
        "--standardize",
        action="store_true",
        help="standardise each level's distance by the training images' out-of-fold "
        "distances there before summing, so that each level counts alike",
    )
    fit.add_argument(
        "--image-score",
        default="pooled+patches",
        choices=IMAGE_SCORES,
        help="pooled+patches (default): the pooled features' distances plus the "
        "worst patch's distance to the normal patches (defects a few patches wide "
        "count); pooled: the pooled distances alone (a little faster; fits on 2 "
        "images); patches: the worst patch's distance alone (for few normal "
        "images, even one with --augment)",
    )
    fit.add_argument(
        "--patch-neighborhood",
        type=_neighborhood,
        default=PATCH_NEIGHBORHOOD,
        help="side of the square of feature-map locations averaged into each "
        "patch feature of the maps; sides such as 1,3 (the default) put the "
        "features of each side by side; the image scores of --image-score "
        "compare the widest side's",
    )
    fit.add_argument(
        "--patch-coreset",
        type=_share,
        default=1.0,
        metavar="SHARE",
        help="size of the patch memory as a share of its largest, 16,384 normal "
        "patches, each the farthest from those kept before (default: 1; PatchCore "
        "keeps 0.1): faster patch scores and maps",
    )
    fit.add_argument(
        "--score-coreset",
        type=_share,
        default=0.1,
        metavar="SHARE",
        help="the part of the patch memory that the image scores of --image-score "
        "search, as a share of its largest (default: 0.1; 1 searches all of it); "
        "the maps search the whole memory",
    )
    fit.add_argument(
        "--augment",
        default=None,
        choices=AUGMENTS,
        help="also fit on flipped, rotated or shifted views of the normal "
        "images (for few images or parts at any orientation)",
    )
    fit.add_argument(
        "--holdout",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="fraction of the normal images kept out of the fit to set the "
        "threshold on them instead (default: 0, fit on all and set the "
        "threshold from out-of-fold scores)",
    )
    _pixel_fpr(fit, "from the training images' maps, or from the held-out ones with --holdout")
    fit.add_argument("--seed", type=int, default=0, help="seed of the hold-out split (default: 0)")
    _common(fit)

    calibrate = sub.add_parser(
        "calibrate",
        help="set a model's thresholds from normal images it was not fitted on",
        description=(
            "Set both thresholds of a fitted model from normal images that it was "
            "not fitted on (collected later, or kept apart): about --fpr of new "
            "normal images are then flagged and about --pixel-fpr of their pixels "
            "outlined. More images allow smaller rates: with n images, about "
            "1 / (n + 1) at least. Or set the thresholds themselves, without images, "
            "with --threshold and --pixel-threshold."
        ),
    )
    _model_argument(calibrate, model_help)
    calibrate.add_argument("normal", nargs="*", metavar="NORMAL_DIR", help=paths_help)
    calibrate.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="MODEL",
        help="where to write the calibrated model (default: over MODEL, through a "
        "temporary file beside it)",
    )
    calibrate.add_argument(
        "--fpr",
        type=_open_share,
        default=None,
        metavar="RATE",
        help="share of new normal images to flag, in (0, 1) (default: the model's contamination)",
    )
    _pixel_fpr(calibrate, "from these images' maps")
    calibrate.add_argument(
        "--threshold",
        type=_finite,
        default=None,
        metavar="ANOMALY_SCORE",
        help="instead of images: flag the images whose anomaly_score is above this value "
        "(such as a threshold that 'skanomaly evaluate' reports); the pixel threshold "
        "is kept unless --pixel-threshold is given too",
    )
    calibrate.add_argument(
        "--pixel-threshold",
        type=_finite,
        default=None,
        metavar="MAP_VALUE",
        help="instead of images: outline the pixels whose map value is above this value "
        "(such as the one that 'skanomaly evaluate --masks' reports), for the model's "
        "maps; the image threshold is kept unless --threshold is given too",
    )
    _common(calibrate)

    score = sub.add_parser(
        "score",
        help="score images with a fitted model (fast, no heat maps)",
        description=(
            "Score images: one row per image with its anomaly_score, label "
            "(normal/anomalous) and path; --csv also writes its score and decision. "
            "Higher anomaly_score is more anomalous; an image is anomalous when its "
            "decision is negative."
        ),
    )
    _model_argument(score, model_help)
    score.add_argument("paths", nargs="+", metavar="PATHS", help=paths_help)
    score.add_argument(
        "--csv",
        metavar="FILE",
        help="write the scores as CSV to FILE ('-' for stdout) instead of printing a table",
    )
    _region_options(score, "the anomalous images (explaining them takes longer than scoring)")
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
    _model_argument(explain, model_help)
    explain.add_argument("paths", nargs="+", metavar="PATHS", help=paths_help)
    explain.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="folder for the report, created if missing",
    )
    explain.add_argument(
        "--all", action="store_true", help="explain every image, not only the anomalous ones"
    )
    explain.add_argument(
        "--max-explain",
        type=_positive_int,
        default=None,
        metavar="N",
        help="explain at most the N most anomalous of them",
    )
    _map_options(explain)
    explain.add_argument("--title", default=None, help="title of the report")
    _region_options(explain, "the explained images")
    _common(explain)

    evaluate = sub.add_parser(
        "evaluate",
        help="measure a fitted model on folders of normal and defective images",
        description=(
            "Score a folder of normal images and one of defective images (every file "
            "must be readable), or the test split of an MVTec AD category, and print "
            "the image AUROC, the average precision, the shares of each kind that the "
            "model's threshold flags and the images it misjudged; with masks, also "
            "the pixel AUROC and AU-PRO of the heat maps (slower: every image is "
            "explained). With -o, also an HTML report to look at them."
        ),
    )
    _model_argument(evaluate, model_help)
    evaluate.add_argument(
        "normal", metavar="NORMAL_DIR", nargs="?", default=None, help="folder of normal images"
    )
    evaluate.add_argument(
        "anomalous",
        metavar="DEFECT_DIR",
        nargs="?",
        default=None,
        help="folder of defective images",
    )
    evaluate.add_argument(
        "--mvtec",
        metavar="CATEGORY_DIR",
        default=None,
        help="instead of the two folders: an MVTec AD category folder, whose test/ "
        "split (every defect type) and ground_truth/ masks are evaluated",
    )
    evaluate.add_argument(
        "--masks",
        metavar="MASK_DIR",
        default=None,
        help="folder of the defective images' masks, nonzero on defects: the mask of "
        "name.png is name<SUFFIX> with any image extension",
    )
    evaluate.add_argument(
        "--mask-suffix",
        default="",
        metavar="SUFFIX",
        help="what mask names add to their image's name, such as _mask (default: nothing)",
    )
    evaluate.add_argument(
        "-o",
        "--output",
        metavar="OUTDIR",
        default=None,
        help="also write OUTDIR/index.html, a report that opens from disk: every image "
        "with its ground truth and score, a histogram of the scores of each kind "
        "against the threshold, and heat maps of the defective images, the false "
        "alarms and the normal images with a region at the pixel threshold "
        "(ground-truth masks outlined)",
    )
    _map_options(evaluate, ", to compare the methods' maps on the same masks")
    _min_area(evaluate)
    # It never skips an image: a labelled set with a hole measures something else.
    _common(evaluate, strict=False)

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
    demo.add_argument(
        "-o",
        "--output",
        default="skanomaly_report",
        metavar="OUTDIR",
        help="folder for the report (default: skanomaly_report)",
    )
    demo.add_argument(
        "--n-train",
        type=_positive_int,
        default=60,
        metavar="N",
        help="normal cells to fit on (default: 60)",
    )
    demo.add_argument(
        "--n-test",
        type=_positive_int,
        default=30,
        metavar="N",
        help="held-out normal cells and defective cells each (default: 30)",
    )
    demo.add_argument(
        "--max-explain",
        type=_positive_int,
        default=12,
        metavar="N",
        help="heat maps for at most the N most anomalous flagged cells (default: 12)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument(
        "--holdout",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="fraction of the training cells that set the threshold "
        "(default: 0; see 'skanomaly fit --help')",
    )
    _common(demo)

    export = sub.add_parser(
        "export",
        help="write a fitted model as one ONNX graph, for onnxruntime or OpenVINO",
        description=(
            "Write MODEL as an ONNX file that runs without Python packages of "
            "skanomaly or torch: it takes uint8 (n, H, W, 3) RGB images and returns "
            "their scores (higher is more normal, as score_samples; anomalous below "
            "the 'offset' stored in the file's metadata) and, with --maps, heat maps. "
            "Needs the onnx package: pip install 'skanomaly[onnx]'."
        ),
    )
    _model_argument(export, model_help)
    export.add_argument("output", metavar="OUT", help="the .onnx file to write, e.g. model.onnx")
    export.add_argument(
        "--maps",
        action="store_true",
        help="add a second output, the 'spatial' heat maps at the image size",
    )
    export.add_argument(
        "--image-size",
        type=_positive_int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="export for images of H x W pixels only (default: any size; "
        "required for models fitted with keep_aspect)",
    )
    export.add_argument(
        "-v", "--verbose", action="store_true", help="show full tracebacks on errors"
    )
    return parser
