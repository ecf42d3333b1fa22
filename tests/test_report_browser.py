"""The HTML report opened from disk in a real browser (headless Chromium).

The page records on ``<body>`` how many of its images loaded
(``data-images="loaded/total"``) once every image has finished; Chromium's
``--dump-dom`` shows that attribute after the page's scripts ran.
"""

import re
import shutil
import subprocess

import pytest
from PIL import Image

from skanomaly.cli import main

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
]


@pytest.fixture(scope="module")
def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "Chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)"
    )


def _dump_dom(chromium, html_path, profile):
    result = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", html_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _body(dom):
    match = re.search(r"<body[^>]*>", dom)
    assert match, dom[:2000]
    return match.group(0)


@pytest.fixture(scope="module")
def report(cells, tmp_path_factory):
    """A report made by the CLI on 4 normal and 2 defective cells, in a folder
    whose name needs escaping in a URL."""
    normal, defective = cells
    root = tmp_path_factory.mktemp("browser")
    train, check = root / "train", root / "to check"
    train.mkdir()
    check.mkdir()
    for i, image in enumerate(normal[:8]):
        Image.fromarray(image).save(train / f"{i}.png")
    for i, image in enumerate([*normal[20:24], *defective[:2]]):
        Image.fromarray(image).save(check / f"cell #{i} 50%.png")
    model = root / "model.skanomaly"
    fit = [
        "fit",
        str(train),
        "-o",
        str(model),
        "--levels",
        "0,1,2",
        "--holdout",
        "0",
        "--no-progress",
    ]
    assert main(fit) == 0
    out = root / "my report #1"
    assert main(["explain", str(model), str(check), "-o", str(out), "--all", "--no-progress"]) == 0
    return out


def test_every_image_loads(chromium, report, tmp_path):
    n_images = len(list(report.glob("thumbnails/*.png"))) + len(list(report.glob("overlays/*.png")))
    assert n_images == 12
    dom = _dump_dom(chromium, report / "index.html", tmp_path / "profile")
    body = _body(dom)
    assert f'data-images="{n_images}/{n_images}"' in body, body
    assert 'data-images-failed=""' in body
    assert dom.count("<img") == n_images
    assert "cell #5 50%.png" in dom


def test_a_missing_image_is_detected(chromium, report, tmp_path):
    """The check is not vacuous: a deleted overlay shows as failed."""
    copy = tmp_path / "copy"
    shutil.copytree(report, copy)
    victim = sorted(copy.glob("overlays/*.png"))[0]
    victim.unlink()
    dom = _dump_dom(chromium, copy / "index.html", tmp_path / "profile")
    body = _body(dom)
    assert 'data-images="11/12"' in body, body
    assert victim.name in body
    assert "could not be loaded" in dom
