"""pygan's own image classifiers: the feature space of the classifier metrics (FID, KID,
precision/recall, classifier score) for MNIST and Fashion-MNIST.

One small convolutional network per dataset (three stride-2 convolutions, a 128-unit feature
layer, a 10-way head), trained by ``python -m pygan.classifier --data DIR`` from the standard IDX
files on training digits 0-59,999 and shipped in the package as one checkpoint file
(``classifiers.pygan``: pygan's own format, a CRC-32 per tensor, no pickle; weights rounded to
float16). Inputs are images
in [0, 1], ``(n, 1, 28, 28)`` or ``(n, 784)``.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import data, io
from .autograd import no_grad
from .backend import to_numpy, use_backend
from .losses import cross_entropy
from .nn import Conv2d, Dense, Dropout, Flatten, Module, Sequential
from .optim import Adam

#: The datasets that have a shipped classifier.
CLASSIFIER_DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist")
#: The shipped weights of both classifiers, and the file's SHA-256 (checked by the tests).
WEIGHTS: Path = Path(__file__).with_name("classifiers.pygan")
WEIGHTS_SHA256 = "113e26f08c417b82ec0fe77ac07b6f89ad8b6e4fb04139b57231fedc7f6eb08b"
#: Width of the feature layer the metrics are computed in.
FEATURES = 128
#: Training recipes of the shipped classifiers (``python -m pygan.classifier``): random shifts
#: of up to 2 pixels help digits; clothes get horizontal flips instead (a shifted garment is
#: often another class's silhouette, and shifts cost Fashion-MNIST accuracy here).
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {"epochs": 12, "batch_size": 128, "lr": 1e-3, "shift": 2, "flip": False, "seed": 0},
    "fashion-mnist": {"epochs": 15, "batch_size": 128, "lr": 1e-3, "shift": 0, "flip": True, "seed": 0},
}


class Classifier(Module):
    """A 28x28 greyscale classifier: ``body`` maps images to ``FEATURES`` features (after ReLU),
    ``head`` maps features to 10 class logits."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        s = lambda: int(rng.integers(2**31))  # noqa: E731 - one seed per layer
        self.body = Sequential(
            Conv2d(1, 32, 4, stride=2, padding=1, act="relu", seed=s()),  # 14x14
            Conv2d(32, 64, 4, stride=2, padding=1, act="relu", seed=s()),  # 7x7
            Conv2d(64, 128, 3, stride=2, padding=1, act="relu", seed=s()),  # 4x4
            Flatten(),
            Dropout(0.3, seed=s()),
            Dense(128 * 4 * 4, FEATURES, act="relu", seed=s()),
        )
        self.head = Sequential(Dropout(0.3, seed=s()), Dense(FEATURES, 10, seed=s()))

    def forward(self, x: Any) -> Any:
        return self.head(self.body(x))

    def _batches(self, images: np.ndarray, fn: Any, batch: int = 500) -> np.ndarray:
        x = _images("images", images)
        was = self.training
        self.eval()
        out = []
        try:
            with use_backend("cpu"), no_grad():
                for i in range(0, len(x), batch):
                    out.append(to_numpy(fn(_normalise(x[i : i + batch])).data))
        finally:
            self.train(was)
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))

    def features(self, images: np.ndarray) -> np.ndarray:
        """The ``(n, FEATURES)`` feature vectors of images in [0, 1] (float64; evaluation mode)."""
        return self._batches(images, self.body)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The ``(n, 10)`` class logits of images in [0, 1] (float64; evaluation mode)."""
        return self._batches(images, self)

    def head_logits(self, features: np.ndarray) -> np.ndarray:
        """The class logits of feature vectors from :meth:`features` (float64)."""
        f = np.ascontiguousarray(features, dtype=np.float32)
        if f.ndim != 2 or f.shape[1] != FEATURES:
            raise ValueError(f"features: expected (n, {FEATURES}), got shape {f.shape}")
        was = self.training
        self.eval()
        try:
            with use_backend("cpu"), no_grad():
                return to_numpy(self.head(f).data).astype(np.float64)
        finally:
            self.train(was)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax class probabilities ``p(y | x)``, ``(n, 10)``."""
        return softmax(self.logits(images))

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of ``images`` whose most likely class is their label."""
        return float((self.logits(images).argmax(axis=1) == np.asarray(labels)).mean())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _images(name: str, images: Any) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(len(x), 1, 28, 28)
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"{name}: expected (n, 1, 28, 28) or (n, 784) images, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected real-valued pixels, got dtype {x.dtype}")
    if x.dtype.kind in "iu":
        raise TypeError(f"{name}: expected float pixels in [0, 1], got dtype {x.dtype} (divide by 255)")
    x = x.astype(np.float32)
    if len(x) and not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    return x


def _normalise(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x * 2.0 - 1.0, dtype=np.float32)


def _shift(x: np.ndarray, rng: np.random.Generator, pixels: int) -> np.ndarray:
    """Each image moved by its own random offset of up to ``pixels`` on each axis (zero fill)."""
    if pixels == 0:
        return x
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pixels, pixels), (pixels, pixels)))
    dy, dx = rng.integers(0, 2 * pixels + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


def train_classifier(
    train_x: np.ndarray,
    train_y: np.ndarray,
    epochs: int = 12,
    batch_size: int = 128,
    lr: float = 1e-3,
    shift: int = 0,
    flip: bool = False,
    seed: int = 0,
    log: Any = None,
) -> Classifier:
    """Train a :class:`Classifier` with Adam (learning rate decayed linearly to zero), dropout,
    random shifts of up to ``shift`` pixels and (``flip``) random horizontal flips, on the ``cpu``
    backend; ``log(epoch, loss)`` is called after each epoch when given."""
    x = _images("train_x", train_x)
    y = np.asarray(train_y).astype(np.int64)
    if y.shape != (len(x),):
        raise ValueError(f"train_y: expected {len(x)} labels, got shape {y.shape}")
    rng = np.random.default_rng(seed)
    with use_backend("cpu"):
        net = Classifier(seed=seed)
        opt = Adam(net.parameters(), lr=lr)
        steps = epochs * (len(x) // batch_size)
        step = 0
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            total = 0.0
            for i in range(len(x) // batch_size):
                idx = order[i * batch_size : (i + 1) * batch_size]
                opt.lr = lr * (1.0 - step / steps)
                opt.zero_grad()
                batch = _shift(x[idx], rng, shift)
                if flip:
                    batch = np.where(rng.random(len(idx))[:, None, None, None] < 0.5, batch[..., ::-1], batch)
                loss = cross_entropy(net(_normalise(batch)), y[idx])
                loss.backward()
                opt.step()
                total += float(loss.item())
                step += 1
            if log is not None:
                log(epoch + 1, total / max(1, len(x) // batch_size))
    net.eval()
    return net


def round_weights(net: Classifier) -> Classifier:
    """Round ``net``'s weights to float16 in place (what the shipped file stores: half the size;
    the shipped classifiers' accuracies are measured after this rounding)."""
    for p in net.parameters():
        p.data[...] = p.data.astype(np.float16)
    return net


def save_classifiers(path: str | Path, nets: dict[str, Classifier], meta: dict[str, Any]) -> None:
    """Write classifiers (by dataset name) into one checkpoint file, their weights as float16."""
    tensors = {f"{name}.{k}": np.asarray(v).astype(np.float16) for name, net in nets.items()
               for k, v in net.state_dict().items()}
    io.save(path, tensors, meta)


@functools.lru_cache(maxsize=None)
def _load_all(path: str) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    tensors, meta = io.load(path)
    by_name: dict[str, dict[str, np.ndarray]] = {}
    for k, v in tensors.items():
        name, _, rest = k.partition(".")
        by_name.setdefault(name, {})[rest] = v
    return by_name, meta


def load(dataset: str, path: str | Path | None = None) -> Classifier:
    """The shipped classifier of ``dataset`` (``mnist`` or ``fashion-mnist``), in evaluation mode."""
    if dataset not in CLASSIFIER_DATASETS:
        raise ValueError(f"dataset: no classifier for {dataset!r}; there is one for {', '.join(CLASSIFIER_DATASETS)}")
    by_name, _ = _load_all(str(path or WEIGHTS))
    if dataset not in by_name:
        raise io.CheckpointError(f"{path or WEIGHTS}: holds no {dataset} classifier")
    with use_backend("cpu"):
        net = Classifier(seed=0)
    try:
        net.load_state_dict({k: v.astype(np.float32) for k, v in by_name[dataset].items()})
    except (KeyError, ValueError) as e:
        raise io.CheckpointError(f"{path or WEIGHTS}: the {dataset} classifier does not fit: {e}") from None
    return net.eval()


def info(path: str | Path | None = None) -> dict[str, Any]:
    """The metadata stored with the classifiers: recipe, test accuracies, training time."""
    return dict(_load_all(str(path or WEIGHTS))[1])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pygan.classifier --data DIR [--out FILE]``: train and save both classifiers."""
    parser = argparse.ArgumentParser(prog="python -m pygan.classifier", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="folder with the IDX files (default: $PYGAN_DATA)")
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args(argv)
    nets, meta = {}, {"recipes": RECIPES, "accuracy": {}, "seconds": {}}
    for name in CLASSIFIER_DATASETS:
        start = time.perf_counter()
        x, y = data.load_images(name, "train", args.data)
        tx, ty = data.load_images(name, "test", args.data)
        net = round_weights(train_classifier(x, y, **RECIPES[name],
                                             log=lambda e, l, n=name: print(f"{n} epoch {e}: loss {l:.4f}", flush=True)))
        acc = net.accuracy(tx, ty)
        meta["accuracy"][name] = acc
        meta["seconds"][name] = round(time.perf_counter() - start, 1)
        print(f"{name}: test accuracy {100 * acc:.2f}% ({meta['seconds'][name]} s)", flush=True)
        nets[name] = net
    save_classifiers(args.out, nets, meta)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
