"""Saved detectors: small, network-free, data-only, version- and weights-checked."""

import copy
import errno
import json
import pathlib
import pickle
import subprocess
import sys

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone

import skanomaly._base
import skanomaly.features
import skanomaly.persistence
from skanomaly import EfficientNetGaussianDetector
from skanomaly.backbone import load_backbone
from skanomaly.persistence import check_version


class _RunsCode:
    """Unpickling this creates ``marker``: what a malicious model file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture
def model_file(fitted, tmp_path):
    path = tmp_path / "model.skanomaly"
    skanomaly.save(fitted, path)
    return path


def _copy(detector):
    return pickle.loads(pickle.dumps(detector))


def test_reloads_in_a_fresh_offline_process(fitted, cells, tmp_path):
    """Both a pickle (as dask and joblib workers get it) and a model file."""
    _, defective = cells
    np.save(tmp_path / "X.npy", defective)
    joblib.dump(fitted, tmp_path / "model.joblib")
    skanomaly.save(fitted, tmp_path / "model.skanomaly")
    code = (
        "import sys, joblib, numpy as np, skanomaly\n"
        "d = sys.argv[1]\n"
        "X = np.load(d + '/X.npy')\n"
        "np.save(d + '/pickled.npy', joblib.load(d + '/model.joblib').score_samples(X))\n"
        "np.save(d + '/loaded.npy', skanomaly.load(d + '/model.skanomaly').score_samples(X))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "", "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True, timeout=300)
    # Equal up to BLAS summation order, which may differ between processes.
    expected = fitted.score_samples(defective)
    for name in ("pickled", "loaded"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), expected, rtol=1e-12)


def test_saved_model_is_small(fitted, model_file):
    network_bytes = sum(
        t.numel() * t.element_size() for t in load_backbone(fitted.backbone).state_dict().values()
    )
    # The Gaussians (covariance and precision of the 1280-d head dominate)
    # and the patch memory of the descent, never the network.
    gaussian_bytes = sum(c.nbytes + p.nbytes for c, p in zip(fitted.covariance_, fitted.precision_))
    size = model_file.stat().st_size
    assert size < 1.1 * (gaussian_bytes + fitted.patches_.nbytes) + 1e6
    assert network_bytes > 15e6


def test_incompatible_version_is_refused(fitted, monkeypatch):
    monkeypatch.setattr(skanomaly._base, "__version__", "9.3.0")
    blob = pickle.dumps(fitted)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"saved by skanomaly 9\.3\.0"):
        pickle.loads(blob)


def test_other_weights_are_refused(cells, tmp_path):
    normal, defective = cells
    state = load_backbone("tf_efficientnet_lite0").state_dict()
    torch.save(state, tmp_path / "w.pth")
    detector = EfficientNetGaussianDetector(weights=tmp_path / "w.pth", levels=(0, 1)).fit(
        normal[:6]
    )
    skanomaly.save(detector, tmp_path / "m.skanomaly")
    loaded = skanomaly.load(tmp_path / "m.skanomaly")
    assert loaded.weights == str(tmp_path / "w.pth")
    np.testing.assert_array_equal(
        loaded.score_samples(defective), detector.score_samples(defective)
    )
    # The same file name now holds other weights (one tensor changed): the
    # process that loaded the first ones sees the change too.
    state["conv_stem.weight"] = state["conv_stem.weight"] * 1.01
    torch.save(state, tmp_path / "w.pth")
    for model in (detector, loaded):
        with pytest.raises(ValueError, match="fitted with other weights"):
            model.score_samples(defective)
    refitted = clone(detector).fit(normal[:6])
    assert refitted.weights_digest_ != detector.weights_digest_
    # Loading says where the weights went missing, before any scoring.
    (tmp_path / "w.pth").unlink()
    with pytest.warns(UserWarning, match=r"w\.pth' that this model was fitted with is not found"):
        skanomaly.load(tmp_path / "m.skanomaly")


def test_save_and_load_a_model_file(fitted, cells, model_file, tmp_path):
    _, defective = cells
    loaded = skanomaly.load(model_file)
    assert loaded is not fitted
    assert loaded.get_params() == fitted.get_params()
    assert loaded.levels_ == fitted.levels_ and loaded.level_names_ == fitted.level_names_
    assert loaded.offset_ == fitted.offset_
    # Bit-identical: the precisions are read, not recomputed.
    np.testing.assert_array_equal(loaded.score_samples(defective), fitted.score_samples(defective))
    np.testing.assert_array_equal(loaded.explain(defective[:2]), fitted.explain(defective[:2]))
    # The detector's own pickling, which dask and joblib use, still works.
    np.testing.assert_array_equal(
        _copy(loaded).score_samples(defective[:2]), fitted.score_samples(defective[:2])
    )
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        skanomaly.save(fitted, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        skanomaly.save(fitted, tmp_path / "missing" / "model.skanomaly")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        skanomaly.load(tmp_path / "missing.skanomaly")


def test_the_file_is_arrays_and_json(fitted, model_file):
    """Readable without skanomaly and without unpickling anything."""
    with np.load(model_file, allow_pickle=False) as archive:
        metadata = json.loads(archive["__metadata__"].tobytes().decode("utf-8"))
        np.testing.assert_array_equal(
            archive["gaussians_.0.precision"], fitted.gaussians_[0].precision
        )
    assert metadata["format"] == skanomaly.persistence.MODEL_FORMAT
    assert metadata["skanomaly_version"] == skanomaly.__version__
    assert metadata["estimator"] == "EfficientNetGaussianDetector"
    assert metadata["params"]["backbone"] == fitted.backbone
    assert metadata["attributes"]["n_samples_fit_"] == fitted.n_samples_fit_


def test_any_fitted_attribute_of_the_supported_types_round_trips(fitted, cells, tmp_path):
    """Attributes that other parts of skanomaly add are saved without changes here."""
    detector = _copy(fitted)
    extra = {
        "pixel_threshold_": np.float32(0.25),
        "level_statistics_": {"stem": (1, 2.5, np.arange(3)), 7: [None, True, "x"]},
        "not_finite_": [float("inf"), float("nan")],
        "feature_names_in_": np.array(["a", "b"], dtype=object),
    }
    vars(detector).update(extra)
    detector.calibrate(cells[0][16:], fpr=0.2)
    skanomaly.save(detector, tmp_path / "m.skanomaly")
    loaded = skanomaly.load(tmp_path / "m.skanomaly")
    assert type(loaded.pixel_threshold_) is np.float32 and loaded.pixel_threshold_ == 0.25
    stem = loaded.level_statistics_["stem"]
    assert stem[:2] == (1, 2.5) and isinstance(stem, tuple)
    np.testing.assert_array_equal(stem[2], np.arange(3))
    assert loaded.level_statistics_[7] == [None, True, "x"]
    assert loaded.not_finite_[0] == np.inf and np.isnan(loaded.not_finite_[1])
    assert loaded.feature_names_in_.dtype == object
    assert list(loaded.feature_names_in_) == ["a", "b"]
    np.testing.assert_array_equal(loaded.calibration_scores_, detector.calibration_scores_)
    assert loaded.offset_ == detector.offset_


def test_an_attribute_that_a_file_cannot_hold_is_named(fitted, tmp_path):
    detector = _copy(fitted)
    detector.helper_ = {"fn": len}
    with pytest.raises(TypeError, match=r"helper_\.0 is a builtins\.builtin_function"):
        skanomaly.save(detector, tmp_path / "m.skanomaly")
    assert not (tmp_path / "m.skanomaly").exists()


def test_parameters_that_are_not_json(fitted, cells, tmp_path):
    detector = _copy(fitted).set_params(
        device=torch.device("cpu"), memory=tmp_path / "cache", levels=np.array([0, 1])
    )
    skanomaly.save(detector, tmp_path / "m.skanomaly")
    loaded = skanomaly.load(tmp_path / "m.skanomaly")
    # The device by name; a cache folder belongs to the machine that fitted.
    assert loaded.device == "cpu" and loaded.memory is None
    np.testing.assert_array_equal(loaded.levels, [0, 1])
    np.testing.assert_array_equal(
        loaded.score_samples(cells[1][:2]), fitted.score_samples(cells[1][:2])
    )


def test_a_partial_fit_stream_too_short_to_finish_is_not_saved(cells, tmp_path):
    detector = EfficientNetGaussianDetector(levels=(0,)).partial_fit(cells[0][:1])
    with pytest.raises(
        ValueError, match="Cannot save this detector: offset_ is not available yet: n_samples=1"
    ):
        skanomaly.save(detector, tmp_path / "one.skanomaly")
    assert not (tmp_path / "one.skanomaly").exists()


def test_partial_fit_is_finished_before_saving(cells, tmp_path):
    normal, defective = cells
    detector = EfficientNetGaussianDetector(levels=(0, 1))
    for chunk in np.array_split(normal[:8], 2):
        detector.partial_fit(chunk)
    assert "offset_" not in vars(detector)
    skanomaly.save(detector, tmp_path / "m.skanomaly")
    loaded = skanomaly.load(tmp_path / "m.skanomaly")
    np.testing.assert_array_equal(
        loaded.score_samples(defective), detector.score_samples(defective)
    )
    with pytest.raises(ValueError, match="fit it again"):
        loaded.partial_fit(normal[8:10])


def test_a_copy_of_a_stream_says_why_it_cannot_continue(cells):
    normal, _ = cells
    detector = EfficientNetGaussianDetector(levels=(0, 1)).partial_fit(normal[:4])
    with pytest.raises(ValueError, match=r"copies \(copy\.deepcopy, joblib\) leave them out"):
        copy.deepcopy(detector).partial_fit(normal[4:8])


@pytest.mark.parametrize(
    "spoil, match",
    [
        (lambda d: d.set_params(batch_size=0), "'batch_size' parameter"),
        (lambda d: setattr(d, "offset_", float("nan")), "its offset_ is invalid: nan"),
    ],
)
def test_what_load_would_refuse_is_not_saved(fitted, model_file, spoil, match):
    before = model_file.read_bytes()
    spoilt = copy.deepcopy(fitted)
    spoil(spoilt)
    with pytest.raises(ValueError, match=match):
        skanomaly.save(spoilt, model_file)
    # The good file is still there to load.
    assert model_file.read_bytes() == before


def test_a_path_that_ends_as_a_folder_is_refused(fitted, tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        skanomaly.save(fitted, f"{tmp_path}/models/")
    assert not (tmp_path / "models").exists()


def test_unfitted_detector_is_not_saved(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        skanomaly.save(EfficientNetGaussianDetector(), tmp_path / "m.skanomaly")


def _rewrite(path, change, **entries):
    """Apply ``change`` to the metadata of the model file ``path``, and
    replace its arrays by ``entries``, in place."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files} | entries
    metadata = json.loads(arrays["__metadata__"].tobytes())
    change(metadata)
    arrays["__metadata__"] = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def test_load_refuses_another_version_or_format(model_file):
    _rewrite(model_file, lambda m: m.update(skanomaly_version="0.0.1"))
    with pytest.raises(ValueError, match=r"0\.0\.1.*incompatible"):
        skanomaly.load(model_file)
    _rewrite(model_file, lambda m: m.update(skanomaly_version=skanomaly.__version__, format=3))
    with pytest.raises(ValueError, match=r"format 3\), incompatible"):
        skanomaly.load(model_file)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m.update(estimator="os.system"), "cannot rebuild"),
        (lambda m: m["params"].update(memory="/tmp/cache"), "names a feature cache"),
        (lambda m: m["params"].update(distance="manhattan"), "not a readable.*distance"),
        (lambda m: m["params"].update(colour="red"), "not a readable.*colour"),
        (lambda m: m["attributes"].update(__class__=None), "not a readable.*not that of a fitted"),
        (lambda m: m["attributes"].pop("offset_"), "holds no fitted detector"),
        (lambda m: m["attributes"].update(offset_={"array": "missing"}), "no array 'missing'"),
        (lambda m: m["attributes"].update(offset_={"lambda": "x"}), "not a readable"),
        (
            lambda m: m["attributes"]["gaussians_"][0]["gaussian"].update(
                precision={"array": "gaussians_.1.precision"}
            ),
            "do not fit together",
        ),
    ],
)
def test_load_refuses_tampered_metadata(model_file, change, match):
    _rewrite(model_file, change)
    with pytest.raises(ValueError, match=match) as error:
        skanomaly.load(model_file)
    assert str(model_file) in str(error.value)


def _attribute(**values):
    """A change that sets fitted attributes (as JSON) in the metadata."""
    return lambda metadata: metadata["attributes"].update(values)


def _nan_precision(model_file):
    """The precision of the second Gaussian, with one NaN."""
    with np.load(model_file) as archive:
        precision = archive["gaussians_.1.precision"].copy()
    precision[0, 0] = np.nan
    return {"gaussians_.1.precision": precision}


def _small_gaussian(model_file):
    """The first Gaussian as one of 5 dimensions, its arrays consistent:
    the stem of Lite0 has 32 channels."""
    return {
        "gaussians_.0.location": np.zeros(5),
        "gaussians_.0.covariance": np.eye(5),
        "gaussians_.0.precision": np.eye(5),
    }


@pytest.mark.parametrize(
    "change, entries, match",
    [
        (lambda m: None, _nan_precision, r"invalid gaussians_: Gaussian 1: .* not finite"),
        (
            lambda m: None,
            _small_gaussian,
            "invalid gaussians_: Gaussian 0: it has 5 dimensions, but the backbone's "
            "features there have 32",
        ),
        # The default memory holds two neighbourhoods side by side: one is half as wide.
        (
            _attribute(patch_neighborhood_=1),
            None,
            "invalid patches_: it has 304 columns, .* have 152",
        ),
        (_attribute(gaussians_=[None] * 9), None, "Gaussian 0: its type is NoneType, not Gaussian"),
        (_attribute(offset_={"float": "nan"}), None, "invalid offset_: nan is not a number"),
        (_attribute(offset_="abc"), None, "invalid offset_: 'abc' is not a number"),
        (_attribute(levels_={"tuple": [0, 1, 99]}), None, r"invalid levels_: .*0\.\.8"),
        (_attribute(levels_={"tuple": [1, 0]}), None, "invalid levels_: .* increasing"),
        (_attribute(patch_levels_=[3, 5]), None, "invalid patch_levels_: .* tuple"),
        (
            _attribute(level_scale_={"tuple": [1.0]}),
            None,
            "invalid level_scale_: its type is tuple, not a",
        ),
        (_attribute(n_samples_fit_=0), None, r"invalid n_samples_fit_: 0 is not an int in \[1"),
        (_attribute(patch_neighborhood_=2), None, "invalid patch_neighborhood_: 2 is not one of"),
        (
            _attribute(patch_neighborhood_={"tuple": [3, 1]}),
            None,
            r"invalid patch_neighborhood_: \(3, 1\) is not one of",
        ),
        (
            _attribute(patch_neighborhood_=[1, 3]),
            None,
            r"invalid patch_neighborhood_: \[1, 3\] is not an int or a tuple",
        ),
        (_attribute(weights_digest_=1), None, "invalid weights_digest_: its type is int, not str"),
        (_attribute(fit_precision_="float64"), None, "invalid fit_precision_: 'float64' names no"),
        (lambda m: m["attributes"].pop("spatial_levels_"), None, "lacks spatial_levels_"),
        (lambda m: m["params"].update(backbone="resnet50"), None, "not a timm EfficientNet"),
        # Each None or empty is what a pooled score allows, not this model's.
        (
            _attribute(patches_=None),
            None,
            r"invalid patches_: it is empty, but image_score='pooled\+patches' needs",
        ),
        (_attribute(score_center_=None), None, "invalid score_center_: it is empty, but"),
        (_attribute(patch_levels_={"tuple": []}), None, "invalid patch_levels_: it is empty, but"),
        (_attribute(level_names_=list(range(9))), None, "invalid level_names_: its items are not"),
    ],
    ids=[
        "nan precision",
        "Gaussian of another size",
        "memory of another width",
        "not Gaussians",
        "nan offset",
        "str offset",
        "level out of range",
        "unsorted levels",
        "levels as list",
        "short level scale",
        "no samples",
        "unknown neighbourhood",
        "unsorted neighbourhoods",
        "neighbourhoods as list",
        "int digest",
        "unknown fit precision",
        "missing attribute",
        "unknown backbone",
        "no patch memory",
        "no score centre",
        "no patch levels",
        "level numbers as names",
    ],
)
def test_load_refuses_fitted_attributes_that_fit_never_makes(model_file, change, entries, match):
    """Each would otherwise fail, or score NaN or wrongly, only when used."""
    _rewrite(model_file, change, **(entries(model_file) if entries else {}))
    with pytest.raises(ValueError, match=match) as error:
        skanomaly.load(model_file)
    assert str(model_file) in str(error.value)


@pytest.mark.parametrize("path", [None, 5, b"model.skanomaly"])
def test_save_and_load_name_a_path_of_the_wrong_type(fitted, path):
    with pytest.raises(TypeError, match="path of the model file must be a str or path-like"):
        skanomaly.save(fitted, path)
    with pytest.raises(TypeError, match="'path' of load must be a str or path-like"):
        skanomaly.load(path)


@pytest.mark.parametrize(
    "write, match",
    [
        (lambda p: p.write_bytes(b""), "not a readable skanomaly model file"),
        (lambda p: p.write_bytes(b"garbage" * 30), "not a readable skanomaly model file"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable"),
        (lambda p: np.save(p.open("wb"), np.arange(3)), "not a readable skanomaly model file"),
        (lambda p: np.savez(p.open("wb"), x=np.arange(3)), "not a skanomaly model file"),
    ],
    ids=["empty", "garbage", "truncated", "npy", "other npz"],
)
def test_load_names_a_foreign_corrupt_or_truncated_file(model_file, write, match):
    write(model_file)
    with pytest.raises(ValueError, match=match) as error:
        skanomaly.load(model_file)
    assert str(model_file) in str(error.value)


def test_a_pickle_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "model.skanomaly"
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(ValueError, match=r"is a pickle.*runs whatever code.*trust_pickle=True"):
        skanomaly.load(path)
    assert not marker.exists()
    # The file really runs code when unpickled: only with trust_pickle=True.
    with pytest.raises(ValueError, match="not a skanomaly model file"):
        skanomaly.load(path, trust_pickle=True)
    assert marker.exists()


def test_a_trusted_legacy_pickle_loads(fitted, cells, tmp_path):
    path = tmp_path / "model.joblib"
    payload = {
        "skanomaly_version": skanomaly.__version__,
        "format": 1,
        "sklearn_version": "1.6.0",
        "detector": fitted,
    }
    joblib.dump(payload, path)
    with pytest.raises(ValueError, match="pickle"):
        skanomaly.load(path)
    loaded = skanomaly.load(path, trust_pickle=True)
    np.testing.assert_array_equal(loaded.score_samples(cells[1]), fitted.score_samples(cells[1]))
    # Converted to the safe format by saving it again.
    skanomaly.save(loaded, tmp_path / "model.skanomaly")
    assert skanomaly.load(tmp_path / "model.skanomaly").offset_ == fitted.offset_
    joblib.dump({**payload, "skanomaly_version": "0.0.1"}, path)
    with pytest.raises(ValueError, match=r"0\.0\.1.*incompatible"):
        skanomaly.load(path, trust_pickle=True)
    joblib.dump({**payload, "detector": "not a detector"}, path)
    with pytest.raises(ValueError, match="holds no fitted detector"):
        skanomaly.load(path, trust_pickle=True)


@pytest.mark.parametrize(
    "failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]
)
def test_an_interrupted_save_keeps_the_previous_file(fitted, model_file, monkeypatch, failure):
    before = model_file.read_bytes()

    def fails_halfway(handle, **arrays):
        handle.write(before[: len(before) // 2])
        raise failure

    monkeypatch.setattr(skanomaly.persistence.np, "savez", fails_halfway)
    with pytest.raises(type(failure)) as error:
        skanomaly.save(fitted, model_file)
    if isinstance(failure, OSError):
        assert str(model_file) in str(error.value) and "No space left" in str(error.value)
    assert model_file.read_bytes() == before
    assert [p.name for p in model_file.parent.iterdir()] == [model_file.name]


@pytest.mark.parametrize("saved", [None, "0.0.1", "9.3.0"])
def test_check_version_refuses_other_minor_versions(saved):
    check_version(skanomaly.__version__)
    with pytest.raises(ValueError, match=f"saved by skanomaly {saved or '< 0.1'} "):
        check_version(saved)


def test_save_and_load_do_not_import_torch():
    code = (
        "import sys, skanomaly\n"
        "skanomaly.save, skanomaly.load\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
