"""IDX reading (and its failures), the MNIST loader, downloads with checksums, toy data, batching."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from pygan import data


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    a = (np.random.default_rng(0).standard_normal((3, 5, 2)) * 50).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    data.write_idx(path, a)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\0\0")
    b = data.read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def _header(dims, code=0x08):
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes()


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"\x00\x00\x08", "truncated"),
        (b"\x01\x02\x08\x01" + b"\0" * 8, "not an IDX file"),
        (b"\x00\x00\x42\x01" + b"\0" * 8, "not an IDX file"),
        (b"\x00\x00\x08\x07" + b"\0" * 8, "not an IDX file"),
        (_header([10, 28, 28]) + b"\0" * 100, "truncated"),
        (_header([4]) + b"\0" * 5, "trailing"),
        (_header([100000, 100000, 1000]), "limit"),
        (_header([2**31, 4], 0x0E), "limit"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_bad_idx_files_raise_naming_the_file(tmp_path, blob, message, compress):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(blob) if compress else blob)
    with pytest.raises(data.DataError, match=message) as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


def test_gzip_garbage_and_truncated_gzip(tmp_path):
    path = tmp_path / "garbage.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(range(200)))
    with pytest.raises(data.DataError, match="garbage.gz"):
        data.read_idx(path)
    good = gzip.compress(_header([1000]) + bytes(1000))
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(data.DataError, match="garbage.gz"):
        data.read_idx(path)


def test_missing_file_says_where_to_put_it(tmp_path):
    with pytest.raises(data.DataError, match="PYGAN_DATA") as err:
        data.load_images("mnist", "train", tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(data.DataError, match="cannot open"):
        data.read_idx(tmp_path / "nope.idx")


def _fake_mnist(folder, n=30, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    for split in ("train", "t10k"):
        data.write_idx(folder / f"{split}-images-idx3-ubyte.gz", imgs)
        data.write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return imgs, labels


def test_load_images_from_argument_and_environment(tmp_path, monkeypatch):
    imgs, labels = _fake_mnist(tmp_path / "d")
    x, y = data.load_images("mnist", "train", tmp_path / "d")
    assert x.shape == (30, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], imgs / np.float32(255))
    np.testing.assert_array_equal(y, labels)
    monkeypatch.setenv("PYGAN_DATA", str(tmp_path / "d"))
    x2, _ = data.load_images("mnist", "test")
    np.testing.assert_array_equal(x, x2)
    _fake_mnist(tmp_path / "d" / "fashion-mnist", seed=1)
    xf, _ = data.load_images("fashion-mnist", "train")
    assert not np.array_equal(xf, x)


def test_load_images_rejects_mismatched_labels(tmp_path):
    _fake_mnist(tmp_path)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(data.DataError, match="7 labels for 30 images"):
        data.load_images("mnist", "train", tmp_path)


def test_download_verifies_checksums(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    _fake_mnist(mirror)
    sums = {("mnist", p.name): ("sha256", hashlib.sha256(p.read_bytes()).hexdigest()) for p in mirror.iterdir()}
    monkeypatch.setattr(data, "CHECKSUMS", sums)
    dest = data.download("mnist", tmp_path / "dest", base_url=mirror.as_uri())
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in mirror.iterdir())
    x, _ = data.load_images("mnist", "test", dest)
    assert len(x) == 30
    sums[("mnist", "t10k-labels-idx1-ubyte.gz")] = ("sha256", "0" * 64)
    with pytest.raises(data.DataError, match="differs from the published"):
        data.download("mnist", tmp_path / "dest2", base_url=mirror.as_uri())
    assert not list((tmp_path / "dest2").glob("*.part"))
    with pytest.raises(data.DataError, match="by hand"):
        data.download("mnist", tmp_path / "dest3", base_url=(tmp_path / "nowhere").as_uri())


def test_toy_distributions_match_their_definitions():
    for name, k, sigma in (("ring8", 8, 0.01), ("grid25", 25, 0.05), ("gauss1d", 1, 0.5)):
        means, s = data.toy_modes(name)
        assert len(means) == k and s == sigma
        x, lab = data.toy_labelled(name, 20000, seed=3)
        dev = x - means[lab]
        assert abs(dev.std() - sigma) < 0.03 * sigma
        assert np.bincount(lab, minlength=k).min() > 20000 / k * 0.8
    ring, _ = data.toy_modes("ring8")
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 1.0)
    grid, _ = data.toy_modes("grid25")
    assert sorted(set(grid[:, 0])) == [-4, -2, 0, 2, 4]


def test_epoch_order_is_a_seeded_permutation():
    a = data.epoch_order(100, 5, 2)
    assert sorted(a) == list(range(100))
    np.testing.assert_array_equal(a, data.epoch_order(100, 5, 2))
    assert not np.array_equal(a, data.epoch_order(100, 5, 3))
    assert not np.array_equal(a, data.epoch_order(100, 6, 2))


def test_real_mnist_if_present():
    """Reads the real files when PYGAN_DATA points at them (CI sets it)."""
    import os

    if not os.environ.get("PYGAN_DATA"):
        pytest.skip("PYGAN_DATA is not set: no real MNIST folder to read")
    x, y = data.load_images("mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and 0 <= x.min() and x.max() == 1.0
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
