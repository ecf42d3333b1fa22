"""Crash-safe outputs: an interrupted write never replaces a good file."""

import contextlib
import errno
import os
import re
import stat

import numpy as np
import pytest
from PIL import Image

import skanomaly.inspection
import skanomaly.report
from skanomaly._console import UsageError
from skanomaly._files import atomic_write, write_png
from skanomaly.inspection import score_rows, write_csv
from skanomaly.report import color_scale, score_histogram, write_report

FULL_DISK = OSError(errno.ENOSPC, "No space left on device")


def _only(folder, *names):
    """Whether ``folder`` holds exactly ``names``: no temporary file is left."""
    return sorted(p.name for p in folder.iterdir()) == sorted(names)


def _rows(n):
    return score_rows([f"img{i}.png" for i in range(n)], -np.arange(n, dtype=float), -1.5)


def test_atomic_write_replaces_only_when_complete(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write("first")
        assert not path.exists()
    assert path.read_text() == "first"
    for failure in (FULL_DISK, KeyboardInterrupt()):

        def fails_halfway(failure=failure):
            with atomic_write(path, "w") as handle:
                handle.write("second, half")
                raise failure

        with pytest.raises(type(failure)):
            fails_halfway()
        assert path.read_text() == "first"
        assert _only(tmp_path, "out.txt")


def test_atomic_write_keeps_permissions_and_links(tmp_path):
    target = tmp_path / "target.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    with atomic_write(link) as handle:
        handle.write(b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    # A new file gets the permissions that open() would give it.
    with atomic_write(tmp_path / "new.bin") as handle:
        handle.write(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o666 & ~umask


def test_atomic_write_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "no" / "f.txt", "w"):
        pass


@pytest.mark.parametrize("failure", [FULL_DISK, KeyboardInterrupt()])
def test_an_interrupted_csv_keeps_the_previous_one(tmp_path, monkeypatch, failure):
    path = tmp_path / "scores.csv"
    write_csv(_rows(3), path)
    before = path.read_bytes()
    original = skanomaly.inspection._write_rows

    def fails_halfway(rows, handle):
        original(rows[:1], handle)
        raise failure

    monkeypatch.setattr(skanomaly.inspection, "_write_rows", fails_halfway)
    with pytest.raises(UsageError if isinstance(failure, OSError) else KeyboardInterrupt) as error:
        write_csv(_rows(5), path)
    if isinstance(failure, OSError):
        assert "scores.csv" in str(error.value) and "No space left" in str(error.value)
    assert path.read_bytes() == before
    assert _only(tmp_path, "scores.csv")


def test_an_interrupted_report_keeps_the_previous_one(tmp_path, monkeypatch):
    index = write_report(tmp_path, _rows(2), threshold=1.5)
    before = index.read_bytes()

    @contextlib.contextmanager
    def disk_full_halfway(path, mode="wb", **kwargs):
        with atomic_write(path, mode, **kwargs) as handle:

            class HalfWriter:
                def write(self, text):
                    handle.write(text[: len(text) // 2])
                    raise FULL_DISK

            yield HalfWriter()

    monkeypatch.setattr(skanomaly.report, "atomic_write", disk_full_halfway)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path, _rows(4), threshold=1.5)
    assert index.read_bytes() == before
    assert _only(tmp_path, "index.html")


def test_write_png_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "map.png"
    write_png(np.zeros((4, 5), np.uint8), path)

    def fails_halfway(self, handle, *args, **kwargs):
        handle.write(b"\x89PNG\r\n\x1a\n")
        raise FULL_DISK

    monkeypatch.setattr(Image.Image, "save", fails_halfway)
    with pytest.raises(OSError, match=r"map\.png.*No space left"):
        write_png(np.ones((4, 5), np.uint8), path)
    monkeypatch.undo()
    with Image.open(path) as image:
        assert image.size == (5, 4) and image.getextrema() == (0, 0)
    assert _only(tmp_path, "map.png")


def test_score_histogram_counts_every_finite_score_once():
    svg = score_histogram(
        [("normal", [0.0, 0.1, 0.2, 5.0], "#00f"), ("defective", [4.0, 9.0, np.nan], "#f00")],
        threshold=3.0,
    )
    counts = {"normal": 0, "defective": 0}
    for name, n in re.findall(r"<title>(\w+): (\d+) image\(s\) between", svg):
        counts[name] += int(n)
    assert counts == {"normal": 4, "defective": 2}
    assert "normal (4)" in svg and "defective (2)" in svg
    assert "threshold 3" in svg
    # The threshold line lies between the scores around it, on the shared axis.
    x = float(re.search(r'<line x1="([\d.]+)" y1="\d+" x2="[\d.]+" y2="\d+" stroke="#222"', svg)[1])
    bars = [float(v) for v in re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width', svg)]
    assert min(bars) < x < max(bars)


@pytest.mark.parametrize(
    "groups, threshold, error, match",
    [
        ([("normal", [1.0], "#00f")], np.nan, ValueError, "threshold must be finite; got nan"),
        ([("normal", [1.0], "#00f")], np.inf, ValueError, "threshold must be finite"),
        ([("normal", [1.0], "#00f")], "1.5", TypeError, "threshold must be a number; got str"),
        ([], 1.0, ValueError, "groups is empty"),
        ([("normal", [1.0], None)], 1.0, ValueError, r"\(name, scores, colour\)"),
        ([("normal", [1.0])], 1.0, ValueError, r"\(name, scores, colour\)"),
    ],
)
def test_score_histogram_refuses_what_it_cannot_draw(groups, threshold, error, match):
    with pytest.raises(error, match=match):
        score_histogram(groups, threshold)


def _marker(svg):
    """The x of a colour bar's threshold line, and its label."""
    found = re.search(r'<line x1="([\d.]+)".*?>pixel threshold ([^<]*)</text>', svg)
    return float(found[1]), found[2]


def test_color_scale_draws_the_colormap_and_marks_the_pixel_threshold():
    svg = color_scale(10.0, 30.0, threshold=15.0)
    stops = re.findall(r'stop-color="(#[0-9a-f]{6})"', svg)
    # The overlays' colormap end to end: jet's dark blue to dark red.
    assert stops[0] == "#000080" and stops[-1] == "#800000" and len(stops) > 16
    assert ">10</text>" in svg and ">30</text>" in svg
    left, width = (
        float(v) for v in re.search(r'<rect x="(\d+)" y="\d+" width="(\d+)"', svg).groups()
    )
    x, label = _marker(svg)
    assert x == pytest.approx(left + 0.25 * width, abs=0.1) and label == "15"
    assert "pixel threshold" not in color_scale(10.0, 30.0)
    # Beyond the scale the mark sits at the end, and says so.
    x, label = _marker(color_scale(10.0, 30.0, threshold=45.0))
    assert x == pytest.approx(left + width) and label == "45 (above the scale)"
    x, label = _marker(color_scale(10.0, 30.0, threshold=-1.0))
    assert x == pytest.approx(left) and label == "-1 (below the scale)"


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((1.0, 1.0), ValueError, "low must be below high"),
        ((2.0, 1.0), ValueError, "low must be below high"),
        ((np.nan, 1.0), ValueError, "low must be finite; got nan"),
        ((0.0, "1"), TypeError, "high must be a number; got str"),
        ((0.0, 1.0, np.inf), ValueError, "threshold must be finite"),
    ],
)
def test_color_scale_refuses_what_it_cannot_draw(args, error, match):
    with pytest.raises(error, match=match):
        color_scale(*args)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda rows: rows[0].pop("label"), ValueError, r"records\[0\] lacks the key\(s\) label"),
        (lambda rows: rows[1].update(label="bad"), ValueError, r"records\[1\]\['label'\]"),
        (lambda rows: rows[0].update(score="1"), TypeError, r"records\[0\]\['score'\] must be a"),
        (lambda rows: rows[0].update(path=3), TypeError, r"records\[0\]\['path'\] must be a str"),
        (lambda rows: rows[1].update(levels=[("head", np.nan)]), ValueError, "finite number"),
        (lambda rows: rows.append("x.png"), TypeError, r"records\[2\] must be a dict"),
    ],
)
def test_write_report_names_the_record_it_cannot_show(tmp_path, change, error, match):
    rows = _rows(2)
    change(rows)
    with pytest.raises(error, match=match):
        write_report(tmp_path, rows, 1.5)
    assert not (tmp_path / "index.html").exists()


def test_write_report_refuses_a_missing_folder_and_a_bad_threshold(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an existing folder"):
        write_report(tmp_path / "absent", _rows(1), 1.5)
    with pytest.raises(ValueError, match="threshold must be finite"):
        write_report(tmp_path, _rows(1), np.nan)
    with pytest.raises(TypeError, match="records must be a list"):
        write_report(tmp_path, _rows(1)[0], 1.5)


def test_a_report_shows_its_figure_and_every_note(tmp_path):
    svg = score_histogram([("normal", [1.0, 2.0], "#00f")], threshold=1.5)
    page = write_report(tmp_path, _rows(2), 1.5, notes=["first <b>", "second"], figure=svg)
    text = page.read_text()
    assert svg in text
    assert '<p class="meta">first &lt;b&gt;</p>' in text and '<p class="meta">second</p>' in text


def test_a_report_writes_numpy_and_infinite_numbers_as_its_script_reads_them(tmp_path):
    rows = _rows(2)
    rows[0].update(anomaly_score=np.float64(1.25), decision=np.float32(-0.5))
    rows[1].update(anomaly_score=np.inf, decision=-np.inf)
    text = write_report(tmp_path, rows, np.float64(1.5)).read_text()
    # parseFloat reads "np.float64(1.25)" and "inf" as NaN, which unsorts the table.
    assert "np." not in text and 'data-value="inf"' not in text
    assert 'data-threshold="1.5"' in text and 'data-value="1.25"' in text
    assert 'data-value="-0.5"' in text and 'data-value="Infinity"' in text
