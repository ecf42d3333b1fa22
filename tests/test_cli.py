"""The ``skanomaly`` console command, run in-process on small real images."""

import csv
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_image_files import _bomb_png, _save_rotated

import skanomaly
from skanomaly.backbone import load_backbone
from skanomaly.cli import main
from skanomaly.datasets import load_mvtec_ad
from skanomaly.inspection import (
    REGION_COLUMNS,
    ImageReader,
    _operating_points,
    _quiet_line,
    _quiet_pixel_threshold,
    _regions_line,
)
from skanomaly.metrics import image_roc_auc, pixel_roc_auc, pro_score, region_hits
from skanomaly.segmentation import masks_from_maps

# Shallow levels keep the tests fast. Modelled alone, they separate these
# small cells with mean pooling (image AUROC 0.96 on all 16 test cells) but
# not with max pooling (0.83): a channel's maximum at the stem is one pixel's
# response. All levels separate them either way.
FAST = ["--levels", "0,1,2,3", "--pooling", "mean", "--no-progress"]


def _write(images, folder, prefix):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{prefix}{i:02d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def folders(cells, tmp_path_factory):
    """12 normal training cells, and 3 normal + 3 defective cells to check."""
    normal, defective = cells
    root = tmp_path_factory.mktemp("cli")
    _write(normal[:12], root / "normal", "good")
    _write(normal[12:15], root / "check", "good")
    _write(defective[:3], root / "check", "bad")
    return root


@pytest.fixture(scope="module")
def model(folders):
    path = folders / "model.skanomaly"
    assert main(["fit", str(folders / "normal"), "-o", str(path), *FAST]) == 0
    return path


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("skanomaly: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------ success
def test_fit_writes_a_versioned_model(model):
    with np.load(model, allow_pickle=False) as archive:
        metadata = json.loads(archive["__metadata__"].tobytes())
    assert metadata["skanomaly_version"] == skanomaly.__version__
    assert metadata["format"] == 2
    detector = skanomaly.load(model)
    assert detector.levels_ == (0, 1, 2, 3)
    assert detector.pooling == "mean" and detector.augment is None
    assert detector.n_samples_fit_ == 12
    assert detector.progress is False
    # fit sets the pixel threshold of the masks, so that the file carries it.
    assert np.isfinite(detector.pixel_threshold_)
    assert detector.pixel_calibration_["source"] == "training"
    assert detector.pixel_calibration_["fpr"] == 0.01


def test_score_csv(model, folders, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert (
        main(["score", str(model), str(folders / "check"), "--csv", str(out), "--no-progress"]) == 0
    )
    rows = _read_csv(out)
    assert list(rows[0]) == ["path", "score", "anomaly_score", "decision", "label"]
    names = [Path(r["path"]).name for r in rows]
    assert names == sorted(f"{p}{i:02d}.png" for p in ("bad", "good") for i in range(3))
    for row in rows:
        assert float(row["anomaly_score"]) == pytest.approx(-float(row["score"]), rel=1e-5)
        assert row["label"] == ("anomalous" if float(row["decision"]) < 0 else "normal")
    # The defective cells score as more anomalous than the normal ones.
    bad = [float(r["anomaly_score"]) for r in rows if "bad" in r["path"]]
    good = [float(r["anomaly_score"]) for r in rows if "good" in r["path"]]
    assert min(bad) > max(good)
    assert "6 image(s) scored" in capsys.readouterr().out


def test_score_in_another_precision(model, folders, tmp_path):
    """--precision reaches the detector: bfloat16 features differ a little,
    and keep the defective cells above the normal ones."""
    out = {}
    for precision in ("float32", "bfloat16"):
        out[precision] = tmp_path / f"{precision}.csv"
        argv = ["score", str(model), str(folders / "check"), "--csv", str(out[precision])]
        assert main([*argv, "--precision", precision, "--no-progress"]) == 0
    full, half = ({r["path"]: float(r["anomaly_score"]) for r in _read_csv(out[p])} for p in out)
    assert full.keys() == half.keys() and full != half
    bad = [half[p] for p in half if "bad" in p]
    assert min(bad) > max(half[p] for p in half if "good" in p)


def test_score_prints_a_table_and_accepts_files(model, folders, capsys):
    files = sorted((folders / "check").glob("bad*.png"))
    assert main(["score", str(model), *map(str, files), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["anomaly_score", "label", "path"]
    assert all(f.name in out for f in files)
    assert "3 image(s) scored" in out


@pytest.fixture(scope="module")
def report(model, folders):
    out = folders / "report_all"
    regions = folders / "regions.csv"
    assert (
        main(
            [
                "explain",
                str(model),
                str(folders / "check"),
                "-o",
                str(out),
                "--all",
                "--regions",
                str(regions),
                "--no-progress",
            ]
        )
        == 0
    )
    return out


def test_explain_all_writes_overlays_and_report(report):
    overlays = sorted(report.glob("overlays/*.png"))
    thumbs = sorted(report.glob("thumbnails/*.png"))
    assert len(overlays) == 6 and len(thumbs) == 6
    with Image.open(overlays[0]) as image:
        assert image.size == (64, 64)
    page = (report / "index.html").read_text(encoding="utf-8")
    for name in ("good00", "good02", "bad00", "bad02"):
        assert name in page
    assert page.count("<tr") == 7  # header + one row per image
    for link in [*overlays, *thumbs]:
        assert f'src="{link.parent.name}/{link.name}"' in page
    assert "http" not in page.replace("http-equiv", "")  # no external resources
    assert len(_read_csv(report / "scores.csv")) == 6
    # Without ground truth, the histogram has one group: every image.
    assert 'class="histogram"' in page and "images (6)" in page
    # The colour bar spans the heat maps' shared scale and marks the pixel
    # threshold that the outlines use.
    low, high = re.search(r"share one color scale \(([^ ]+) to ([^)]+)\)", page).groups()
    bar = re.search(r'<svg class="colorscale".*?</svg>', page)[0]
    ends = re.findall(r">(-?[\d.]+(?:e[-+]?\d+)?)</text>", bar)
    assert [float(v) for v in ends] == pytest.approx([float(low), float(high)], rel=1e-2)
    threshold = re.search(r"regions above the pixel threshold ([^ ]+) ", page)[1]
    assert f"pixel threshold {threshold}" in bar


def test_explain_regions_outlines_and_level_bars(report, folders):
    regions = _read_csv(folders / "regions.csv")
    assert regions and tuple(regions[0]) == REGION_COLUMNS
    for row in regions:
        assert Path(row["path"]).parent.name == "check"
        top, left, bottom, right = (int(row[k]) for k in ("top", "left", "bottom", "right"))
        assert 0 <= top < bottom <= 64 and 0 <= left < right <= 64
        assert 0 < int(row["area"]) <= (bottom - top) * (right - left)
        assert float(row["peak"]) >= float(row["mean"])
    page = (report / "index.html").read_text(encoding="utf-8")
    assert ">Regions</th>" in page and ">Area (px)</th>" in page and ">Levels</th>" in page
    assert page.count('<svg class="levels"') == 6
    assert "White outlines: regions above the pixel threshold" in page
    # The table's region counts and areas are the CSV's, and the overlays of
    # the images with regions only have white outlines (blended heat maps
    # are never pure white).
    per_image = {}
    for row in regions:
        count, area = per_image.get(Path(row["path"]).stem, (0, 0))
        per_image[Path(row["path"]).stem] = (count + 1, area + int(row["area"]))
    for tr in re.findall(r"<tr[ >].*?</tr>", page)[1:]:
        stem = re.search(r"overlays/\d{4}_(\w+)\.png", tr).group(1)
        cells = re.findall(r'<td class="num" data-value="([^"]*)"', tr)
        assert (int(cells[3]), int(cells[4])) == per_image.get(stem, (0, 0)), stem
        overlay = next(report.glob(f"overlays/*_{stem}.png"))
        white = (np.asarray(Image.open(overlay).convert("RGB")) == 255).all(axis=-1).sum()
        assert (white > 0) == (stem in per_image), stem


def test_score_regions_of_the_anomalous_images(model, folders, tmp_path, capsys):
    out, scores = tmp_path / "regions.csv", tmp_path / "scores.csv"
    argv = [
        "score",
        str(model),
        str(folders / "check"),
        "--csv",
        str(scores),
        "--regions",
        str(out),
        "--min-area",
        "5",
        "--no-progress",
    ]
    assert main(argv) == 0
    anomalous = {r["path"] for r in _read_csv(scores) if r["label"] == "anomalous"}
    regions = _read_csv(out)
    assert {r["path"] for r in regions} <= anomalous
    assert all(int(r["area"]) >= 5 for r in regions)
    assert f"{len(regions)} region(s) written to {out}" in capsys.readouterr().out


def test_regions_need_a_pixel_threshold(model, folders, tmp_path, capsys):
    detector = skanomaly.load(model)
    del detector.pixel_threshold_, detector.pixel_calibration_
    bare = tmp_path / "bare.skanomaly"
    skanomaly.save(detector, bare)
    argv = ["score", str(bare), str(folders / "check"), "--regions", str(tmp_path / "r.csv")]
    assert main(argv) == 2
    assert "pixel threshold" in _one_error_line(capsys)
    # Without --regions, the report has no outlines and says why.
    out = tmp_path / "report"
    assert (
        main(
            [
                "explain",
                str(bare),
                str(folders / "check"),
                "-o",
                str(out),
                "--max-explain",
                "1",
                "--all",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "no region outlines" in capsys.readouterr().err
    assert ">Regions</th>" not in (out / "index.html").read_text(encoding="utf-8")


def test_explain_default_explains_only_flagged(model, folders, report, tmp_path, capsys):
    # A model whose threshold lies between the normal and the defective cells.
    scores = {
        Path(r["path"]).name: float(r["anomaly_score"]) for r in _read_csv(report / "scores.csv")
    }
    good = max(v for k, v in scores.items() if k.startswith("good"))
    bad = min(v for k, v in scores.items() if k.startswith("bad"))
    detector = skanomaly.load(model)
    detector.offset_ = -(good + bad) / 2
    tuned = tmp_path / "tuned.skanomaly"
    skanomaly.save(detector, tuned)
    out = tmp_path / "report"
    assert (
        main(["explain", str(tuned), str(folders / "check"), "-o", str(out), "--no-progress"]) == 0
    )
    rows = _read_csv(out / "scores.csv")
    assert sorted(Path(r["path"]).name for r in rows if r["label"] == "anomalous") == [
        "bad00.png",
        "bad01.png",
        "bad02.png",
    ]
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert len(overlays) == 3 and all("bad" in name for name in overlays)
    assert len(list((out / "thumbnails").glob("*.png"))) == 6
    assert str(out / "index.html") in capsys.readouterr().out
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count('<tr class="anomalous">') == 3
    # Each row without a heat map says why, and the page links the scores.
    assert page.count("not drawn: judged normal") == 3
    assert '<a href="scores.csv">scores.csv</a>' in page


def test_explain_draws_normal_images_without_matplotlib(model, folders, tmp_path, monkeypatch):
    # A plain install (no plot extra) has no matplotlib: the report's heat
    # maps use the default colormap, which needs none. The training images'
    # maps stay below the pixel threshold, so the shared scale reaches up to
    # it rather than stretching them to the colormap's top.
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "report"
    argv = ["explain", str(model), str(folders / "normal"), "-o", str(out), "--all"]
    assert main([*argv, "--no-progress"]) == 0
    assert len(list((out / "overlays").glob("*.png"))) == 12
    page = (out / "index.html").read_text(encoding="utf-8")
    high = re.search(r"share one color scale \([^ ]+ to ([^)]+)\)", page)[1]
    threshold = re.search(r"regions above the pixel threshold ([^ ]+) ", page)[1]
    assert float(high) == pytest.approx(float(threshold), rel=1e-2)


def test_a_hold_out_never_leaves_fewer_images_than_the_score_needs(folders, tmp_path, capsys):
    # The default score needs 3 images: holding out 2 of 4 would leave 2.
    four = tmp_path / "four"
    four.mkdir()
    for image in sorted((folders / "normal").glob("*.png"))[:4]:
        shutil.copy(image, four / image.name)
    model = tmp_path / "m.skanomaly"
    assert main(["fit", str(four), "-o", str(model), "--holdout", "0.5", *FAST]) == 0
    assert "too few images (4) to hold out 0.5 of them" in capsys.readouterr().err


def test_explain_max_explain(model, folders, tmp_path):
    out = tmp_path / "report"
    args = ["explain", str(model), str(folders / "check"), "-o", str(out), "--all"]
    assert main([*args, "--max-explain", "2", "--no-progress"]) == 0
    assert len(list((out / "overlays").glob("*.png"))) == 2
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("not drawn: beyond the 2 most anomalous (--max-explain)") == 4


def test_file_names_are_escaped(model, folders, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(folders / "check" / "bad00.png", src / "<b>&x.png")
    out = tmp_path / "report"
    assert main(["explain", str(model), str(src), "-o", str(out), "--all", "--no-progress"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<b>&x" not in page and "&lt;b&gt;&amp;x" in page


# ------------------------------------------------------ unreadable images
@pytest.fixture
def mixed(folders, tmp_path):
    """Two good images, a corrupt PNG and a text file."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("bad00.png", "good00.png"):
        shutil.copy(folders / "check" / name, folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_unreadable_images_are_skipped_with_exit_1(model, mixed, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["score", str(model), str(mixed), "--csv", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "ignored 1 non-image file" in err
    assert "broken.png" in err and "1 unreadable image(s) skipped" in err
    assert "Traceback" not in err
    assert [Path(r["path"]).name for r in _read_csv(out)] == ["bad00.png", "good00.png"]


def test_hidden_files_are_skipped(model, folders, tmp_path, capsys):
    # macOS leaves "._name.png" metadata files on shared drives: not images.
    folder = tmp_path / "shared"
    folder.mkdir()
    shutil.copy(folders / "check" / "good00.png", folder / "good00.png")
    (folder / "._good00.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    out = tmp_path / "s.csv"
    assert main(["score", str(model), str(folder), "--csv", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert [Path(r["path"]).name for r in _read_csv(out)] == ["good00.png"]
    (folder / "good00.png").unlink()
    assert main(["score", str(model), str(folder), "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert "holds no image files" in line and "non-image" not in line


def test_phone_photos_and_decompression_bombs(model, folders, tmp_path, capsys):
    """A photo tagged "rotate 90 degrees" scores like the upright one; a file
    that claims 10^10 pixels is skipped, naming the file and the limit."""
    folder = tmp_path / "phone"
    folder.mkdir()
    upright = np.asarray(Image.open(folders / "check" / "bad00.png"))[8:56]
    Image.fromarray(upright).save(folder / "upright.png")
    _save_rotated(upright, folder / "rotated.png")
    _bomb_png(folder / "bomb.png", 100_000)
    out = tmp_path / "s.csv"
    assert main(["score", str(model), str(folder), "--csv", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "bomb.png" in err and f"{Image.MAX_IMAGE_PIXELS:,}" in err
    scores = {Path(r["path"]).name: float(r["anomaly_score"]) for r in _read_csv(out)}
    assert scores["rotated.png"] == pytest.approx(scores["upright.png"], rel=1e-5)


def test_explicit_non_image_file_is_unreadable(model, mixed, capsys):
    code = main(
        ["score", str(model), str(mixed / "good00.png"), str(mixed / "notes.txt"), "--no-progress"]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "notes.txt" in captured.err and "1 image(s) scored" in captured.out


def test_explain_skips_unreadable_images(model, mixed, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["explain", str(model), str(mixed), "-o", str(out), "--all", "--no-progress"]) == 1
    assert len(list((out / "overlays").glob("*.png"))) == 2
    assert "broken" not in (out / "index.html").read_text(encoding="utf-8")


def test_strict_stops_at_the_first_unreadable_image(model, mixed, tmp_path, capsys):
    out = tmp_path / "s.csv"
    code = main(["score", str(model), str(mixed), "--csv", str(out), "--strict", "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "--strict" in err and "Traceback" not in err
    assert not out.exists()


def test_fit_skips_unreadable_images(mixed, folders, tmp_path, capsys):
    for path in sorted((folders / "normal").glob("*.png"))[:4]:
        shutil.copy(path, mixed / f"train_{path.name}")
    model = tmp_path / "m.skanomaly"
    assert main(["fit", str(mixed), "-o", str(model), "--holdout", "0", *FAST]) == 1
    assert skanomaly.load(model).n_samples_fit_ == 6


def test_fit_hands_the_detector_paths(folders, tmp_path, monkeypatch):
    """fit checks each file, then hands the detector the readable paths,
    which it reads a batch at a time (memory does not grow with the
    folder); the model equals a fit on the readable images' arrays, of
    two sizes here."""
    folder = tmp_path / "sizes"
    folder.mkdir()
    for i, path in enumerate(sorted((folders / "normal").glob("*.png"))[:8]):
        image = Image.open(path)
        (image if i < 4 else image.resize((40, 32))).save(folder / f"{i}.png")
    (folder / "4b.png").write_bytes(b"garbage")
    given = []
    real = skanomaly.EfficientNetGaussianDetector.fit
    monkeypatch.setattr(
        skanomaly.EfficientNetGaussianDetector,
        "fit",
        lambda self, X, y=None: given.append(X) or real(self, X),
    )
    path = tmp_path / "m.skanomaly"
    assert main(["fit", str(folder), "-o", str(path), *FAST]) == 1
    assert [Path(p).name for p in given[0]] == [f"{i}.png" for i in range(8)]
    streamed = skanomaly.load(path)
    images = [np.asarray(Image.open(folder / f"{i}.png").convert("RGB")) for i in range(8)]
    whole = skanomaly.load(path).fit(images)
    assert streamed.n_samples_fit_ == whole.n_samples_fit_ == 8
    np.testing.assert_allclose(streamed.offset_, whole.offset_, rtol=1e-6)
    check = sorted((folders / "check").glob("*.png"))
    np.testing.assert_allclose(streamed.score_samples(check), whole.score_samples(check), rtol=1e-6)


def test_chunks_of_large_images_hold_fewer(folders, tmp_path, monkeypatch):
    """A chunk of files stops once its images' pixels reach CHUNK_BYTES;
    unreadable files drop out and the readable ones come in order."""
    files = sorted((folders / "normal").glob("*.png"))[:5]
    nbytes = np.asarray(Image.open(files[0]).convert("RGB")).nbytes
    monkeypatch.setattr("skanomaly.inspection.CHUNK_BYTES", 2 * nbytes)
    (tmp_path / "bad.png").write_bytes(b"garbage")
    reader = ImageReader(strict=False)
    chunks = list(reader.chunks([files[0], tmp_path / "bad.png", *files[1:]]))
    assert [len(images) for _, images in chunks] == [2, 2, 1]
    assert [path for paths, _ in chunks for path in paths] == files
    assert reader.skipped == [tmp_path / "bad.png"]


# --------------------------------------------------------------- bad input
def test_missing_path(model, tmp_path, capsys):
    assert main(["score", str(model), str(tmp_path / "nope")]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_missing_normal_dir(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope"), "-o", str(tmp_path / "m.skanomaly")]) == 2
    assert "nope" in _one_error_line(capsys)


def test_empty_folder(model, tmp_path, capsys):
    assert main(["score", str(model), str(tmp_path)]) == 2
    assert "holds no image files" in _one_error_line(capsys)


def test_folder_of_non_images(model, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    assert main(["fit", str(tmp_path), "-o", str(tmp_path / "m.skanomaly")]) == 2
    assert "1 non-image file" in _one_error_line(capsys)


def test_too_few_readable_training_images(folders, tmp_path, capsys):
    shutil.copy(folders / "check" / "good00.png", tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"garbage")
    assert main(["fit", str(tmp_path), "-o", str(tmp_path / "m.skanomaly"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "at least 2" in err.splitlines()[-1] and "Traceback" not in err


def test_corrupt_model_file(folders, tmp_path, capsys):
    bad = tmp_path / "model.skanomaly"
    bad.write_bytes(os.urandom(200))
    assert main(["score", str(bad), str(folders / "check")]) == 2
    assert "not a readable skanomaly model file" in _one_error_line(capsys)


def test_corrupt_model_traceback_with_verbose(folders, tmp_path, capsys):
    bad = tmp_path / "model.skanomaly"
    bad.write_bytes(b"garbage")
    assert main(["score", str(bad), str(folders / "check"), "--verbose"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_model_of_another_version(model, folders, tmp_path, capsys, monkeypatch):
    detector = skanomaly.load(model)
    monkeypatch.setattr(skanomaly.persistence, "__version__", "0.0.1")
    old = tmp_path / "old.skanomaly"
    skanomaly.save(detector, old)
    monkeypatch.undo()
    assert main(["explain", str(old), str(folders / "check"), "-o", str(tmp_path / "r")]) == 2
    line = _one_error_line(capsys)
    assert "0.0.1" in line and "incompatible" in line


class _RunsCode:
    """Unpickling this creates ``marker``: what a malicious model file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_pickle_cannot_run_code(folders, tmp_path, capsys):
    marker = tmp_path / "marker"
    evil = tmp_path / "model.skanomaly"
    evil.write_bytes(pickle.dumps(_RunsCode(marker)))
    image = folders / "check" / "good00.png"
    for command in (
        ["score", str(evil), str(image)],
        ["explain", str(evil), str(image), "-o", str(tmp_path / "r")],
    ):
        assert main(command) == 2
        line = _one_error_line(capsys)
        assert "is a pickle" in line and "--trust-pickle" in line and str(evil) in line
        assert not marker.exists()
    assert not (tmp_path / "r").exists()


def test_trust_pickle_loads_a_legacy_model(model, folders, tmp_path, capsys):
    legacy = tmp_path / "model.joblib"
    pickle_payload = {
        "skanomaly_version": skanomaly.__version__,
        "format": 1,
        "detector": skanomaly.load(model),
    }
    legacy.write_bytes(pickle.dumps(pickle_payload))
    assert main(["score", str(legacy), str(folders / "check"), "--no-progress"]) == 2
    assert "--trust-pickle" in _one_error_line(capsys)
    argv = ["score", str(legacy), str(folders / "check"), "--trust-pickle", "--no-progress"]
    assert main(argv) == 0
    assert "6 image(s) scored" in capsys.readouterr().out


def test_pickle_that_is_not_a_model(folders, tmp_path, capsys):
    other = tmp_path / "other.joblib"
    other.write_bytes(pickle.dumps([1, 2, 3]))
    argv = ["score", str(other), str(folders / "check"), "--trust-pickle"]
    assert main(argv) == 2
    assert "not a skanomaly model file" in _one_error_line(capsys)


def test_missing_model_file(folders, tmp_path, capsys):
    assert main(["score", str(tmp_path / "m.skanomaly"), str(folders / "check")]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_unwritable_output_folder(model, folders, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["explain", str(model), str(folders / "check"), "-o", str(blocker / "out")])
    assert code == 2
    assert "cannot write to the output folder" in _one_error_line(capsys)


def test_unwritable_model_path(folders, tmp_path, capsys):
    code = main(["fit", str(folders / "normal"), "-o", str(tmp_path / "no" / "m.skanomaly"), *FAST])
    assert code == 2
    assert "does not exist" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", ".", "-o", "m.skanomaly", "--contamination", "2"],
        ["fit", ".", "-o", "m.skanomaly", "--levels", "1,,2"],
        ["fit", "."],
        ["score", "m.skanomaly", ".", "--batch-size", "0"],
        ["score", "m.skanomaly", ".", "--precision", "float64"],
        ["fit", ".", "-o", "m.skanomaly", "--pixel-fpr", "1"],
        ["fit", ".", "-o", "m.skanomaly", "--pixel-fpr", "0"],
        ["fit", ".", "-o", "m.skanomaly", "--patch-coreset", "0"],
        ["fit", ".", "-o", "m.skanomaly", "--patch-neighborhood", "2"],
        ["fit", ".", "-o", "m.skanomaly", "--patch-neighborhood", "3,1"],
        ["score", "m.skanomaly", ".", "--regions", "-"],
        ["explain", "m.skanomaly", ".", "-o", "out", "--min-area", "0"],
        ["explain", "m.skanomaly", "."],
        ["calibrate", "m.skanomaly"],
        ["calibrate", "m.skanomaly", ".", "--fpr", "0"],
        ["frobnicate"],
    ],
)
def test_usage_errors(argv, capsys):
    assert main(argv) == 2
    _one_error_line(capsys)


def test_unknown_level_is_a_one_line_error(folders, tmp_path, capsys):
    code = main(
        [
            "fit",
            str(folders / "normal"),
            "-o",
            str(tmp_path / "m.skanomaly"),
            "--levels",
            "stage99",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "stage99" in _one_error_line(capsys)


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_evaluate_reports_the_accuracy_on_labelled_folders(model, cells, tmp_path, capsys):
    normal, defective = cells
    _write(normal[12:16], tmp_path / "good", "good")
    _write(defective[:4], tmp_path / "bad", "bad")
    # Stand-in masks (ELPV has image labels only): the upper half of each cell.
    masks = np.zeros((4, *defective.shape[1:3]), bool)
    masks[:, : masks.shape[1] // 2] = True
    (tmp_path / "masks").mkdir()
    for i, mask in enumerate(masks):
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "masks" / f"bad{i:02d}_m.png")
    argv = ["evaluate", str(model), str(tmp_path / "good"), str(tmp_path / "bad")]
    with_masks = [*argv, "--masks", str(tmp_path / "masks"), "--mask-suffix", "_m"]
    assert main([*with_masks, "-o", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    detector = skanomaly.load(model)
    X, y = np.concatenate([normal[12:16], defective[:4]]), np.repeat([1, -1], 4)
    scores = detector.score_samples(X)
    assert f"image AUROC {image_roc_auc(y, scores):.3f}" in out
    flagged = scores < detector.offset_
    assert f"{flagged[:4].sum()}/4 normal images flagged" in out
    assert f"{flagged[4:].sum()}/4 defective ones" in out
    assert out.count("false alarm: ") == flagged[:4].sum()
    # The two operating points, as printed, flag what the line says.
    anomaly = -scores
    found = re.search(
        r"A threshold of (\S+) would flag every defective image and (\d)/4 normal ones "
        r"\(.*\); one of (\S+) no normal image and (\d)/4 defective ones",
        out,
    )
    catch_all, n_alarms, quiet, n_caught = found.groups()
    assert (anomaly[4:] > float(catch_all)).all()
    assert (anomaly[:4] > float(catch_all)).sum() == int(n_alarms)
    assert not (anomaly[:4] > float(quiet)).any()
    assert (anomaly[4:] > float(quiet)).sum() == int(n_caught)
    assert int(n_alarms) == (anomaly[:4] >= anomaly[4:].min()).sum()
    assert int(n_caught) == (anomaly[4:] > anomaly[:4].max()).sum()
    assert out.count("missed: ") == (~flagged[4:]).sum()
    all_masks = np.concatenate([np.zeros_like(masks), masks])
    maps = detector.explain(X)
    assert f"pixel AUROC {pixel_roc_auc(all_masks, maps):.3f}" in out
    # The lowest pixel threshold that outlines nothing on the normal images,
    # as typed back: between their highest map value and the next one.
    found = re.search(
        r"A pixel threshold of (\S+) would outline no region on the 4 normal images and "
        r"find (\d+)/(\d+) defects .*, with (\d+) region\(s\) outside every defect",
        out,
    )
    quiet = float(found[1])
    highest = maps[:4].max()
    assert highest < quiet and not ((maps > highest) & (maps <= quiet)).any()
    hits = region_hits(all_masks, maps, quiet)
    assert [int(v) for v in found.groups()[1:]] == [
        hits["found"].sum(),
        hits["defects"].sum(),
        hits["false_regions"].sum(),
    ]
    assert not hits["false_regions"][:4].any()
    # The defects that the regions at the model's pixel threshold find.
    hits = region_hits(all_masks, maps, detector.pixel_threshold_)
    found, defects, false = hits["found"].sum(), hits["defects"].sum(), hits["false_regions"]
    assert defects == 4 and false.sum() > 0
    assert (
        f"Regions at the model's pixel threshold (map > {detector.pixel_threshold_:.6g}): "
        f"{found}/{defects} defects found ({found / defects:.1%}); {false.sum()} region(s) "
        "outside every defect, "
        + (
            f"{false[:4].sum()} of them on {(false[:4] > 0).sum()}/4"
            if false[:4].any()
            else "none on the 4"
        )
        + " normal images"
    ) in out
    # The report: a heat map for each defective image and each false alarm,
    # the misjudged ones named in the ground-truth column, the histogram.
    page = (tmp_path / "report" / "index.html").read_text()
    assert f"Report: {(tmp_path / 'report' / 'index.html').resolve()}" in out
    overlays = sorted(p.name for p in (tmp_path / "report" / "overlays").iterdir())
    assert len(overlays) == 4 + flagged[:4].sum()
    assert page.count("normal, false alarm</td>") == flagged[:4].sum()
    assert page.count("defective, missed</td>") == (~flagged[4:]).sum()
    assert page.count("<td>normal</td>") == (~flagged[:4]).sum()
    assert "normal (4)" in page and "defective (4)" in page and "Magenta outlines" in page
    with open(tmp_path / "report" / "scores.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 8
    # The masks are outlined in magenta on the defective images' overlays.
    drawn = np.asarray(Image.open(tmp_path / "report" / "overlays" / overlays[-1]))
    magenta = (drawn == (255, 0, 255)).all(axis=-1)
    assert magenta.any()
    # An output that cannot be a folder is refused before any evaluation.
    (tmp_path / "a file").write_text("")
    assert main([*with_masks, "-o", str(tmp_path / "a file")]) == 2
    assert "not a folder" in _one_error_line(capsys)
    # Without masks, no maps; a defective image without its mask is refused.
    assert main(argv) == 0
    assert "Heat maps" not in capsys.readouterr().out
    assert main([*argv, "--masks", str(tmp_path / "masks")]) == 2
    assert "has no mask" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "normal, defective",
    [([1.0, 2.0], [3.0, 4.0]), ([1.0, 1.000012341], [1.000012344, 5.0]), ([7e-9, 1e-8], [2e-8])],
)
def test_operating_points_typed_back_fall_between_the_scores(normal, defective):
    # Scores closer than 4 significant digits: the printed thresholds get
    # the digits they need to flag what the line says.
    anomaly = np.array([*normal, *defective])
    y = np.repeat([1, -1], [len(normal), len(defective)])
    line = _operating_points(anomaly, y)
    found = re.search(r"threshold of (\S+) would .* one of (\S+) no normal", line)
    catch_all, quiet = map(float, found.groups())
    assert max(normal) < catch_all < min(defective) and quiet == catch_all
    assert f"0/{len(normal)} normal ones" in line
    assert f"{len(defective)}/{len(defective)} defective ones" in line


def test_region_lines_name_the_false_regions_on_normal_images():
    y = np.array([1, 1, 1, -1])
    regions = {
        k: np.array(v)
        for k, v in {
            "defects": [0, 0, 0, 2],
            "found": [0, 0, 0, 1],
            "false_regions": [2, 0, 1, 3],
        }.items()
    }
    line = _regions_line(regions, 1.5, y)
    assert line == (
        "Regions at the model's pixel threshold (map > 1.5): 1/2 defects found (50.0%); "
        "6 region(s) outside every defect, 3 of them on 2/3 normal images"
    )
    regions["false_regions"] = np.array([0, 0, 0, 3])
    assert _regions_line(regions, 1.5, y).endswith(", none on the 3 normal images")
    assert _quiet_line(regions, 2.25, y) == (
        "A pixel threshold of 2.25 would outline no region on the 3 normal images and find "
        "1/2 defects (50.0%), with 3 region(s) outside every defect"
    )


@pytest.mark.parametrize("min_area, expected", [(1, 9.0), (2, 5.0), (3, 3.0), (4, 0.0)])
def test_quiet_pixel_threshold_leaves_no_region_of_the_minimum_area(min_area, expected):
    normal = np.zeros((6, 6))
    normal[1, 1:4] = 5.0  # three pixels
    normal[1, 1] = 3.0  # ...of which two above 3
    normal[4, 4] = 9.0  # one pixel
    normal[0, 5] = 1.0
    defective = np.full((6, 6), 7.0)
    maps, y = [normal, defective], np.array([1, -1])
    quiet = _quiet_pixel_threshold(maps, y, min_area)
    # Just above the expected value, below the next value of any map.
    following = min((v for m in maps for v in m.ravel() if v > expected), default=np.inf)
    assert expected < quiet < following
    assert not masks_from_maps([normal], quiet, min_area)[0].any()
    assert masks_from_maps([normal], np.nextafter(expected, -np.inf), min_area)[0].any()


def test_a_defect_type_with_empty_masks_keeps_the_others_metrics(model, cells, tmp_path, capsys):
    normal, defective = cells
    category = tmp_path / "cells"
    _write(normal[12:15], category / "test" / "good", "")
    for kind, images, rows in (
        ("crack", defective[:2], slice(0, 20)),
        ("stain", defective[2:4], None),
    ):
        _write(images, category / "test" / kind, "")
        for i in range(len(images)):
            mask = np.zeros(images.shape[1:3], np.uint8)
            if rows is not None:
                mask[rows] = 255
            (category / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(category / "ground_truth" / kind / f"{i:02d}_mask.png")
    assert main(["evaluate", str(model), "--mvtec", str(category), "--no-progress"]) == 0
    out = capsys.readouterr().out
    stain = next(line for line in out.splitlines() if line.startswith("  stain ("))
    assert "no pixel metrics (its masks mark no defect pixel)" in stain
    crack = next(line for line in out.splitlines() if line.startswith("  crack ("))
    assert "pixel AUROC" in crack and "Heat maps: pixel AUROC" in out


def test_evaluate_refuses_one_folder_in_two_roles(model, folders, capsys):
    check = str(folders / "check")
    argv = ["evaluate", str(model), str(folders / "normal"), check, "--masks", check]
    assert main(argv) == 2
    assert "DEFECT_DIR and --masks are the same folder" in _one_error_line(capsys)


def test_evaluate_an_mvtec_category(model, cells, tmp_path, capsys, monkeypatch):
    normal, defective = cells
    category = tmp_path / "cells"
    # No train/ folder: the evaluation reads the test split alone.
    _write(normal[12:16], category / "test" / "good", "")
    for kind, images in (("crack", defective[:2]), ("dark", defective[2:4])):
        _write(images, category / "test" / kind, "")
        for i in range(len(images)):
            mask = np.zeros(images.shape[1:3], np.uint8)
            mask[i::3] = 255
            folder = category / "ground_truth" / kind
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(folder / f"{i:02d}_mask.png")
    assert main(["evaluate", str(model), "--mvtec", str(category), "-o", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    data = load_mvtec_ad(category, train=False)
    detector = skanomaly.load(model)
    scores = detector.score_samples(data.X_test)
    assert "4 normal and 4 defective image(s)" in out
    assert f"image AUROC {image_roc_auc(data.y_test, scores):.3f}" in out
    flagged = scores < detector.offset_
    for kind in ("crack", "dark"):
        both = data.defect_type != ("dark" if kind == "crack" else "crack")
        auroc = image_roc_auc(data.y_test[both], scores[both])
        recall = flagged[data.defect_type == kind].mean()
        assert f"  {kind} (2 image(s)): image AUROC {auroc:.3f}, recall {recall:.1%}" in out
        # The report names each image's defect type, and its summary each type's line.
        page = (tmp_path / "r" / "index.html").read_text()
        assert page.count(f"<td>{kind}") == 2
        assert f"{kind} (2 image(s)): image AUROC {auroc:.3f}" in page
    maps = detector.explain(data.X_test)
    assert f"pixel AUROC {pixel_roc_auc(data.masks_test, maps):.3f}" in out
    # Each type's maps on its images and the normal ones.
    for kind, other in (("crack", "dark"), ("dark", "crack")):
        keep = np.flatnonzero(data.defect_type != other)
        pixel = pixel_roc_auc(data.masks_test[keep], maps[keep])
        au_pro = pro_score(data.masks_test[keep], maps[keep], max_fpr=0.3)
        hits = region_hits(data.masks_test, maps, detector.pixel_threshold_)
        ours = data.defect_type == kind
        found, defects = hits["found"][ours].sum(), hits["defects"][ours].sum()
        line = next(line for line in out.splitlines() if line.startswith(f"  {kind} ("))
        assert line.endswith(
            f", pixel AUROC {pixel:.3f}, AU-PRO {au_pro:.3f}, defects found {found}/{defects}"
        )
    # --method and --smoothing measure other maps.
    other = ["--method", "spatial", "--smoothing", "0"]
    assert main(["evaluate", str(model), "--mvtec", str(category), *other]) == 0
    spatial = detector.set_params(explain_method="spatial", smoothing=0).explain(data.X_test)
    assert f"pixel AUROC {pixel_roc_auc(data.masks_test, spatial):.3f}" in capsys.readouterr().out
    # --lam too: at 1 the descent leaves its prior map.
    assert main(["evaluate", str(model), "--mvtec", str(category), "--lam", "1"]) == 0
    sparse = skanomaly.load(model).set_params(lam=1.0).explain(data.X_test)
    assert f"pixel AUROC {pixel_roc_auc(data.masks_test, sparse):.3f}" in capsys.readouterr().out
    assert pixel_roc_auc(data.masks_test, sparse) != pixel_roc_auc(data.masks_test, maps)
    # --min-area leaves smaller regions out of the counts.
    assert main(["evaluate", str(model), "--mvtec", str(category), "--min-area", "40"]) == 0
    out = capsys.readouterr().out
    hits = region_hits(data.masks_test, maps, detector.pixel_threshold_, min_area=40)
    assert "Regions of 40+ pixels at the model's pixel threshold" in out
    assert f": {hits['found'].sum()}/{hits['defects'].sum()} defects found" in out
    found = re.search(r"A pixel threshold of (\S+) would outline no region of 40\+ pixels", out)
    quiet = float(found[1])
    assert not np.any(masks_from_maps(list(maps[data.y_test == 1]), quiet, 40))
    # Past a pixel budget, the map metrics are binned image by image.
    monkeypatch.setattr("skanomaly.inspection._EXACT_PIXELS", 1000)
    assert main(["evaluate", str(model), "--mvtec", str(category)]) == 0
    binned = pixel_roc_auc(data.masks_test, maps, num_thresholds=10_000)
    binned_pro = pro_score(data.masks_test, maps, max_fpr=0.3, num_thresholds=10_000)
    assert (
        f"pixel AUROC {binned:.3f}, AU-PRO (FPR <= 0.3) {binned_pro:.3f} "
        "(on a grid of 10,000 thresholds, for so many pixels)"
    ) in capsys.readouterr().out
    monkeypatch.undo()
    # --mvtec replaces the folders and --masks.
    for extra in (["a", "b"], ["a"], ["--masks", "m"], ["--mask-suffix", "_m"]):
        assert main(["evaluate", str(model), *extra, "--mvtec", str(category)]) == 2
        assert "--mvtec alone" in _one_error_line(capsys)
    assert main(["evaluate", str(model), str(category)]) == 2
    assert "NORMAL_DIR and DEFECT_DIR" in _one_error_line(capsys)


# -------------------------------------------------------------------- help
@pytest.mark.parametrize(
    "command", [[], ["fit"], ["calibrate"], ["score"], ["explain"], ["evaluate"], ["demo"]]
)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: skanomaly")
    if command in (["score"], ["explain"], ["evaluate"]):
        text = " ".join(out.split())
        assert "never code" in text and "--trust-pickle" in text


def test_console_script_and_module():
    script = shutil.which("skanomaly") or str(Path(sys.executable).parent / "skanomaly")
    if not Path(script).exists():
        pytest.skip("the skanomaly console script is not installed (pip install -e .)")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("fit", "score", "explain", "demo"):
        assert command in result.stdout


def test_help_and_usage_errors_do_not_import_torch(tmp_path):
    # torch takes seconds to import: help and argument errors must not wait for it.
    code = (
        "import contextlib, io, sys\n"
        "from skanomaly.cli import main\n"
        "for argv in (['--help'], ['fit', '--help'], ['explain', '--help'], [],\n"
        "             ['fit', '.', '-o', 'm.skanomaly', '--contamination', '2']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(name for name in ('torch', 'sklearn') if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -------------------------------------------------------------------- demo
def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = [
        "demo",
        "-o",
        str(out),
        "--n-train",
        "8",
        "--n-test",
        "2",
        "--max-explain",
        "2",
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "AUROC" in printed and "Most anomalous cells" in printed
    assert str(out / "index.html") in printed
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("<tr") == 5 and "Ground truth" in page
    assert "normal (2)" in page and "defective (2)" in page  # the histogram's groups
    assert 1 <= len(list((out / "overlays").glob("*.png"))) <= 2
    assert np.isfinite([float(r["anomaly_score"]) for r in _read_csv(out / "scores.csv")]).all()


def test_fit_with_the_patch_score_and_its_report(folders, tmp_path):
    """--image-score, --patch-neighborhood and --patch-coreset reach the
    detector, and the report's scores are score_samples (the patch score
    needs its own pass, which level distances cannot replace)."""
    path = tmp_path / "fused.skanomaly"
    options = ["--image-score", "pooled+patches", "--patch-neighborhood", "1,3"]
    options += ["--patch-coreset", "0.5"]
    argv = ["fit", str(folders / "normal"), "-o", str(path), *FAST, *options]
    assert main([*argv, "--explain-method", "spatial"]) == 0
    detector = skanomaly.load(path)
    assert detector.image_score == "pooled+patches" and detector.patch_neighborhood_ == (1, 3)
    assert detector.patch_coreset == 0.5
    assert detector.score_center_.shape == (2,)
    out = tmp_path / "report"
    assert main(["explain", str(path), str(folders / "check"), "-o", str(out), "--all"]) == 0
    rows = _read_csv(out / "scores.csv")
    images = [np.asarray(Image.open(row["path"])) for row in rows]
    expected = detector.score_samples(images)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-5)
    # Each image's bars end with the worst patch's part of its score.
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("<title>worst patch: ") == len(rows) > 0


def test_fit_resolution_map_and_level_options(folders, tmp_path, capsys):
    path = tmp_path / "small.skanomaly"
    argv = ["fit", str(folders / "normal"), "-o", str(path), *FAST, "--image-score", "pooled"]
    options = ["--input-size", "96", "--keep-aspect", "--smoothing", "2", "--lam", "0.1"]
    assert main([*argv, *options, "--npca", "0.5", "--standardize"]) == 0
    detector = skanomaly.load(path)
    assert detector.input_size == 96 and detector.keep_aspect and detector.smoothing == 2
    assert detector.lam == 0.1
    images = [np.asarray(Image.open(p)) for p in sorted((folders / "check").iterdir())]
    expected = (
        skanomaly.EfficientNetGaussianDetector(
            levels=(0, 1, 2, 3),
            image_score="pooled",
            input_size=96,
            keep_aspect=True,
            npca=0.5,
            standardize=True,
        )
        .fit([np.asarray(Image.open(p)) for p in sorted((folders / "normal").iterdir())])
        .score_samples(images)
    )
    np.testing.assert_allclose(detector.score_samples(images), expected, rtol=1e-5)
    capsys.readouterr()
    assert main([*argv, "--input-size", "16"]) == 2
    assert "input_size" in _one_error_line(capsys)
    for option, value in (("--npca", "1"), ("--lam", "-1"), ("--lam", "inf")):
        assert main([*argv, option, value]) == 2
        assert f"argument {option}: expected a number" in _one_error_line(capsys)


def test_fit_with_a_weights_file(model, folders, tmp_path, capsys):
    # The bundled Lite0 weights as a state dict file, one tensor changed: the
    # model is fitted on the file's weights.
    state = load_backbone("tf_efficientnet_lite0").state_dict()
    state["conv_stem.weight"] *= 1.01
    weights = tmp_path / "lite0.pth"
    torch.save(state, weights)
    path = tmp_path / "weights.skanomaly"
    argv = ["fit", str(folders / "normal"), "-o", str(path), *FAST, "--image-score", "pooled"]
    assert main([*argv, "--weights", str(weights)]) == 0
    detector = skanomaly.load(path)
    assert detector.weights == str(weights)
    assert detector.weights_digest_ != skanomaly.load(model).weights_digest_
    rebuilt = skanomaly.EfficientNetGaussianDetector(
        weights=str(weights), levels=(0,), image_score="pooled"
    ).fit([np.asarray(Image.open(p)) for p in sorted((folders / "normal").iterdir())][:3])
    assert detector.weights_digest_ == rebuilt.weights_digest_
    capsys.readouterr()
    assert main([*argv, "--weights", str(tmp_path / "nope.pth")]) == 2
    line = _one_error_line(capsys)
    assert "--weights" in line and "nope.pth" in line


def test_calibrate_sets_both_thresholds_from_more_normal_images(model, cells, tmp_path, capsys):
    normal, _ = cells
    paths = _write(normal[15:], tmp_path / "more", "good")  # not in the fit
    out = tmp_path / "calibrated.skanomaly"
    argv = ["calibrate", str(model), str(tmp_path / "more"), "-o", str(out), "--fpr", "0.1"]
    assert main([*argv, "--no-progress"]) == 0
    assert "Calibrated on 9 normal image(s)" in capsys.readouterr().out
    images = [np.asarray(Image.open(path)) for path in paths]
    expected = skanomaly.load(model).calibrate(images, fpr=0.1).calibrate_pixels(images, fpr=0.01)
    calibrated = skanomaly.load(out)
    assert calibrated.offset_ == pytest.approx(expected.offset_, rel=1e-6)
    assert calibrated.offset_ != pytest.approx(skanomaly.load(model).offset_, rel=1e-3)
    np.testing.assert_allclose(
        calibrated.calibration_scores_, expected.calibration_scores_, rtol=1e-6
    )
    assert calibrated.pixel_threshold_ == pytest.approx(expected.pixel_threshold_, rel=1e-5)
    # Without --output the model file itself is rewritten, at the model's
    # contamination (0.05), which 9 images cannot resolve: one warning line.
    in_place = tmp_path / "in_place.skanomaly"
    shutil.copy(model, in_place)
    assert main(["calibrate", str(in_place), str(tmp_path / "more"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(
        "skanomaly: warning: A false-positive rate (fpr) of 0.05 is below 1 / (n + 1)"
    ), err
    with pytest.warns(UserWarning, match="Calibrate on more images"):
        expected = skanomaly.load(model).calibrate(images, fpr=0.05)
    assert skanomaly.load(in_place).offset_ == pytest.approx(expected.offset_, rel=1e-6)


def test_calibrate_sets_the_threshold_as_given(model, cells, tmp_path, capsys):
    normal, defective = cells
    out = tmp_path / "strict.skanomaly"
    before = skanomaly.load(model)
    images = np.concatenate([normal[12:16], defective[:4]])
    anomaly = -before.score_samples(images)
    threshold = float(np.sort(anomaly)[3])  # flags the 4 highest
    argv = ["calibrate", str(model), "--threshold", repr(threshold), "-o", str(out)]
    assert main(argv) == 0
    assert f"Threshold on anomaly_score set to {threshold!r}; pixel threshold kept" in (
        capsys.readouterr().out
    )
    after = skanomaly.load(out)
    assert after.offset_ == -threshold
    assert after.pixel_threshold_ == before.pixel_threshold_
    np.testing.assert_array_equal(after.predict(images), np.where(anomaly > threshold, -1, 1))
    # The pixel threshold as given, for the model's maps; the image one kept.
    maps = before.explain(images[4:])
    pixel = float(np.quantile(maps, 0.9))
    argv = ["calibrate", str(out), "--pixel-threshold", repr(pixel)]
    assert main(argv) == 0
    assert f"Threshold on anomaly_score kept; pixel threshold set to {pixel!r}" in (
        capsys.readouterr().out
    )
    after = skanomaly.load(out)
    assert after.offset_ == -threshold and after.pixel_threshold_ == pixel
    assert after.pixel_calibration_["source"] == "given"
    np.testing.assert_array_equal(after.segment(images[4:]), maps > pixel)
    assert main([*argv, "--threshold", "0.5"]) == 0
    assert skanomaly.load(out).offset_ == -0.5
    # Images or thresholds, one of them.
    for extra, which in (
        ([], "one of them"),
        ([str(tmp_path), "--threshold", "1"], "not both"),
        ([str(tmp_path), "--pixel-threshold", "1"], "not both"),
    ):
        assert main(["calibrate", str(model), *extra]) == 2
        line = _one_error_line(capsys)
        assert "NORMAL_DIR" in line and line.endswith(which)
    for option in ("--threshold", "--pixel-threshold"):
        assert main(["calibrate", str(model), option, "nan"]) == 2
        assert "finite" in _one_error_line(capsys)


def test_calibrate_needs_readable_images(model, tmp_path, capsys):
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["calibrate", str(model), str(tmp_path), "--no-progress"]) == 2
    assert "at least one readable" in capsys.readouterr().err.splitlines()[-1]


def test_fit_on_one_image_with_the_worst_patch_alone(folders, tmp_path, capsys):
    """--image-score patches fits one image with --augment, warns in one
    line that its threshold rests on that image (naming the command that
    sets another), and its report has no level bars: the levels play no
    part in its score."""
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted((folders / "normal").iterdir())[0], one)
    path = tmp_path / "patches.skanomaly"
    options = ["--image-score", "patches", "--augment", "flips", "--explain-method", "spatial"]
    assert main(["fit", str(one), "-o", str(path), *FAST, *options]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("skanomaly: warning: ")]
    assert len(warned) == 1 and "only training image" in warned[0], err
    assert "skanomaly calibrate" in warned[0], err
    # The message alone, not Python's file, line and source line.
    assert "UserWarning" not in err and ".py:" not in err, err
    detector = skanomaly.load(path)
    assert detector.image_score == "patches" and detector.n_samples_fit_ == 1
    out = tmp_path / "report"
    assert main(["explain", str(path), str(folders / "check"), "-o", str(out), "--all"]) == 0
    rows = _read_csv(out / "scores.csv")
    images = [np.asarray(Image.open(row["path"])) for row in rows]
    np.testing.assert_allclose(
        [float(r["score"]) for r in rows], detector.score_samples(images), rtol=1e-5
    )
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'class="levels"' not in page and "worst patch" not in page


# ------------------------------------------------------------- outputs
def test_outputs_never_replace_the_model_or_an_input_image(model, folders, tmp_path, capsys):
    copy = tmp_path / "copy.skanomaly"
    shutil.copy(model, copy)
    images = tmp_path / "images"
    shutil.copytree(folders / "check", images)
    before = (images / "bad00.png").read_bytes()
    for argv in (
        ["export", str(copy), str(copy)],
        ["score", str(copy), str(images), "--csv", str(images / "bad00.png")],
        ["score", str(copy), str(images), "--csv", str(copy)],
        ["fit", str(images), "-o", str(images / "bad00.png"), *FAST],
    ):
        assert main(argv) == 2
        assert re.search(r"it is (the model file|one of the input images)", _one_error_line(capsys))
    assert (images / "bad00.png").read_bytes() == before
    assert skanomaly.load(copy).n_samples_fit_ == 12


def test_outputs_are_checked_before_the_images_are_read(model, folders, monkeypatch, capsys):
    def no_scoring(*args, **kwargs):
        raise AssertionError("scored before the output was checked")

    monkeypatch.setattr(skanomaly.cli, "score_files", no_scoring)
    monkeypatch.setattr(skanomaly.cli, "explain_and_report", no_scoring)
    missing = str(folders / "missing" / "out.csv")
    for argv in (
        ["score", str(model), str(folders / "check"), "--csv", missing],
        ["score", str(model), str(folders / "check"), "--regions", missing],
        ["score", str(model), str(folders / "check"), "--csv", ""],
        [
            "explain",
            str(model),
            str(folders / "check"),
            "-o",
            str(folders / "r"),
            "--regions",
            missing,
        ],
    ):
        assert main([*argv, "--no-progress"]) == 2
        assert re.search("missing|is empty", _one_error_line(capsys))


def test_a_pipe_is_written_as_a_stream(model, folders, tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    command = [sys.executable, "-m", "skanomaly", "score", str(model), str(folders / "check")]
    reader = subprocess.Popen(["cat", str(pipe)], stdout=subprocess.PIPE, text=True)
    run = subprocess.run(
        [*command, "--csv", str(pipe), "--no-progress"], capture_output=True, text=True, timeout=600
    )
    out, _ = reader.communicate(timeout=60)
    assert run.returncode == 0, run.stderr
    assert pipe.is_fifo() and out.startswith("path,score,anomaly_score")
    assert len(out.splitlines()) == 7
    # A reader that leaves early (| head) ends the command quietly.
    head = subprocess.Popen(
        f"{' '.join(map(str, command))} --csv - --no-progress | head -1",
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = head.communicate(timeout=600)
    assert out.startswith("path,") and "Error" not in err, err


def test_file_names_that_are_not_utf8_reach_the_csv_and_the_report(model, folders, tmp_path):
    images = tmp_path / "odd"
    images.mkdir()
    shutil.copy(folders / "check" / "bad00.png", images / "ok.png")
    odd = os.fsdecode(b"bad\xff.png")
    shutil.copy(folders / "check" / "bad01.png", images / odd)
    out = tmp_path / "scores.csv"
    assert main(["score", str(model), str(images), "--csv", str(out), "--no-progress"]) == 0
    assert b"bad\xff.png" in out.read_bytes()
    report = tmp_path / "report"
    argv = ["explain", str(model), str(images), "-o", str(report), "--all", "--no-progress"]
    assert main(argv) == 0
    assert b"bad\xff.png" in (report / "index.html").read_bytes()


def test_only_unreadable_images_write_nothing(model, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "scores.csv"
    assert main(["score", str(model), str(folder), "--csv", str(out), "--no-progress"]) == 2
    assert "no image could be read" in capsys.readouterr().err and not out.exists()


def test_contradictory_or_api_worded_requests_get_command_line_answers(model, folders, capsys):
    check = str(folders / "check")
    assert main(["evaluate", str(model), check, check, "--no-progress"]) == 2
    assert "NORMAL_DIR and DEFECT_DIR are the same folder" in _one_error_line(capsys)
    assert main(["evaluate", str(model), "--mvtec", str(folders / "normal")]) == 2
    assert "has no test/ folder" in _one_error_line(capsys)
    assert main(["demo", "--n-train", "2"]) == 2
    assert "--n-train must be at least 3" in _one_error_line(capsys)
    # Thresholds print in e-notation; a negative one is read back as a value.
    assert main(["calibrate", str(model), "--threshold", "-1e-3", "-o", str(folders / "c.sk")]) == 0
    assert skanomaly.load(folders / "c.sk").offset_ == pytest.approx(1e-3)
