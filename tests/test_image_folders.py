"""Folders of one's own images (``--dataset folder:PATH``): the loader (cropping, resizing, grey or
RGB, transparency, orientation), its refusals, the held-out split, and a run end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from pygan import data, plot
from pygan.cli import main

from helpers import cli_error


def _save(path, array, **kw):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, **kw)


def blob_folder(folder, n=30, colour=True, seed=0):
    """``n`` pictures of a disc on black (PNG and JPEG, various sizes and aspect ratios)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = int(rng.integers(20, 50)), int(rng.integers(20, 50))
        yy, xx = np.mgrid[:h, :w]
        disc = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(h, w) / 3) ** 2
        rgb = rng.integers(80, 256, 3) if colour else np.full(3, rng.integers(80, 256))
        a = np.zeros((h, w, 3), np.uint8)
        a[disc] = rgb
        _save(folder / (f"{i:03d}.png" if i % 3 else f"{i:03d}.JPG"), a if colour else a[..., 0])
    return folder


def test_the_centred_square_is_cropped_and_resized(tmp_path):
    """A wide picture whose centred square is white and whose sides are black loads all white;
    a tall one too; the resize of a smooth picture matches the picture's own mean."""
    wide = np.zeros((40, 70), np.uint8)
    wide[:, 15:55] = 255
    tall = np.zeros((70, 40), np.uint8)
    tall[15:55] = 255
    _save(tmp_path / "wide.png", wide)
    _save(tmp_path / "tall.png", tall)
    x = data.load_folder(tmp_path, 8)
    assert x.shape == (2, 1, 8, 8) and x.dtype == np.float32
    np.testing.assert_array_equal(x, 1.0)
    ramp = np.tile(np.linspace(0, 255, 64), (64, 1)).astype(np.uint8)
    _save(tmp_path / "wide.png", ramp)
    got = data.load_folder(tmp_path, 16)[[i for i, p in enumerate(data.image_files(tmp_path)) if p.name == "wide.png"][0], 0]
    assert abs(got.mean() - ramp.mean() / 255) < 0.01
    assert np.all(np.diff(got, axis=1) >= -1e-6) and np.allclose(got, got[:1])  # still a left-to-right ramp


def test_grey_or_rgb(tmp_path):
    grey = blob_folder(tmp_path / "grey", 12, colour=False)
    x = data.load_folder(grey, 16)
    assert x.shape == (12, 1, 16, 16) and 0 <= x.min() and x.max() <= 1 and x.max() > 0.3
    np.testing.assert_array_equal(data.load_folder(grey, 16, channels=3), np.repeat(x, 3, axis=1))
    colour = blob_folder(tmp_path / "colour", 12, colour=True)
    c = data.load_folder(colour, 32)
    assert c.shape == (12, 3, 32, 32)
    # forced to grey: Pillow's own RGB -> L conversion (ITU-R 601 luma), within rounding
    g = data.load_folder(colour, 32, channels=1)
    for i, path in enumerate(data.image_files(colour)):
        with Image.open(path) as im:
            side = min(im.size)
            left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
            ref = im.convert("RGB").crop((left, top, left + side, top + side)).resize((32, 32), Image.Resampling.LANCZOS)
        np.testing.assert_allclose(g[i, 0] * 255, np.asarray(ref.convert("L"), np.float64), atol=1.01)
        np.testing.assert_allclose(c[i] * 255, np.asarray(ref, np.float64).transpose(2, 0, 1), atol=1e-3)
    with pytest.raises(ValueError, match="^channels"):
        data.load_folder(colour, 32, channels=2)
    with pytest.raises(ValueError, match="^image_size"):
        data.load_folder(colour, 30)


def test_transparency_orientation_and_subfolders(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = 255  # white, but fully transparent on the left half
    rgba[:, 5:, 3] = 255
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    _save(tmp_path / "sub" / "deeper" / "alpha.png", rgba)
    upright = np.zeros((10, 10), np.uint8)
    upright[:5] = 255  # white top half, stored with orientation 6: shown rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(tmp_path / "sub" / "rotated.png", upright, exif=exif)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"skipped")
    files = data.image_files(tmp_path)
    assert [p.name for p in files] == ["rotated.png", "alpha.png"]
    x = data.load_folder(tmp_path, 8, channels=1)
    rot, alpha = x[0, 0], x[1, 0]
    assert alpha[:, :3].max() == 0 and alpha[:, 5:].min() == 1  # transparency over black
    assert rot[:, :3].max() == 0 and rot[:, 5:].min() == 1  # the white top is on the right once turned


def test_bad_folders_and_files_raise_naming_them(tmp_path, monkeypatch):
    with pytest.raises(data.DataError, match="no such folder"):
        data.load_folder(tmp_path / "missing", 28)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="holds no PNG/JPG/JPEG files"):
        data.load_folder(tmp_path / "empty", 28)
    folder = blob_folder(tmp_path / "f", 10)
    fake = folder / "fake.png"
    fake.write_bytes(b"GIF89a not a png")
    with pytest.raises(data.DataError, match=f"^{fake}: not a PNG or JPEG image"):
        data.load_folder(folder, 28)
    good = folder / "001.png"
    fake.write_bytes(good.read_bytes()[:60])  # truncated
    with pytest.raises(data.DataError, match=f"^{fake}: not a readable PNG or JPEG image"):
        data.load_folder(folder, 28)
    fake.unlink()
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.png")  # would block a plain open for ever
        with pytest.raises(data.DataError, match="pipe.png: cannot read: a named pipe"):
            data.load_folder(folder, 28)
        (folder / "pipe.png").unlink()
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 30 * 30)
    with pytest.raises(data.DataError, match=r"pixels, more than the 900 an image may have"):
        data.load_folder(folder, 28)
    monkeypatch.undo()
    monkeypatch.setattr(data, "MAX_FOLDER_VALUES", 10 * 28 * 28)  # room for 10 grey images, not colour
    with pytest.raises(data.DataError, match="exceed the 7840 values"):
        data.load_folder(folder, 28)
    assert data.load_folder(folder, 28, channels=1).shape == (10, 1, 28, 28)


def test_the_held_out_split_is_fixed_and_disjoint():
    x = np.arange(57, dtype=np.float32)[:, None]
    train, validation, test = data.split_folder(x)
    assert (len(train), len(validation), len(test)) == (51, 3, 3)
    seen = np.concatenate([train, validation, test])[:, 0]
    assert sorted(seen) == list(range(57))
    again = data.split_folder(x)
    assert all(np.array_equal(a, b) for a, b in zip((train, validation, test), again))
    big = data.split_folder(np.zeros((100_000, 1), np.float32))
    assert (len(big[1]), len(big[2])) == (1000, 1000)
    with pytest.raises(data.DataError, match="at least 10 images"):
        data.split_folder(x[:9])


def test_rgb_grids():
    rng = np.random.default_rng(0)
    images = rng.random((5, 3, 4, 6))
    grid = plot.image_grid(images, columns=2, pad=1, scale=1)
    assert grid.shape == (3 * 5 + 1, 2 * 7 + 1, 3)
    np.testing.assert_array_equal(grid[1:5, 1:7], (images[0].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))
    assert (grid[0] == 128).all()  # the mid-grey separator
    with pytest.raises(ValueError, match="^images"):
        plot.image_grid(rng.random((2, 2, 4, 4)))


def test_a_run_on_a_folder_of_colour_images(tmp_path, capsys, monkeypatch):
    folder = blob_folder(tmp_path / "my images", 40)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    argv = ["train", "--model", "dcgan", "--dataset", "folder:my images", "--image-size", "16", "--epochs", "1",
            "--batch-size", "12", "--eval-samples", "200", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == f"folder:{folder.resolve()}" and config["channels"] == 3
    assert "on folder:" in capsys.readouterr().out
    with Image.open(out / "samples" / "epoch_001.png") as im:
        assert im.mode == "RGB" and im.size[0] > 100
        assert np.asarray(im).std() > 1  # not blank
    assert main(["train", "--resume", "--epochs", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--n", "6", "--out", str(tmp_path / "s.png")]) == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode == "RGB" and np.asarray(im).shape[2] == 3
    assert main(["eval", str(out), "--samples", "200", "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert np.isfinite(result["model"]["parzen"]) and np.isfinite(result["real"]["parzen"])
    assert "2 validation images" in result["protocol"] and "fid" not in result["model"]  # no classifier for a folder
    # a grey folder trains a one-channel MLP
    grey = blob_folder(tmp_path / "grey", 20, colour=False)
    assert main(["train", "--model", "mlp", "--dataset", f"folder:{grey}", "--epochs", "1", "--batch-size", "6",
                 "--eval-samples", "50", "--out", str(tmp_path / "g")]) == 0
    assert json.loads((tmp_path / "g" / "config.json").read_text())["channels"] == 1


def test_folder_refusals_are_one_line(tmp_path, capsys):
    folder = blob_folder(tmp_path / "f", 12)
    assert "no such folder" in cli_error(["train", "--dataset", f"folder:{tmp_path / 'nope'}"], capsys)
    from pygan.cli import dataset_name

    home = os.path.expanduser("~")
    assert dataset_name("folder:~") == f"folder:{os.path.realpath(home)}"  # the shell leaves this ~ alone
    assert "needs a folder" in cli_error(["train", "--dataset", "folder:"], capsys)
    assert "expected one of" in cli_error(["train", "--dataset", "cifar10"], capsys)
    assert "built for MNIST" in cli_error(["train", "--model", "lapgan", "--dataset", f"folder:{folder}"], capsys)
    assert "no labels" in cli_error(["train", "--model", "cgan", "--dataset", f"folder:{folder}"], capsys)
    assert "--channels is for" in cli_error(["train", "--model", "dcgan", "--dataset", "mnist", "--channels", "1"], capsys)
    assert "--channels" in cli_error(["train", "--dataset", f"folder:{folder}", "--model", "dcgan", "--channels", "2"], capsys)
    few = blob_folder(tmp_path / "few", 5)
    err = cli_error(["train", "--model", "dcgan", "--dataset", f"folder:{few}", "--out", str(tmp_path / "r")], capsys, 1)
    assert "at least 10 images" in err
