"""PIPED, the Paper ImPuritiEs Dataset (Bianconi et al., 2014)."""

from pathlib import Path

from sklearn.utils import Bunch

from .._compat import validate_params
from ._common import (
    OPTIONAL_PATH,
    check_resize,
    data_root,
    filenames,
    images_in,
    load_samples,
    match_masks,
    outlier_labels,
    subfolders,
)

__all__ = ["load_piped", "piped_types"]

# Its mask numbering does not follow its image numbering (the data set's
# README), so its masks cannot be paired with their images.
_UNPAIRED_MASKS = {"PA_ZPB01_RL"}


@validate_params({"root": OPTIONAL_PATH}, prefer_skip_nested_validation=True)
def piped_types(root=None):
    """The paper types of PIPED: the names of its subfolders, sorted.

    Parameters
    ----------
    root : str or path-like, default=None
        The PIPED folder; by default ``piped`` in :func:`shared_data_dir`.

    Returns
    -------
    list of str
        E.g. ``["PA_BDP01_TL", ..., "PU_PNG01_TL"]``.

    Raises
    ------
    TypeError
        If ``root`` is not None, a str or path-like.
    """
    return subfolders(data_root(root, "piped"))


def _mask_folder(folder):
    # Spelled "GroundThruth" in most paper types, "GroundTruth" in three.
    for name in ("GroundTruth", "GroundThruth"):
        if (folder / name).is_dir():
            return folder / name
    raise FileNotFoundError(f"Folder {str(folder)!r} has no GroundTruth mask folder.")


@validate_params({"paper_type": [str], "root": OPTIONAL_PATH}, prefer_skip_nested_validation=True)
def load_piped(paper_type, root=None, *, resize=None):
    """Load one paper type of PIPED, with its impurity masks.

    128 x 128 RGB patches of paper under a dome light (``_RL``) or in
    trans-illumination (``_TL``): 48 without impurities (``NoDefects/``) and
    48 with them (``Defects/``) per type, the latter with hand-drawn masks;
    ``PU_PNG01_TL`` has 40 normal patches only. The masks of ``PA_ZPB01_RL``
    are not numbered like its images, so they are not returned (``masks`` is
    None for it). There is no train/test split: make a seeded one.

    Parameters
    ----------
    paper_type : str
        A subfolder of the data set, e.g. ``"PA_BDP01_TL"`` (see
        :func:`piped_types`).
    root : str or path-like, default=None
        The PIPED folder; by default ``piped`` in :func:`shared_data_dir`.
    resize : int or (int, int), default=None
        Resize every image to this (height, width), or to a square of this
        side for an int, with bicubic interpolation (masks with nearest
        neighbour).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys:

        X : ndarray of shape (n, 128, 128, 3) or list of ndarray
            The normal patches, then the defective ones, uint8 RGB, each in
            order of file name. A list where their sizes differ without
            ``resize``: one defective patch of ``PA_BTN01_RL`` is 127 pixels
            wide.
        y : ndarray of shape (n,)
            +1 for normal patches, -1 for defective ones.
        masks : ndarray of shape (n, 128, 128), list of ndarray or None
            Boolean impurity masks (all False for normal patches), a list
            where ``X`` is; None for ``PA_ZPB01_RL``, and for
            ``PU_PNG01_TL``, which has no defective patches.
        defect_type : ndarray of shape (n,)
            ``"good"`` or ``"impurity"``.
        filenames : ndarray of shape (n,)
            Path of each image.

    Raises
    ------
    FileNotFoundError
        If ``root`` is None and there is no shared data folder, or a folder
        is missing.
    ValueError
        If a file cannot be read, or a defective patch has no mask.
    TypeError
        If ``paper_type`` is not a str, or ``root`` not None, a str or
        path-like.

    References
    ----------
    .. [1] F. Bianconi, L. Ceccarelli, A. Fernández and S. A. Saetta, "A
       sequential machine vision procedure for assessing paper impurities",
       Computers in Industry 65(2), 2014.
    """
    size = check_resize(resize)
    piped = data_root(root, "piped")
    folder = piped / paper_type
    # "", "." or a path would name the data set's folder or another one.
    if Path(paper_type).name != paper_type or paper_type in ("", ".", "..") or not folder.is_dir():
        raise FileNotFoundError(
            f"PIPED has no paper type {paper_type!r} (no folder {str(folder)!r}); "
            f"types: {', '.join(subfolders(piped))}."
        )
    # "NoDefect" in PU_PNG01_TL, which has no "Defects" folder.
    normal = images_in(folder / ("NoDefects" if (folder / "NoDefects").is_dir() else "NoDefect"))
    defective = images_in(folder / "Defects") if (folder / "Defects").is_dir() else []
    with_masks = bool(defective) and paper_type not in _UNPAIRED_MASKS
    mask_of = {}
    if with_masks:
        masks_folder = _mask_folder(folder / "Defects")
        found = match_masks(
            defective,
            images_in(masks_folder),
            lambda image: image.stem.replace("_S_D_", "_S_GT_"),
            masks_folder,
        )
        mask_of = dict(zip(defective, found, strict=True))
    samples = [(p, mask_of.get(p)) for p in normal + defective]
    # The masks are black impurities on white (not white on black, as the
    # shared data's README says).
    X, masks = load_samples(samples, size, with_masks=with_masks, dark=True)
    y, defect_type = outlier_labels(["good"] * len(normal) + ["impurity"] * len(defective))
    return Bunch(
        X=X, y=y, masks=masks, defect_type=defect_type, filenames=filenames(normal + defective)
    )
