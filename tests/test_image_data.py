"""Reading image data: CIFAR-100's python folder (a generated one, in its exact format) read back pixel for
pixel, every malformed folder refused in one line naming what is wrong, nothing ever executed; digits;
the holdout; and the augmentation, each against what it must do to the pixels."""
import os
import pickle

import numpy as np
import pytest
import torch

from kdtrack.errors import InputError
from kdtrack.images import augment
from cifar_folder import write_cifar100_folder
from kdtrack.images.data import holdout, load_cifar100, load_digits, load_image_data


@pytest.fixture()
def folder(tmp_path):
    return write_cifar100_folder(tmp_path / "cifar-100-python", n_train=30, n_test=12, n_classes=6, seed=0)


def _record(folder, part):
    return pickle.loads((folder / part).read_bytes())


def test_a_cifar_folder_reads_back_pixel_for_pixel(folder):
    data = load_cifar100(folder)
    raw = _record(folder, "train")
    assert data.train.x.shape == (30, 32, 32, 3) and data.train.x.dtype == np.uint8
    assert data.test.x.shape == (12, 32, 32, 3) and data.n_classes == 6 and data.channels == 3
    assert data.train.y.tolist() == raw[b"fine_labels"]
    row = raw[b"data"][7]  # 1024 red, then green, then blue, each row-major
    assert data.train.x[7, 2, 5, 0] == row[2 * 32 + 5] and data.train.x[7, 2, 5, 2] == row[2048 + 2 * 32 + 5]
    assert data.classes[0] == "class0" and data.name == "cifar100" and data.source == str(folder)


def test_fingerprints_follow_the_content(folder, tmp_path):
    first = load_cifar100(folder).fingerprint
    copy = write_cifar100_folder(tmp_path / "copy", n_train=30, n_test=12, n_classes=6, seed=0)
    assert load_cifar100(copy).fingerprint == first
    record = _record(copy, "test")
    record[b"data"][0, 0] ^= 1
    (copy / "test").write_bytes(pickle.dumps(record, protocol=2))
    assert load_cifar100(copy).fingerprint != first


class _Runs:
    def __reduce__(self):
        return os.system, ("touch executed",)


def _corrupt(folder, part, change):
    record = _record(folder, part)
    change(record)
    (folder / part).write_bytes(pickle.dumps(record, protocol=2))


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "train").unlink(), "train: no such file"),
    (lambda f: (f / "test").write_bytes(b""), "test: not a pickle"),
    (lambda f: (f / "test").write_bytes(b"hello world"), "test: not a pickle"),
    (lambda f: (f / "train").write_bytes(pickle.dumps({b"data": _Runs()}, protocol=2)), "refused to load 'posix.system'"),
    (lambda f: (f / "train").write_bytes(pickle.dumps([1, 2], protocol=2)), "expected a dict, got list"),
    (lambda f: _corrupt(f, "train", lambda r: r.pop(b"fine_labels")), "train: missing fine_labels"),
    (lambda f: _corrupt(f, "train", lambda r: r.update({b"data": r[b"data"][:, :100]})), "uint8 rows of 3072"),
    (lambda f: _corrupt(f, "test", lambda r: r.update({b"fine_labels": r[b"fine_labels"][:-1]})), "12 integers"),
    (lambda f: _corrupt(f, "test", lambda r: r[b"fine_labels"].__setitem__(0, 6)), "must lie in 0..5"),
    (lambda f: (f / "meta").write_bytes(pickle.dumps({b"fine_label_names": []}, protocol=2)), "non-empty list"),
])
def test_a_malformed_folder_is_one_line_naming_the_problem(folder, monkeypatch, tmp_path, damage, message):
    monkeypatch.chdir(tmp_path)
    damage(folder)
    with pytest.raises(InputError) as error:
        load_cifar100(folder)
    assert message in str(error.value) and str(folder) in str(error.value)
    assert len(str(error.value).splitlines()) == 1
    assert not (tmp_path / "executed").exists()


def test_a_missing_or_wrong_folder_and_options(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        load_cifar100(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        load_cifar100(tmp_path / "file")
    with pytest.raises(InputError, match="cifar100 needs --data"):
        load_image_data("cifar100")
    with pytest.raises(InputError, match="--data is for cifar100"):
        load_image_data("digits", str(tmp_path))
    with pytest.raises(InputError, match="dataset must be one of digits, cifar100"):
        load_image_data("mnist")


def test_digits():
    data = load_digits()
    assert (len(data.train.y), len(data.test.y)) == (1437, 360)
    assert data.train.x.shape[1:] == (8, 8, 1) and data.train.x.max() == 255
    assert np.bincount(data.test.y).min() >= 35  # stratified: 36 or 37 of each digit
    again = load_digits()
    assert np.array_equal(again.train.x, data.train.x) and again.fingerprint == data.fingerprint
    assert data.mean[0] == pytest.approx((data.train.x / 255).mean())


def test_the_holdout_is_stratified_and_reproducible():
    data = load_digits()
    fit, held = holdout(data.train, 0.1, seed=0)
    assert len(fit.y) + len(held.y) == len(data.train.y)
    assert set(np.bincount(held.y)) <= {14, 15}
    assert np.array_equal(holdout(data.train, 0.1, seed=0)[1].y, held.y)
    assert not np.array_equal(holdout(data.train, 0.1, seed=1)[1].x, held.x)
    for fraction in (0, 1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            holdout(data.train, fraction, seed=0)


def _batch() -> torch.Tensor:
    return torch.randint(1, 256, (64, 3, 8, 8), generator=torch.Generator().manual_seed(0)).to(torch.uint8)


def test_crops_are_windows_of_the_zero_padded_image():
    images = _batch()
    assert torch.equal(augment.random_crop(images, 0, torch.Generator()), images)
    cropped = augment.random_crop(images, 4, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images, (4,) * 4)
    for index in range(3):
        windows = [padded[index, :, top:top + 8, left:left + 8] for top in range(9) for left in range(9)]
        assert any(torch.equal(cropped[index], window) for window in windows)
    offsets = {tuple((cropped[i] == 0).sum(dim=(0, 1)).tolist()) for i in range(64)}
    assert len(offsets) > 10  # independent offsets per image
    assert torch.equal(cropped, augment.random_crop(images, 4, torch.Generator().manual_seed(1)))


def test_flips_mirror_about_half_the_images():
    images = _batch()
    flipped = augment.random_flip(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images)]
    assert all(m or torch.equal(f, i) for m, f, i in zip(mirrored, flipped, images))
    assert 20 <= sum(mirrored) <= 44


def test_to_float_normalises_each_channel():
    images = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    x = augment.to_float(images, (0.5, 0.2), (0.25, 0.1))
    assert torch.allclose(x, torch.tensor([[[[-2.0, 2.0]], [[0.0, 2.0]]]]))
    assert augment.nchw(np.zeros((2, 8, 8, 3), np.uint8)).shape == (2, 3, 8, 8)
