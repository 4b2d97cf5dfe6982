"""Data: the IDX (MNIST, Fashion-MNIST) reader and loader, folders of one's own PNG/JPEG images,
the toy distributions of the GAN literature, and seeded minibatches."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from ._files import open_regular
from .backend import _checks as C

TOY_DATASETS: tuple[str, ...] = ("ring8", "grid25", "gauss1d")
IMAGE_DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist")
DATASETS: tuple[str, ...] = TOY_DATASETS + IMAGE_DATASETS
#: A dataset named ``folder:PATH`` is the PNG/JPEG images in the folder PATH (:func:`load_folder`).
FOLDER_PREFIX = "folder:"

#: IDX element types by the third magic byte: (NumPy big-endian dtype).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: Refuse headers claiming more than this many bytes of data (MNIST train images: 47 MB).
MAX_IDX_BYTES = 1 << 31
#: Deflate expands at most 1032:1, so a gzipped file of n bytes holds at most this times n.
_DEFLATE_MAX_RATIO = 1032

_FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}

#: Where the datasets' authors (or the mirror common loaders use) publish the files.
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

#: Checksums of the published .gz files: ("sha256" or "md5", hex). The one MD5 is the checksum
#: Fashion-MNIST's authors publish for a file whose SHA-256 we could not verify here.
CHECKSUMS = {
    ("mnist", "train-images-idx3-ubyte.gz"): ("sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    ("mnist", "train-labels-idx1-ubyte.gz"): ("sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    ("mnist", "t10k-images-idx3-ubyte.gz"): ("sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    ("mnist", "t10k-labels-idx1-ubyte.gz"): ("sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ("fashion-mnist", "train-images-idx3-ubyte.gz"): ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    ("fashion-mnist", "train-labels-idx1-ubyte.gz"): ("sha256", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    ("fashion-mnist", "t10k-images-idx3-ubyte.gz"): ("sha256", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"): ("sha256", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
}


class DataError(ValueError):
    """A data file is missing, corrupt or not what its name says; the message names the file."""


# ---------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------
def _read_exact(f: BinaryIO, n: int, path: Path, what: str) -> bytes:
    """Read ``n`` bytes in chunks (so a lying header cannot make us allocate more than the file holds)."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = f.read(min(n - got, 1 << 22))
        if not chunk:
            raise DataError(f"{path}: truncated IDX file: {what} needs {n} bytes, the file ends after {got}")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped or raw, decided by its first bytes) into a native-endian array.

    The header is checked (two zero bytes, a known type code, 1 to 4 dimensions), the data size it
    claims must stay under ``MAX_IDX_BYTES`` and be present in full, and nothing may follow it.
    Every problem raises :class:`DataError` naming the file.
    """
    p = Path(path)
    try:
        raw, size = open_regular(p)
    except OSError as e:
        raise DataError(f"{p}: cannot open: {e.strerror or e}") from None
    with raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[assignment]
        try:
            head = _read_exact(f, 4, p, "the magic number")
            if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES or not 1 <= head[3] <= 4:
                raise DataError(f"{p}: not an IDX file (magic bytes {head.hex()}; expected 0000TTNN with a known type TT)")
            dtype = np.dtype(_IDX_TYPES[head[2]])
            ndim = head[3]
            dims = tuple(int(d) for d in np.frombuffer(_read_exact(f, 4 * ndim, p, "the dimensions"), dtype=">u4"))
            nbytes = int(np.prod(dims, dtype=np.float64)) * dtype.itemsize
            if nbytes > MAX_IDX_BYTES:
                raise DataError(f"{p}: header claims shape {dims} ({nbytes} bytes), more than the {MAX_IDX_BYTES}-byte limit")
            holds = size * _DEFLATE_MAX_RATIO if gz else size - 4 - 4 * ndim
            if nbytes > holds:
                raise DataError(f"{p}: truncated IDX file: header claims shape {dims} ({nbytes} bytes), more than the {size}-byte file can hold")
            body = _read_exact(f, nbytes, p, f"shape {dims}")
            if f.read(1):
                raise DataError(f"{p}: trailing bytes after the {nbytes}-byte body of shape {dims}")
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DataError(f"{p}: corrupt gzip stream: {e}") from None
    return np.frombuffer(body, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzipped when ``compress`` or the name ends in .gz)."""
    a = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    if a.dtype not in codes or not 1 <= a.ndim <= 4:
        raise ValueError(f"array: IDX holds 1-4 dimensional uint8/int8/int16/int32/float32/float64, got {a.dtype} {a.shape}")
    header = bytes([0, 0, codes[a.dtype], a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    payload = header + a.astype(a.dtype.newbyteorder(">")).tobytes()
    p = Path(path)
    if compress if compress is not None else p.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    p.write_bytes(payload)


# ---------------------------------------------------------------------------------------------
# MNIST-format datasets
# ---------------------------------------------------------------------------------------------
def data_folder(folder: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``folder`` if given, else ``$PYGAN_DATA``, else ``~/.cache/pygan``."""
    if folder is not None:
        return Path(folder)
    env = os.environ.get("PYGAN_DATA")
    return Path(env) if env else Path.home() / ".cache" / "pygan"


def _dataset_folder(name: str, folder: Path) -> Path:
    if name == "fashion-mnist" and (folder / "fashion-mnist").is_dir():
        return folder / "fashion-mnist"
    return folder


def verify_checksum(path: Path, name: str, filename: str) -> None:
    """Compare a file's digest with the published one; :class:`DataError` naming the file if it differs."""
    kind, expected = CHECKSUMS[(name, filename)]
    h = hashlib.new(kind)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != expected:
        raise DataError(f"{path}: {kind} {h.hexdigest()} differs from the published {expected}")


def download(name: str, folder: str | os.PathLike[str] | None = None, base_url: str | None = None) -> Path:
    """Fetch the four files of ``name`` into the data folder (atomically, checksums verified).

    Files already present are kept. Without a network this raises :class:`DataError` saying where
    to put the files by hand. ``base_url`` overrides the mirror (any URL urllib opens, file:// too).
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"name: unknown dataset {name!r}; expected one of {', '.join(IMAGE_DATASETS)}")
    root = data_folder(folder)
    target = root / "fashion-mnist" if name == "fashion-mnist" else root
    target.mkdir(parents=True, exist_ok=True)
    url = base_url or MIRRORS[name]
    for filename in _FILES.values():
        dest = target / filename
        if dest.exists():
            continue
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{filename}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url.rstrip("/") + "/" + filename, timeout=60) as src:
                shutil.copyfileobj(src, out)
            verify_checksum(Path(tmp), name, filename)
            os.replace(tmp, dest)
        except (urllib.error.URLError, OSError) as e:
            raise DataError(
                f"{dest}: could not download {filename} from {url} ({e}); put the standard {name} files "
                f"({', '.join(_FILES.values())}) in {target} by hand, or point PYGAN_DATA at a folder that has them"
            ) from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def load_images(
    name: str = "mnist", split: str = "train", folder: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, 28, 28)`` float32 in [0, 1] and labels ``(N,)`` int64 of MNIST or Fashion-MNIST.

    Looks in ``folder`` (else ``$PYGAN_DATA``, else ``~/.cache/pygan``; Fashion-MNIST also in its
    ``fashion-mnist/`` subfolder) for the standard file names; a missing file raises
    :class:`DataError` saying where to put it (or call :func:`download`).
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"name: unknown dataset {name!r}; expected one of {', '.join(IMAGE_DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    where = _dataset_folder(name, data_folder(folder))
    paths = {}
    for part in ("images", "labels"):
        filename = _FILES[(split, part)]
        p = where / filename
        if not p.exists() and (where / filename[:-3]).exists():
            p = where / filename[:-3]
        if not p.exists():
            raise DataError(
                f"{where / filename}: missing; put the standard {name} files there, set PYGAN_DATA to a folder "
                f"that has them, or run pygan.data.download({name!r})"
            )
        paths[part] = p
    images = read_idx(paths["images"])
    labels = read_idx(paths["labels"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{paths['images']}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{paths['labels']}: {labels.shape[0] if labels.ndim else 0} labels for {images.shape[0]} images")
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return x, labels.astype(np.int64)


def check_image_size(size: int) -> int:
    """An image side a model can be trained at: 28 (MNIST's own) or a power of two >= 8."""
    size = C.check_int("image_size", size, 1)
    if size != 28 and (size < 8 or size & (size - 1)):
        raise ValueError(f"image_size: expected 28 or a power of two >= 8, got {size}")
    return size


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """28x28 images ``(N, C, 28, 28)`` at side ``size``: padded with 2 background pixels to 32x32
    (StyleGAN's MNIST setting), then 2x bilinear upsampling up to ``size`` or 2x2 average pooling
    down to it. ``size = 28`` returns ``x``."""
    from .backend import reference as R

    size = check_image_size(size)
    if x.ndim != 4 or x.shape[2:] != (28, 28):
        raise ValueError(f"x: expected 28x28 images (N, C, 28, 28), got shape {x.shape}")
    if size == 28:
        return x
    out = np.ascontiguousarray(np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2))))
    while out.shape[2] < size:
        out = R.upsample2x_forward(out, "bilinear")
    while out.shape[2] > size:
        out = R.avg_pool2d_forward(out, 2)
    return out


def to_mnist_size(x: np.ndarray) -> np.ndarray:
    """Images made by :func:`resize_images` back at 28x28 (what the classifiers and the metrics
    read): pooled or upsampled to 32x32, then the 2-pixel border cropped."""
    from .backend import reference as R

    if x.ndim != 4 or x.shape[2] != x.shape[3]:
        raise ValueError(f"x: expected square images (N, C, S, S), got shape {x.shape}")
    if x.shape[2] == 28:
        return x
    out = np.ascontiguousarray(x)
    while out.shape[2] > 32:
        out = R.avg_pool2d_forward(out, 2)
    while out.shape[2] < 32:
        out = R.upsample2x_forward(out, "bilinear")
    return np.ascontiguousarray(out[:, :, 2:30, 2:30])


# ---------------------------------------------------------------------------------------------
# folders of images
# ---------------------------------------------------------------------------------------------
#: The file names a folder dataset reads (case-insensitive); other files are skipped.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
#: Refuse one image of more pixels than this (a decompression bomb), before it is decoded.
MAX_IMAGE_PIXELS = 1 << 26
#: Refuse a folder whose images would take more float32 values than this once loaded (2 GiB).
MAX_FOLDER_VALUES = 1 << 29
#: A folder dataset holds out this fraction of its images (at least 2, at most 2,000): half to
#: choose the Parzen bandwidth (and to score each epoch), half to score ``pygan eval``.
HELD_OUT_FRACTION = 0.1
MAX_HELD_OUT = 2000
#: The fewest images a folder dataset takes (a few must be held out to score the model).
MIN_FOLDER_IMAGES = 10
#: The held-out images are drawn by a permutation of this fixed seed, the same for every run.
SPLIT_SEED = 20140610
#: ITU-R 601-2 luma, Pillow's own weights for RGB -> greyscale.
_LUMA = np.array([0.299, 0.587, 0.114])


def folder_path(dataset: str) -> Path | None:
    """The folder of a ``folder:PATH`` dataset name, else None (a built-in dataset)."""
    return Path(dataset[len(FOLDER_PREFIX) :]) if dataset.startswith(FOLDER_PREFIX) else None


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The PNG/JPEG files in ``folder`` and its subfolders, by path (hidden files and folders
    skipped); :class:`DataError` if the folder is missing or holds none."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: {'not a folder' if root.exists() else 'no such folder'}")
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(top) / f for f in sorted(files) if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
    if not found:
        raise DataError(f"{root}: holds no {'/'.join(s[1:].upper() for s in IMAGE_SUFFIXES)} files")
    return found


def _square(path: Path, size: int) -> np.ndarray:
    """One image file as ``(size, size, 3)`` uint8: its orientation tag applied, transparency
    composited over black, the largest centred square cropped and resized (Lanczos)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        f, _ = open_regular(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        with f, Image.open(f, formats=("PNG", "JPEG")) as img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS} an image may have")
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, still at least size
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img.convert("RGBA"))
            img = img.convert("RGB")
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            out = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(out, dtype=np.uint8)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a PNG or JPEG image (Pillow cannot identify its contents)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable PNG or JPEG image ({type(e).__name__}: {str(e)[:200]})") from None


def load_folder(folder: str | os.PathLike[str], size: int, channels: int | None = None) -> np.ndarray:
    """The PNG/JPEG images of ``folder`` (and its subfolders, in path order) as float32
    ``(N, C, size, size)`` in [0, 1]: each centre-cropped to a square and resized to ``size``.

    ``channels``: 1 (greyscale, ITU-R 601 luma), 3 (RGB), or None: 1 if every image is grey
    (equal red, green and blue), else 3. Raises :class:`DataError` naming the file for anything
    unreadable, and for a folder too large to hold in memory (``MAX_FOLDER_VALUES``).
    """
    size = check_image_size(size)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels: expected 1, 3 or None, got {channels!r}")
    files = image_files(folder)
    if len(files) * (channels or 3) * size * size > MAX_FOLDER_VALUES:
        raise DataError(f"{folder}: {len(files)} images of {size}x{size} exceed the {MAX_FOLDER_VALUES} values "
                        "pygan holds in memory; use fewer images or a smaller --image-size")
    rgb = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        rgb[i] = _square(path, size)
    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    if (channels or (1 if grey else 3)) == 1:
        x = (rgb[..., 0] if grey else np.clip(np.round(rgb @ _LUMA), 0, 255))[:, None]
    else:
        x = rgb.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)


def split_folder(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A folder dataset's images as (training, validation, test): ``HELD_OUT_FRACTION`` of them
    (at least 2, at most ``MAX_HELD_OUT``), drawn by a fixed permutation, are held out and
    halved; the rest train. :class:`DataError` for fewer than ``MIN_FOLDER_IMAGES``."""
    n = len(x)
    if n < MIN_FOLDER_IMAGES:
        raise DataError(f"a folder dataset needs at least {MIN_FOLDER_IMAGES} images ({HELD_OUT_FRACTION:.0%} are held "
                        f"out to score the model), this one has {n}")
    held = min(MAX_HELD_OUT, max(2, round(n * HELD_OUT_FRACTION)))
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    train, validation, test = order[: n - held], order[n - held : n - held // 2], order[n - held // 2 :]
    return x[np.sort(train)], x[np.sort(validation)], x[np.sort(test)]


# ---------------------------------------------------------------------------------------------
# toy distributions
# ---------------------------------------------------------------------------------------------
def toy_modes(name: str) -> tuple[np.ndarray, float]:
    """Mode centres and per-mode standard deviation of a toy mixture.

    ``ring8``: 8 Gaussians with means on the unit circle, sigma 0.01; ``grid25``: 25 Gaussians with
    means {-4,-2,0,2,4}^2, sigma 0.05 (both as the PacGAN paper defines them); ``gauss1d``: the
    1-D Gaussian N(4, 0.5) of the 2014 paper's Figure 1 style illustration (one mode).
    """
    if name == "ring8":
        angles = 2 * np.pi * np.arange(8) / 8
        return np.stack([np.cos(angles), np.sin(angles)], axis=1), 0.01
    if name == "grid25":
        g = np.arange(-4.0, 5.0, 2.0)
        return np.array([(a, b) for a in g for b in g]), 0.05
    if name == "gauss1d":
        return np.array([[4.0]]), 0.5
    raise ValueError(f"name: unknown toy dataset {name!r}; expected one of {', '.join(TOY_DATASETS)}")


def toy_samples(name: str, n: int, seed: int | None = None, dtype: type = np.float32) -> np.ndarray:
    """``n`` samples of a toy mixture, modes picked uniformly."""
    return toy_labelled(name, n, seed, dtype)[0]


def toy_labelled(
    name: str, n: int, seed: int | None = None, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of a toy mixture and the index of the mode each came from."""
    n = C.check_int("n", n, 0)
    means, sigma = toy_modes(name)
    rng = np.random.default_rng(seed)
    which = rng.integers(len(means), size=n)
    x = (means[which] + sigma * rng.standard_normal((n, means.shape[1]))).astype(dtype)
    return x, which.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# batching
# ---------------------------------------------------------------------------------------------
def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of ``n`` examples in ``epoch`` of a run seeded ``seed`` (the same on resume)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def minibatches(data: np.ndarray, batch_size: int, seed: int | None = None, drop_last: bool = True) -> Iterator[np.ndarray]:
    """One epoch of shuffled minibatches (contiguous copies), reproducible from ``seed``."""
    batch_size = C.check_int("batch_size", batch_size, 1)
    order = np.random.default_rng(seed).permutation(len(data))
    stop = len(data) - (len(data) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield np.ascontiguousarray(data[order[start : start + batch_size]])
