"""Ordinary input reaches the user without warnings from skanomaly's code, and
the warnings it does give name the user's line."""

import re
import subprocess
import sys
import warnings

import numpy as np
from PIL import Image

import skanomaly
from skanomaly import EfficientNetGaussianDetector


def test_ordinary_files_give_no_warnings(cells, tmp_path):
    normal, defective = cells
    model = tmp_path / "model.skanomaly"
    skanomaly.save(EfficientNetGaussianDetector(levels=(0, 1, 2, 3)).fit(normal[:8]), model)
    # Files as cameras and export scripts write them: 8-bit gray PNG, RGB
    # JPEG, a PIL-read array (read-only, which torch warns about).
    Image.fromarray(defective[0][..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(defective[1]).save(tmp_path / "rgb.jpg", quality=92)
    for command in (["score"], ["explain", "--all", "-o", str(tmp_path / "report")]):
        run = subprocess.run(
            [
                sys.executable,
                "-W",
                "always",
                "-m",
                "skanomaly",
                *command,
                str(model),
                str(tmp_path / "gray.png"),
                str(tmp_path / "rgb.jpg"),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr
        # Python's warnings print as "skanomaly: warning:" lines too; the one
        # expected is the command's own: this model, fitted in Python, has no
        # pixel threshold to outline regions with.
        warned = [line for line in run.stderr.splitlines() if "warning" in line.lower()]
        expected = "skanomaly: warning: no region outlines"
        assert all(line.startswith(expected) for line in warned), run.stderr
    detector = skanomaly.load(model)
    read_only = np.asarray(Image.open(tmp_path / "rgb.jpg"))
    assert not read_only.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detector.score_samples(read_only[None])
        detector.explain(read_only[None])


def test_the_command_line_shows_each_warning_once(capsys):
    from skanomaly._console import one_line_warnings

    # From two places, as two network builds warn: Python shows both.
    message = "the same condition, met by two networks"
    with one_line_warnings():
        warnings.warn(message, UserWarning, stacklevel=1)
        warnings.warn(message, UserWarning, stacklevel=1)
        warnings.warn("another one", UserWarning, stacklevel=1)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"skanomaly: warning: {message}", "skanomaly: warning: another one"]


def _warns_deep_inside():
    warnings.warn("raised in a library", UserWarning, stacklevel=3)


def test_verbose_warnings_name_the_line_that_raised_them(capsys):
    from skanomaly._console import one_line_warnings

    # stacklevel points past the raising function, as the library's
    # warnings point at their caller's line.
    with one_line_warnings(verbose=True):
        _warns_deep_inside()
    (line,) = capsys.readouterr().err.splitlines()
    raised = _warns_deep_inside.__code__.co_firstlineno + 1
    assert line.endswith(f"(UserWarning at {__file__}:{raised})")


def test_warnings_name_the_line_that_called_skanomaly(cells, tmp_path):
    """Each warning points at the user's call, however deep in the package
    it is raised."""
    normal, defective = cells
    detector = EfficientNetGaussianDetector(levels=(0, 1, 2, 3), explain_method="spatial")
    detector.fit(normal[:8])
    first, second = (Image.fromarray(image) for image in defective[:2])
    first.save(tmp_path / "frames.tif", save_all=True, append_images=[second])
    calls = [
        ("below 1 / \\(n \\+ 1\\)", lambda: detector.calibrate(normal[8:11], fpr=0.01)),
        ("calibration\\s+pixels", lambda: detector.calibrate_pixels(normal[8:9], fpr=1e-6)),
        ("several frames", lambda: detector.score_samples([tmp_path / "frames.tif"])),
        (
            "only training image",
            lambda: EfficientNetGaussianDetector(
                levels=(0, 1, 2, 3), image_score="patches", augment="flips"
            ).fit(normal[:1]),
        ),
    ]
    for match, call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        found = [w for w in caught if re.search(match, str(w.message))]
        assert found, match
        assert all(w.filename == __file__ for w in found), (match, found[0].filename)
