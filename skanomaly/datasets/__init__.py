"""Loaders for anomaly detection image datasets.

Every loader returns a :class:`~sklearn.utils.Bunch` whose labels follow
scikit-learn's outlier convention: ``+1`` for normal images and ``-1`` for
anomalous ones, so that ``roc_auc_score(y, detector.score_samples(X))`` rates
a detector whose scores are higher for normal images.

Images come as an ``(n, H, W, 3)`` uint8 RGB array when they share one size
(always so with ``resize``), otherwise as a list of ``(H, W, 3)`` uint8
arrays; grayscale files are replicated to three channels. Pixel masks come as
boolean arrays (or lists) of the same sizes, ``True`` on defects. Files are
taken in order of their names; hidden files (names starting with ``.``, such
as the ``._name.png`` files that macOS leaves on shared drives) are skipped.
A file that cannot be read, an anomalous image
without a mask and a mask without an image each raise an error naming the
file rather than being skipped.

The loaders of third-party data sets (MVTec AD, magnetic tiles, cookies,
PIPED) read them from ``root`` where given, else from the folder of the
data set's name in :func:`shared_data_dir`: the ``SKANOMALY_DATA``
environment variable (``export SKANOMALY_DATA=/data/anomaly``, which holds
``mvtec_ad/``, ``cookies/`` and so on), or in a source checkout a
``shared/data`` folder beside it. ELPV comes from its PyPI package.
"""

# One private module per data set (family) holds its loader; _common holds
# what they share: finding the data folder, listing image files, pairing
# images with masks and reading them.
from ._common import shared_data_dir
from ._cookies import load_cookies
from ._elpv import load_elpv
from ._folder import load_folder
from ._magnetic_tile import load_magnetic_tile
from ._mvtec import load_mvtec_3d_rgb, load_mvtec_ad
from ._piped import load_piped, piped_types

__all__ = [
    "load_cookies",
    "load_elpv",
    "load_folder",
    "load_magnetic_tile",
    "load_mvtec_3d_rgb",
    "load_mvtec_ad",
    "load_piped",
    "piped_types",
    "shared_data_dir",
]
