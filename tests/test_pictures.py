"""Pictures drawn by Matplotlib and written by Pillow: training curves from a recorded log (per run
and by `pygan plot`), toy scatters with axes and classes coloured, labelled class columns."""

from __future__ import annotations

import json
import sys

import numpy as np
from PIL import Image

from pygan import data, plot
from pygan.cli import main, read_log

from helpers import cli_error

C0, C1 = (31, 119, 180), (255, 127, 14)  # Matplotlib's first two cycle colours


def decoded(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def has(img: np.ndarray, rgb, at_least: int = 20) -> bool:
    return int((np.abs(img.astype(int) - rgb).max(axis=2) <= 25).sum()) >= at_least  # antialiased: near the colour


def recorded_log(folder):
    rows = []
    for epoch in (1, 2, 3):
        for batch in range(10, 101, 10):
            rows.append({"kind": "step", "epoch": epoch, "batch": batch, "steps": (epoch - 1) * 100 + batch,
                         "d_loss": 1.4 - 0.1 * epoch, "g_loss": 0.7 + 0.01 * batch, "d_x": 0.5, "d_g_z": 0.45})
        rows.append({"kind": "epoch", "epoch": epoch, "steps": epoch * 100, "d_loss": 1.4 - 0.1 * epoch, "g_loss": 0.8,
                     "d_x": 0.5, "d_g_z": 0.45, "d_acc_real": 0.6, "d_acc_fake": 0.7, "val_parzen": 100.0 + epoch,
                     "best_epoch": epoch})
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "config.json").write_text(json.dumps({"model": "dcgan", "dataset": "mnist", "loss": "hinge"}))


def test_pygan_plot_draws_curves_from_a_recorded_log(tmp_path, capsys):
    run = tmp_path / "run"
    recorded_log(run)
    assert main(["plot", str(run)]) == 0
    img = decoded(run / "curves.png")
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert has(img, C0, 100) and has(img, C1, 100)  # two series per panel drawn
    assert (img < 250).any(axis=2).mean() > 0.03  # not blank
    assert main(["plot", str(run), "--out", str(tmp_path / "other.png")]) == 0
    assert decoded(tmp_path / "other.png").shape == img.shape
    assert "not a pygan run" in cli_error(["plot", str(tmp_path)], capsys)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text("{}\n")
    assert "unreadable log" in cli_error(["plot", str(tmp_path / "bad")], capsys, 1)


def test_a_run_refreshes_its_curves_each_epoch(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--train-size", "1024", "--batch-size", "128", "--out", str(out)]) == 0
    img = decoded(out / "curves.png")
    assert has(img, C0, 100) and img.shape[1] > 600
    scatter = decoded(out / "samples" / "epoch_002.png")
    assert has(scatter, plot.SAMPLE_RGB, 50) and has(scatter, plot.CENTRE_RGB, 10)


def test_conditional_toy_samples_are_coloured_by_class():
    means, sigma = data.toy_modes("ring8")
    rng = np.random.default_rng(0)
    pts = means[rng.integers(0, 8, 400)] + rng.normal(0, sigma, (400, 2))
    img = plot.scatter(pts, means, sigma, title="cgan", labels=np.arange(400) % 2)
    assert has(img, C0, 30) and has(img, C1, 30) and not has(img, plot.SAMPLE_RGB, 5)


def test_class_columns_are_labelled():
    grid = plot.image_grid(np.random.default_rng(0).random((20, 1, 8, 8)), columns=10)
    pic = plot.label_columns(grid, 10, [f"class {k}" for k in range(10)], "cgan, epoch 1")
    assert pic.ndim == 3 and pic.shape[0] > grid.shape[0] and pic.shape[1] >= grid.shape[1]
    assert (pic < 60).all(axis=2).sum() > (grid < 60).sum()  # the labels' dark text beside the grid's pixels


def test_sample_class_grid_and_latent_walks(tmp_path, capsys, monkeypatch):
    from helpers import tiny_mnist_folder

    monkeypatch.setenv("PYGAN_DATA", str(tiny_mnist_folder(tmp_path / "data", 64)))
    run = tmp_path / "cgan"
    assert main(["train", "--model", "cgan", "--dataset", "mnist", "--epochs", "1", "--batch-size", "16",
                 "--eval-samples", "200", "--out", str(run)]) == 0
    assert main(["sample", str(run), "--n", "12", "--class", "3", "--grid", "4", "--out", str(tmp_path / "c3.png")]) == 0
    assert decoded(tmp_path / "c3.png").shape[:2] == (3 * 30 * 2 + 4, 4 * 30 * 2 + 4)  # 3 rows of 4, unlabelled
    assert main(["sample", str(run), "--n", "3", "--interpolate", "5", "--out", str(tmp_path / "walk.png")]) == 0
    assert decoded(tmp_path / "walk.png").shape[:2] == (3 * 30 * 2 + 4, 5 * 30 * 2 + 4)  # a walk a row
    assert main(["sample", str(run), "--n", "2", "--interpolate", "4", "--out", str(tmp_path / "walk.gif")]) == 0
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 6  # forth and back
    assert "classes 0 .. 9" in cli_error(["sample", str(run), "--class", "10"], capsys)
    assert "a .gif is written for --interpolate" in cli_error(["sample", str(run), "--out", str(tmp_path / "x.gif")], capsys)
    toy = tmp_path / "toy"
    assert main(["train", "--epochs", "1", "--train-size", "1024", "--batch-size", "128", "--out", str(toy)]) == 0
    assert "not conditional" in cli_error(["sample", str(toy), "--class", "1"], capsys)
    assert "--interpolate is for image models" in cli_error(["sample", str(toy), "--interpolate", "4"], capsys)
    # the truncation trick: a cgan's z drawn as psi * z, in samples and latent walks alike (cells of
    # 56 pixels, 4 pixels of separator between them)
    def cells(png):
        picture = decoded(png)
        return [picture[4 : 60, 4 + 60 * c : 60 * (c + 1)] for c in range(2)]

    for psi, same in (("0", True), ("1", False)):
        assert main(["sample", str(run), "--n", "4", "--class", "3", "--grid", "4", "--truncation", psi,
                     "--out", str(tmp_path / "t.png")]) == 0
        a, b = cells(tmp_path / "t.png")
        assert np.array_equal(a, b) == same and a.std() > 0
        assert main(["sample", str(run), "--n", "2", "--interpolate", "3", "--truncation", psi,
                     "--out", str(tmp_path / "w.png")]) == 0
        a, b = cells(tmp_path / "w.png")
        assert np.array_equal(a, b) == same  # psi = 0: every step of a walk is the mean z


def _events(folder):
    """Every event of the TensorBoard files in ``folder``, read as TensorBoard reads them (records of
    a length, its masked CRC, the bytes, their masked CRC), decoded with tensorboardX's protos."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        blob, pos = path.read_bytes(), 0
        while pos < len(blob):
            (n,) = struct.unpack_from("<Q", blob, pos)
            out.append((path.name, Event.FromString(blob[pos + 12 : pos + 12 + n])))
            pos += 12 + n + 4
        assert pos == len(blob), f"{path}: a record runs past the end"
    return out


def test_tensorboard_scalars_and_images(tmp_path, capsys):
    """--tensorboard writes the step and epoch rows as scalars and each epoch's picture as an
    image; a resumed run tells TensorBoard to drop what the first wrote past its checkpoint."""
    import io as pyio

    from PIL import Image

    out = tmp_path / "run"
    argv = ["train", "--epochs", "2", "--train-size", "2048", "--batch-size", "128", "--log-every", "4",
            "--eval-samples", "500", "--tensorboard", "--out", str(out)]
    assert main(argv) == 0
    events = [e for _, e in _events(out / "tensorboard")]
    scalars: dict[str, list[tuple[int, float]]] = {}
    images = []
    for e in events:
        for v in e.summary.value:
            if v.HasField("image"):
                images.append((e.step, v.tag, v.image))
            else:
                scalars.setdefault(v.tag, []).append((e.step, v.simple_value))
    steps = [r for r in read_log(out, "step")]
    assert [s for s, _ in scalars["step/d_loss"]] == [r["steps"] for r in steps] == [4, 8, 12, 16, 20, 24, 28, 32]
    np.testing.assert_allclose([v for _, v in scalars["step/d_loss"]], [r["d_loss"] for r in steps], rtol=1e-6)
    epochs = read_log(out)
    assert [s for s, _ in scalars["epoch/modes_covered"]] == [r["steps"] for r in epochs] == [16, 32]
    assert [v for _, v in scalars["epoch/modes_covered"]] == [r["modes_covered"] for r in epochs]
    assert "step/seconds" not in scalars and "epoch/kind" not in scalars
    assert [(s, t) for s, t, _ in images] == [(16, "samples"), (32, "samples")]
    with Image.open(out / "samples" / "epoch_002.png") as png:
        shown = np.asarray(png.convert("RGB"))
    decoded = np.asarray(Image.open(pyio.BytesIO(images[-1][2].encoded_image_string)).convert("RGB"))
    np.testing.assert_array_equal(decoded, shown)
    capsys.readouterr()
    assert main(["train", "--resume", "--epochs", "3", "--tensorboard", "--out", str(out)]) == 0
    files = sorted({name for name, _ in _events(out / "tensorboard")})
    assert len(files) == 2
    resumed = [e for name, e in _events(out / "tensorboard") if name == files[-1]]
    restart = [e for e in resumed if e.HasField("session_log")]
    assert restart and restart[0].step == 32  # TensorBoard's purge: events past step 32 of older files are dropped


def test_tensorboard_without_its_writer_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    err = cli_error(["train", "--epochs", "1", "--tensorboard", "--out", str(tmp_path / "r")], capsys, 1)
    assert "pip install 'pygan[tensorboard]'" in err
