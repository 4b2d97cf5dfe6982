"""The ``pygan`` command: ``train`` a GAN (progress bar, sample pictures, JSONL log, checkpoints,
``--resume``), ``sample`` from a checkpoint, and ``eval`` a checkpoint with the literature's metrics."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import _core, board, classifier, data, distributed, io, metrics, models, objectives, plot, recipes, translation
from ._files import atomic_write
from .backend import BACKENDS, _checks, backend_info, get_backend, set_backend, to_numpy
from .autograd import no_grad
from .gan import GAN, PRIORS, TrainingDiverged, latent_path
from .lapgan import LAPGAN
from .optim import SGD, Adam, Optimizer, RMSprop, Schedule

class UsageError(Exception):
    """A mistake in the command line (a flag's value, a file it names): one line, exit status 2."""


class RunFailed(Exception):
    """A run that started and could not finish (diverged, a seed failed): one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the command and the flag (exit status 2)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """As argparse's, and a typed single-value flag must hold one value of its type: argparse
        passes ``--flag=--`` through unconverted, as a list."""
        parsed, extra = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if action.type is not None and action.nargs is None and isinstance(value, list):
                self.error(f"argument {action.option_strings[0]}: expected one value, got {value!r}")
        return parsed, extra


CHECKPOINT, BEST, LEGACY_NAMES = recipes.CHECKPOINT, recipes.BEST, recipes.LEGACY_NAMES
CHECKPOINT_HELP = f"a checkpoint file, or a run folder (its {BEST}, else its {CHECKPOINT})"
#: Collapse warnings: the discriminator's accuracy on both sides at least this (epoch mean) ...
COLLAPSE_ACCURACY = 0.99
#: ... or generated samples' mean pairwise distance below this fraction of the real data's.
COLLAPSE_DIVERSITY = 0.3
#: The toy-data defaults (with the model's batch of 256), chosen so that `pygan train` covers the
#: ring's 8 modes sharply in about a minute: PacGAN packing of 2 and two discriminator steps per
#: generator step (the ring, seeds 0-5, 50 epochs of batch 128, high-quality share: pack 4 with one
#: step 75.9%, with two 92.4%; pack 2 with two 94.7%, at batch 256 95.4%; pack 1 loses modes;
#: README, "Results").
TOY_EPOCHS = 50
TOY_PACK = 2
TOY_D_STEPS = 2
# Per-dataset training defaults where the ring's do not carry over (README, "Results"): the grid of
# 25 needs many more epochs and a leaky-ReLU generator to cover its modes, and keeps pack 4 with one
# discriminator step (with the ring's pack 2 and two steps it lost modes: 16 and 6 of 25 after 100
# epochs, seeds 0-1).
TOY_SETTINGS: dict[str, dict[str, Any]] = {"grid25": {"epochs": 300, "g_act": "leaky_relu", "pack": 4, "d_steps": 1}}
LOG = "metrics.jsonl"
#: Each run's full resolved configuration (every flag, defaults filled in), rewritten on --resume.
CONFIG_FILE = "config.json"
#: The files that make a folder a run's: a new run refuses such a folder unless --overwrite.
RUN_FILES = (CHECKPOINT, BEST, *LEGACY_NAMES.values(), LOG, CONFIG_FILE)
#: Flags --resume may change; any other that differs from the checkpoint's configuration is refused.
RESUME_FREE = frozenset({"epochs", "backend", "threads", "out", "resume", "data", "config", "seeds", "jobs", "log_every",
                         "tensorboard", "distributed"})
#: The models --distributed trains (the GAN trainer's own; the others keep per-example state,
#: such as CycleGAN's pool of fakes, that is not yet shared across ranks).
DISTRIBUTED_MODELS = ("mlp", "paper-mlp", "cgan", "dcgan", "stylegan")
#: The data-parallel ranks of a --distributed run in this process (None otherwise).
_GROUP: distributed.Group | None = None
#: The run folder's subfolder of TensorBoard event files (``--tensorboard``).
TENSORBOARD = "tensorboard"
#: The step statistics the progress bar (the first four) and the epoch line show, when present:
#: (key, label, format). Each objective reports its own (pygan.objectives).
STAT_LABELS: tuple[tuple[str, str, str], ...] = (
    ("d_loss", "d_loss", ".3f"), ("g_loss", "g_loss", ".3f"), ("d_x", "D(x)", ".2f"), ("d_g_z", "D(G(z))", ".2f"),
    ("critic_gap", "critic gap", ".3f"), ("gp", "gp", ".3f"), ("r1", "r1", ".3f"), ("mse", "mse", ".4f"),
    ("feature_mse", "feature mse", ".4f"), ("adversarial", "adversarial", ".3f"), ("cycle", "cycle L1", ".4f"),
    ("identity", "identity L1", ".4f"),
)


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------
def whole(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number in ``lo .. hi`` (argparse names the flag when it is not)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo} .. {hi}, got {v}")
        return v

    return parse


def real(lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval from ``lo`` to ``hi`` (ends open as asked)."""
    span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open or hi == math.inf else ']'}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number in {span}, got {text}")
        return v

    return parse


def dataset_name(text: str) -> str:
    """An argparse type: a built-in dataset's name, or ``folder:PATH`` for an existing folder
    (kept as an absolute path, so that a resumed or seeded run finds it from anywhere)."""
    folder = data.folder_path(text)
    if folder is None:
        if text not in data.DATASETS:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(data.DATASETS)} or folder:PATH, got {text!r}")
        return text
    if not text[len(data.FOLDER_PREFIX) :].strip():
        raise argparse.ArgumentTypeError("folder:PATH needs a folder after 'folder:'")
    folder = folder.expanduser()  # the shell leaves a ~ after "folder:" as it is
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    return data.FOLDER_PREFIX + str(folder.resolve())


#: Bounds of the command's counts: beyond them a value is a typo, not a plan (and would run for ever).
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 16
MAX_EXAMPLES = 10_000_000
SEED_MAX = 2**32 - 1
def _train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``pygan train``."""
    parser.add_argument("--model", choices=models.MODELS, default="mlp")
    parser.add_argument("--dataset", type=dataset_name, default="ring8", metavar="|".join(data.DATASETS) + "|folder:PATH",
                        help="a built-in dataset, or folder:PATH, the PNG/JPEG images in PATH and its subfolders "
                             "(centre-cropped and resized to --image-size; 10%% held out to score the model)")
    parser.add_argument("--epochs", type=whole(1, MAX_EPOCHS), default=None, help=f"default: {TOY_EPOCHS} on toy data (300 on grid25), 25 on images")
    parser.add_argument("--batch-size", type=whole(1, MAX_BATCH), default=None, help="default: the model's (256 toy, 64 DCGAN/MLP, 100 paper-mlp)")
    parser.add_argument("--loss", choices=_checks.GENERATOR_LOSSES + objectives.OBJECTIVES, default="non_saturating",
                        help="a 2014 generator loss, or wgan (weight clipping, RMSprop 5e-5, 5 critic steps), wgan-gp "
                             "(gradient penalty 10, Adam 1e-4 (0.5, 0.9), 5 critic steps), hinge (with spectral norm) "
                             "or lsgan (least squares)")
    parser.add_argument("--d-steps", type=whole(1, 100), default=None,
                        help=f"discriminator steps per generator step (k; default {TOY_D_STEPS} on toy data but grid25, else 1; 5 for wgan and wgan-gp)")
    parser.add_argument("--clip", type=real(0, lo_open=True), default=None, metavar="C",
                        help="wgan: clip the critic's parameters to [-C, C] after each step (default 0.01)")
    parser.add_argument("--gp-weight", type=real(0), default=None, metavar="LAMBDA",
                        help="wgan-gp: weight of the gradient penalty (default 10)")
    parser.add_argument("--r1", type=real(0), default=None, metavar="GAMMA",
                        help="R1 penalty gamma/2 E|grad D(x)|^2 on real data (Mescheder et al. 2018), any loss "
                             "(default 0, 1 for stylegan)")
    parser.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction, default=None,
                        help="spectral normalisation of the discriminator's weights (default: on for hinge only)")
    parser.add_argument("--pack", type=whole(1, 64), default=None, help=f"PacGAN: samples the discriminator judges at once (default: {TOY_PACK} on toy data, 4 on grid25, else 1)")
    parser.add_argument("--label-smoothing", type=real(0, 1, lo_open=True), default=1.0, metavar="TARGET", help="real target, e.g. 0.9 (one-sided)")
    parser.add_argument("--prior", choices=PRIORS, default=None, help="default: the model's")
    parser.add_argument("--lr", type=real(0, lo_open=True), default=None, help="default: the model's")
    parser.add_argument("--d-lr", type=real(0, lo_open=True), default=None,
                        help="the discriminator's own learning rate (TTUR, Heusel et al. 2017); default: the model's")
    parser.add_argument("--ema", type=real(0, 1, lo_open=True, hi_open=True), default=None, metavar="DECAY",
                        help="sample and evaluate with an exponential moving average of the generator's weights, "
                             "e.g. 0.999 (default: 0.999 for paper-mlp, else off)")
    parser.add_argument("--optimizer", choices=("adam", "sgd", "rmsprop"), default=None,
                       help="default: adam; sgd is paper-mlp's original schedule (lr 0.1, momentum 0.5 -> 0.7)")
    parser.add_argument("--norm", choices=("batch", "virtual"), default="batch", help="DCGAN generator normalisation")
    parser.add_argument("--task", choices=translation.CYCLE_TASKS, default=None,
                        help="cyclegan: domain B = MNIST digits colour-inverted (invert, the default: the true map "
                             "is known and scored) or Fashion-MNIST (fashion)")
    parser.add_argument("--identity", type=real(0), default=None, metavar="W",
                        help="cyclegan: identity-loss weight relative to the cycle loss (default 0; the paper: 0.5)")
    parser.add_argument("--image-size", type=whole(1, 1024), default=None, metavar="S",
                        help="dcgan, stylegan (any image model on folder:PATH): train at S x S (28, or a power of two "
                             ">= 8: digits padded to 32, then resized; default 28, 32 for stylegan)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="folder:PATH: greyscale (1) or RGB (3) (default: 1 if every image is grey, else 3)")
    parser.add_argument("--train-size", type=whole(1, MAX_EXAMPLES), default=None, help="examples to train on (toy default 25600; images: all 50,000)")
    parser.add_argument("--backend", choices=BACKENDS, default="cpu")
    parser.add_argument("--threads", type=whole(1, _core.MAX_THREADS), default=None, help="native-kernel threads (default: all cores)")
    parser.add_argument("--seed", type=whole(0, SEED_MAX), default=0)
    parser.add_argument("--data", default=None, help="folder with the MNIST files (default: $PYGAN_DATA)")
    parser.add_argument("--out", default="pygan-run", help="output folder (checkpoint, pictures, log)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --out (flags that contradict its configuration are refused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (without it, a folder holding a run is refused)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="a JSON or TOML file of flags by name (batch_size or batch-size = 64, ...); flags given "
                             "on the command line win; each run writes its full configuration to --out/" + "config.json")
    parser.add_argument("--eval-every", type=whole(1, MAX_EPOCHS), default=1, metavar="N",
                       help=f"evaluate (toy: mode coverage; images: validation Parzen) and keep {BEST} every N epochs")
    parser.add_argument("--log-every", type=whole(1, 10**9), default=None, metavar="N",
                        help="write a row of the step's statistics to metrics.jsonl every N steps (default: about 50 "
                             "rows an epoch); each epoch also writes its row")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel training under mpiexec: each rank trains on its share of every batch, the "
                             f"gradients averaged deterministically (needs mpi4py: {distributed.EXTRA})")
    parser.add_argument("--tensorboard", action="store_true",
                        help=f"also write the logged statistics and each epoch's samples as TensorBoard event files "
                             f"to --out/{TENSORBOARD} (needs tensorboardX: {board.EXTRA})")
    parser.add_argument("--eval-samples", type=whole(2, MAX_EXAMPLES), default=None, metavar="N",
                       help="generated samples of each evaluation (2,500 toy; 10,000 images)")
    parser.add_argument("--seeds", default=None, metavar="SPEC",
                       help="train one run per seed (e.g. 0-9 or 0,3,7) into --out/seed-S, in parallel processes, "
                            "and print the mean +- standard error of their final metrics")
    parser.add_argument("--jobs", type=whole(1, _core.MAX_THREADS), default=None, help="parallel runs of --seeds (default: one per core)")


def build_parser(train_defaults: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``pygan`` command (``train_defaults``: values from ``--config``)."""
    parser = _Parser(prog="pygan", description="Train, sample and evaluate small GANs.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="on an error, show Python's traceback too")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", parents=[common], help="train a GAN (default: the MLP GAN on the ring of 8 Gaussians)")
    _train_arguments(train)
    if train_defaults:
        train.set_defaults(**train_defaults)

    sample = sub.add_parser("sample", parents=[common], help="draw samples from a checkpoint into a PNG")
    sample.add_argument("checkpoint", help=CHECKPOINT_HELP)
    sample.add_argument("--n", type=whole(1, 100_000), default=100)
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--seed", type=whole(0, SEED_MAX), default=0)
    sample.add_argument("--backend", choices=BACKENDS, default="cpu")
    sample.add_argument("--truncation", type=real(0, 1), default=None, metavar="PSI",
                        help="the truncation trick, more typical and less varied samples (e.g. 0.7): stylegan pulls "
                             "styles towards the mean style, w_avg + PSI (w - w_avg); the others draw z as PSI z")
    sample.add_argument("--class", dest="label", type=whole(0, 999), default=None, metavar="K",
                        help="conditional models: samples of class K only")
    sample.add_argument("--grid", type=whole(1, 100), default=10, metavar="C", help="columns of an image grid (default 10)")
    sample.add_argument("--interpolate", type=whole(2, 64), default=None, metavar="STEPS",
                        help="image models: latent walks of STEPS points (slerp for a Gaussian prior), one a row, "
                             "as a PNG strip; an --out ending in .gif writes an animated GIF of the walks instead")
    sample.add_argument("--style-mixing", action="store_true",
                        help="stylegan: a style-mixing grid instead (row sources' coarse styles, column sources' fine)")
    sample.add_argument("--data", default=None, help="srgan, cyclegan: folder with the MNIST files (default: $PYGAN_DATA)")

    pl = sub.add_parser("plot", parents=[common], help="draw a run's training curves (losses, D(x), D(G(z)), "
                                                       "accuracy, evaluated metrics) from its metrics.jsonl")
    pl.add_argument("run", help="a run folder")
    pl.add_argument("--out", default=None, help=f"the PNG to write (default: RUN/{'curves.png'})")

    ex = sub.add_parser("export", parents=[common], help="write a checkpoint's generator alone (for inference and "
                                                        "other tools): safetensors, or npz for numpy")
    ex.add_argument("checkpoint", help=CHECKPOINT_HELP)
    ex.add_argument("--format", choices=recipes.EXPORT_FORMATS, default="safetensors")
    ex.add_argument("--out", default=None, help="the file to write (default: generator.FORMAT beside the checkpoint)")

    ev = sub.add_parser("eval", parents=[common], help="print a checkpoint's metrics (toy: mode coverage; images: Parzen, FID, KID, "
                                     "precision/recall, classifier score) beside the real data's")
    ev.add_argument("checkpoint", help=CHECKPOINT_HELP)
    ev.add_argument("--samples", type=whole(2, MAX_EXAMPLES), default=None, help="generated samples (2,500 toy; 10,000 images)")
    ev.add_argument("--test-size", type=whole(2, 10_000), default=10000, help="test images the metrics compare with")
    ev.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    ev.add_argument("--data", default=None, help="folder with the MNIST files (default: $PYGAN_DATA)")
    ev.add_argument("--seed", type=whole(0, SEED_MAX), default=0)
    ev.add_argument("--backend", choices=BACKENDS, default="cpu")
    return parser


# ---------------------------------------------------------------------------------------------
# runs: a configuration rebuilt identically by train, --resume, sample and eval
# ---------------------------------------------------------------------------------------------
class Run:
    """A model, its data and its GAN, built from a JSON-able configuration."""

    def __init__(self, config: dict[str, Any], load_data: bool = True) -> None:
        self.config = config
        self.toy = config["dataset"] in data.TOY_DATASETS
        #: The image folder of a folder:PATH dataset (its images load at the model's size).
        self.folder = data.folder_path(config["dataset"])
        self.labels: np.ndarray | None = None
        self.x: np.ndarray | None = None
        if self.toy:
            self.means, self.sigma = data.toy_modes(config["dataset"])
        num_classes = recipes.num_classes(config)
        self.translation = config["model"] in models.TRANSLATION_MODELS
        if load_data and config["model"] == "cyclegan":  # A in channel 0, an unrelated B in channel 1
            a, b, self.validation = translation.cycle_domains(config.get("task") or "invert", config.get("data"))
            n = min(config["train_size"], len(a))
            self.x, self.b_shown = np.concatenate([a[:n], b[:n]], axis=1), b[:10]
        elif load_data and self.toy:
            self.x, labels = data.toy_labelled(config["dataset"], config["train_size"], seed=config["seed"])
            self.labels = labels if num_classes else None
        elif load_data and self.folder is not None:
            train, self.validation, _ = recipes.folder_images(config)
            config["channels"] = train.shape[1]
            self.x = train[: config["train_size"]]
        elif load_data:
            x, labels = data.load_images(config["dataset"], "train", config.get("data"))
            n = min(config["train_size"], 50000)
            self.x, self.labels = x[:n], (labels[:n] if num_classes else None)
            self.validation = validation_images(x)
        marginals = self.x.mean(axis=0) if self.x is not None and not self.toy else None
        self.spec = recipes.build_spec(config, marginals)
        self.flat = not self.toy and config["model"] in models.FLAT_MODELS
        #: ``pygan sample --truncation`` for a generator fed z directly: z drawn as psi * z.
        self.truncation: float | None = None
        if self.x is not None and self.flat:
            self.x = self.x.reshape(len(self.x), -1)
        opt = dict(self.spec.optimizer)
        preset = objectives.PRESETS.get(config["loss"], {})
        if preset.get("lr"):
            opt.update(lr=preset["lr"], betas=preset.get("betas"), d_lr_scale=1.0)
        if config.get("optimizer") == "rmsprop" or (preset.get("optimizer") == "rmsprop" and not config.get("optimizer")):
            opt["kind"] = "rmsprop"
        if config.get("lr") is not None:
            opt["lr"] = config["lr"]
        self.opt = opt
        d_lr = config.get("d_lr") or opt["lr"] * opt.get("d_lr_scale", 1.0)
        g_opt, d_opt = self._optimizer(self.spec.generator, opt["lr"]), self._optimizer(self.spec.discriminator, d_lr)
        self.gan = GAN(
            self.spec.generator,
            self.spec.discriminator,
            g_opt,
            d_opt,
            latent_dim=self.spec.latent_dim,
            d_steps=config["d_steps"],
            objective=self._objective(config),
            prior=config.get("prior") or self.spec.prior,
            num_classes=num_classes,
            pack=config["pack"],
            d_max_norm=self.spec.d_max_norm,
            updates=self.spec.updates,
            seed=config["seed"],
            ema=config.get("ema"),
        )
        self.schedule, self.d_schedule = (
            Schedule(
                lr,
                config["epochs"],
                lr_final=None if opt.get("lr_final") is None else opt["lr_final"] * lr / opt["lr"],
                lr_decay=opt.get("lr_decay"),
                momentum=opt.get("momentum"),
                final_momentum=opt.get("final_momentum"),
                momentum_epochs=opt.get("momentum_epochs", 1),
            )
            for lr in (opt["lr"], d_lr)
        )

    def _objective(self, config: dict[str, Any]) -> objectives.Objective:
        r1 = config.get("r1")
        r1 = self.spec.r1 if r1 is None else r1
        if self.spec.objective == "lapgan":
            return LAPGAN(config["loss"], config["label_smoothing"], r1=r1)
        if self.spec.objective == "srgan":
            return translation.SRGAN(features=classifier.load("mnist").body)
        if self.spec.objective == "cyclegan":
            return translation.CycleGAN(identity=config.get("identity") or 0.0)
        return objectives.make_objective(config["loss"], config["label_smoothing"], r1=r1,
                                         clip=config.get("clip") or 0.01, gp_weight=config.get("gp_weight") or 10.0)

    def _optimizer(self, net: Any, lr: float) -> Optimizer:
        if self.opt["kind"] == "sgd":
            return SGD(net.parameters(), lr=lr, momentum=self.opt.get("momentum", 0.0))
        if self.opt["kind"] == "rmsprop":
            return RMSprop(net.parameters(), lr=lr)
        return Adam(net.parameters(), lr=lr, betas=self.opt.get("betas") or (0.5, 0.999))

    def transform(self, batch: np.ndarray) -> np.ndarray:
        """Host batch -> the model's image size and the generator's output range."""
        if self.toy:
            return batch
        side = self.config.get("image_size") or 28
        return self.spec.scale_data(batch if side == 28 or self.folder else data.resize_images(batch, side))

    def native_samples(self, n: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
        """``n`` generated samples on the host in data units, at the model's own resolution (z
        truncated by ``self.truncation`` when set)."""
        return self.decode(self.gan.sample(n, labels=labels, seed=seed, truncation=self.truncation))

    def decode(self, raw: Any) -> np.ndarray:
        """The generator's raw output as host samples in data units (images ``(n, C, H, W)``)."""
        out = to_numpy(raw).astype(np.float64)
        return out if self.toy else self.spec.unscale(out).reshape(len(out), *recipes.data_shape(self.config))

    def samples(self, n: int, seed: int) -> np.ndarray:
        """``n`` generated samples on the host, in data units ([0, 1] pixels for images: 28x28
        digits whatever the model's resolution, as the metrics read them; a folder's images at the
        model's own size)."""
        out = self.native_samples(n, seed)
        return out if self.toy or self.folder else data.to_mnist_size(out)

    def picture(self, n: int, seed: int, title: str = "", labels: np.ndarray | None = None, columns: int = 10) -> np.ndarray:
        """A PNG-ready picture: a scatter against the true density (toy), a grid of images, or
        the translation models' inputs and outputs (validation digits)."""
        if self.config["model"] == "srgan":
            return translation.sr_picture(self.gan, self.validation)
        if self.config["model"] == "cyclegan":
            return translation.cycle_picture(self.gan, self.validation, self.b_shown)
        if self.toy:
            classes = self.gan.num_classes  # a conditional model samples the classes in turn
            if classes and labels is None:
                labels = np.arange(n) % classes
            return plot.scatter(self.native_samples(n, seed, labels), self.means, self.sigma, title=title, labels=labels)
        grid = plot.image_grid(self.native_samples(n, seed, labels), columns=columns)
        classes = self.gan.num_classes  # a conditional model's samples cycle through the classes: one a column
        if classes == 10 and labels is None and columns == 10:
            return plot.label_columns(grid, 10, [f"class {k}" for k in range(10)], title)
        return grid

    def evaluate(self, seed: int) -> dict[str, float]:
        """The per-epoch validation metrics: mode coverage (toy data; 2,500 samples) or the Parzen
        log-likelihood of the validation images (10,000 samples, the paper's bandwidth grid); and
        the samples' ``diversity`` against the training data's (a collapse statistic)."""
        if self.config["model"] == "srgan":
            s = translation.sr_scores(self.gan, self.validation)
            return {"val_psnr": s["sr_psnr"], "val_bicubic_psnr": s["bicubic_psnr"]}
        if self.config["model"] == "cyclegan":
            s = translation.cycle_scores(self.gan, self.config.get("task") or "invert", self.validation)
            return {f"val_{k}": v for k, v in s.items()}
        n = self.config.get("eval_samples") or (2500 if self.toy else 10000)
        fake = self.samples(n, seed)
        assert self.x is not None
        real = self.x[np.random.default_rng(seed).permutation(len(self.x))[:256]]
        scores = {"diversity": metrics.diversity(fake[:256], real)} if min(len(fake), len(real)) > 1 else {}
        if self.toy:
            scores.update(metrics.mode_coverage(fake, self.means, self.sigma))
        else:
            ll = metrics.parzen_log_density(self.validation, fake, metrics.PARZEN_SIGMAS).mean(axis=0)
            best = int(np.argmax(ll))
            scores.update(val_parzen=float(ll[best]), val_sigma=float(metrics.PARZEN_SIGMAS[best]))
        return scores

    def score(self, scores: dict[str, float]) -> float:
        """The number a best checkpoint is chosen by (higher is better): modes covered plus the
        high-quality fraction on toy data (more modes always win), the validation Parzen on images."""
        if "val_bicubic_psnr" in scores:
            return scores["val_psnr"]
        if "val_cycle_l1" in scores:  # the L1 to the true map where there is one, else the cycle's
            return -scores.get("val_l1", scores["val_cycle_l1"])
        return scores["modes_covered"] + scores["high_quality"] if self.toy else scores["val_parzen"]


def validation_images(train_x: np.ndarray) -> np.ndarray:
    """The 2014 paper's validation digits: training images 50,000-50,999 (a smaller folder, as in
    the tests, holds out its last fifth, at most 1,000)."""
    validation = train_x[50000:51000]
    return validation if len(validation) else train_x[-max(1, min(1000, len(train_x) // 5)) :]


def collapse_warnings(summary: dict[str, float], scores: dict[str, float]) -> list[str]:
    """Signs of a collapsed run in an epoch's statistics: a discriminator that tells real from
    generated almost always, or generated samples far less varied than the data."""
    out = []
    if min(summary.get("d_acc_real", 0.0), summary.get("d_acc_fake", 0.0)) >= COLLAPSE_ACCURACY:
        out.append(f"the discriminator is right on {100 * COLLAPSE_ACCURACY:.0f}%+ of real and generated inputs")
    if scores.get("diversity", 1.0) < COLLAPSE_DIVERSITY:
        out.append(f"generated samples vary {scores['diversity']:.2f}x as much as the data (mode collapse?)")
    return out


def _train_config(args: argparse.Namespace) -> dict[str, Any]:
    toy = args.dataset in data.TOY_DATASETS
    preset = TOY_SETTINGS.get(args.dataset, {})
    if args.jobs is not None and args.seeds is None:
        raise UsageError("pygan train: error: --jobs is the number of parallel --seeds runs; give --seeds too")
    if args.model == "lapgan" and args.loss not in _checks.GENERATOR_LOSSES:
        raise UsageError(f"pygan train: error: --model lapgan trains each pyramid level with the 2014 losses, not --loss {args.loss}")
    if args.model in models.IMAGE_MODELS and toy:
        raise UsageError(f"pygan train: error: --model {args.model} needs an image dataset (mnist, fashion-mnist, folder:PATH)")
    folder = data.folder_path(args.dataset) is not None
    if folder and args.model in models.DIGIT_MODELS:
        raise UsageError(f"pygan train: error: --model {args.model} is built for MNIST's 28x28 digits, not --dataset folder:PATH")
    if folder and args.model == "cgan":
        raise UsageError("pygan train: error: --model cgan needs labelled data; a folder:PATH dataset has no labels")
    if args.channels is not None and not folder:
        raise UsageError("pygan train: error: --channels is for --dataset folder:PATH (the built-in images are grey)")
    image_size = args.image_size or models.DEFAULT_IMAGE_SIZE.get(args.model, 28)
    if args.image_size is not None:
        try:
            data.check_image_size(args.image_size)
        except ValueError as e:
            raise UsageError(f"pygan train: error: --image-size: {str(e).split(': ', 1)[1]}") from None
        if toy or (args.model not in ("dcgan", "stylegan") and not folder):
            raise UsageError("pygan train: error: --image-size is for the dcgan and stylegan models on images "
                             "(and any image model on folder:PATH)")
        if args.model == "stylegan" and args.image_size == 28:
            raise UsageError("pygan train: error: --image-size: the stylegan model needs a power of two >= 8")
    if (args.task is not None or args.identity is not None) and args.model != "cyclegan":
        raise UsageError("pygan train: error: --task and --identity are the cyclegan model's")
    if args.model in models.TRANSLATION_MODELS and (args.loss != "non_saturating" or args.r1 or args.spectral_norm):
        raise UsageError(f"pygan train: error: --model {args.model} trains with its paper's own losses "
                         "(no --loss, --r1 or --spectral-norm)")
    preset_steps = objectives.PRESETS.get(args.loss, {}).get("d_steps", preset.get("d_steps", TOY_D_STEPS) if toy else 1)
    if args.optimizer == "sgd" and args.model != "paper-mlp":
        raise UsageError("pygan train: error: --optimizer sgd is paper-mlp's original schedule; other models use adam")
    if args.clip is not None and args.loss != "wgan":
        raise UsageError(f"pygan train: error: --clip is wgan's weight clipping, not part of --loss {args.loss}")
    if args.gp_weight is not None and args.loss != "wgan-gp":
        raise UsageError(f"pygan train: error: --gp-weight is wgan-gp's penalty weight, not part of --loss {args.loss}")
    if args.label_smoothing != 1.0 and args.loss in objectives.OBJECTIVES:
        raise UsageError(f"pygan train: error: --label-smoothing belongs to the 2014 losses, not --loss {args.loss}")
    return {
        "model": args.model,
        "dataset": args.dataset,
        "epochs": args.epochs or (preset.get("epochs", TOY_EPOCHS) if toy else 25),
        "batch_size": args.batch_size or preset.get("batch_size"),
        "g_act": preset.get("g_act"),
        "loss": args.loss,
        "d_steps": args.d_steps or (preset_steps if args.model != "paper-mlp" else 1),
        "clip": args.clip,
        "gp_weight": args.gp_weight,
        "r1": args.r1,
        "spectral_norm": args.spectral_norm if args.spectral_norm is not None else args.loss == "hinge",
        "pack": args.pack or (preset.get("pack", TOY_PACK) if toy else 1),
        "label_smoothing": args.label_smoothing,
        "prior": args.prior,
        "lr": args.lr,
        "d_lr": args.d_lr,
        "ema": args.ema if args.ema is not None else models.DEFAULT_EMA.get(args.model),
        "norm": args.norm,
        "image_size": image_size,
        "channels": args.channels,
        "task": args.task or ("invert" if args.model == "cyclegan" else None),
        "identity": args.identity,
        "optimizer": args.optimizer,
        "train_size": args.train_size or (25600 if toy else 50000),
        "seed": args.seed,
        "data": args.data,
        "eval_every": args.eval_every,
        "eval_samples": args.eval_samples,
    }


def _configure_backend(name: str, threads: int | None) -> None:
    set_backend(name)
    if threads is not None:
        import warnings as warning_module

        from . import set_num_threads
        from .backend import cpu_backend

        with warning_module.catch_warnings(record=True) as caught:  # printed as one line, not a warning's two
            warning_module.simplefilter("always")
            threads = cpu_backend.capped_threads(threads, "--threads")
        for w in caught:
            print(f"pygan: warning: {w.message}", file=sys.stderr)
        set_num_threads(threads)


def read_log(run_dir: str | os.PathLike[str], kind: str = "epoch") -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl`` of one kind: ``"epoch"`` (one per epoch: the epoch's
    mean statistics and its evaluation) or ``"step"`` (every ``--log-every`` steps: that step's
    statistics). Rows of runs from before step rows count as epoch rows. (The file itself loads in
    pandas as it is: ``pandas.read_json(path, lines=True)``.)"""
    path = Path(run_dir) / LOG
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind", "epoch") == kind]


CURVES = "curves.png"
#: A run redraws its curves after an epoch when this many seconds have passed since the last
#: drawing (drawing takes about 0.5 s, more than a toy epoch), and always after the last epoch.
CURVES_EVERY_S = 15.0


def write_curves(run_dir: Path, out: Path | None = None) -> Path:
    """Draw a run's training curves from its log into ``out`` (default ``RUN_DIR/curves.png``)."""
    title = ""
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        cfg = json.loads(config_path.read_text())
        title = f"{cfg.get('model', '?')} on {cfg.get('dataset', '?')}, loss {cfg.get('loss', '?')}"
    target = out or run_dir / CURVES
    plot.write_png(target, plot.curves(read_log(run_dir), read_log(run_dir, "step"), title=title))
    return target


def plot_run(args: argparse.Namespace) -> None:
    """``pygan plot``: a finished (or running) run's training curves as a PNG."""
    run_dir = Path(args.run)
    if not (run_dir / LOG).is_file():
        raise UsageError(f"pygan plot: error: {run_dir}: a folder without {LOG} (not a pygan run)")
    try:
        target = write_curves(run_dir, Path(args.out) if args.out else None)
    except (ValueError, KeyError, TypeError) as e:
        raise RunFailed(f"pygan plot: error: {run_dir / LOG}: unreadable log: {e}") from None
    print(f"wrote {target}")


def _trim_log(path: Path, steps: int) -> None:
    """Keep only log rows of the steps the checkpoint has (a resumed run writes the rest again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("steps", 0) <= steps]
    with atomic_write(path, text=True) as f:
        f.write("".join(line + "\n" for line in keep))


class _Reporter:
    """fit() callbacks: progress bar, per-epoch picture, log line, evaluation, collapse warnings,
    and the last and best checkpoints."""

    def __init__(self, run: Run, out: Path, epochs: int, batches: int, start: float, best: dict[str, Any],
                 log_every: int, events: board.EventLog | None = None, ranks: int = 1) -> None:
        from tqdm import tqdm

        self.run, self.out, self.epochs, self.batches, self.start = run, out, epochs, batches, start
        self.log_every = log_every
        self.events = events
        self.ranks = ranks
        self.curves_drawn = -math.inf
        self.best = best
        self.scores: dict[str, float] = {}
        self.tqdm = tqdm
        self.bar: Any = None

    def _open_bar(self, gan: GAN) -> None:
        self.bar = self.tqdm(
            total=self.batches,
            initial=gan.batch_in_epoch,
            desc=f"epoch {gan.epoch + 1}/{self.epochs}",
            leave=False,
            dynamic_ncols=True,
            disable=None,
        )

    def on_step(self, gan: GAN, stats: dict[str, float]) -> None:
        if self.bar is None:
            self._open_bar(gan)
        self.bar.update(1)
        if gan.batch_in_epoch % 10 == 0 or gan.batch_in_epoch == self.batches:
            shown = {label.replace("(", "_").replace(")", ""): f"{stats[key]:{fmt}}"
                     for key, label, fmt in STAT_LABELS[:4] if key in stats}
            self.bar.set_postfix(refresh=False, **shown)
        if gan.steps % self.log_every == 0:
            row: dict[str, Any] = {"kind": "step", "epoch": gan.epoch + 1, "batch": gan.batch_in_epoch, "steps": gan.steps,
                                   "seconds": round(time.perf_counter() - self.start, 3)}
            row.update({k: round(float(v), 6) for k, v in stats.items()})
            self._append(row)
            if self.events is not None:
                self.events.scalars("step", row, gan.steps)

    def _append(self, row: dict[str, Any]) -> None:
        with (self.out / LOG).open("a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def finish(self) -> None:
        """Close the progress bar and the TensorBoard log."""
        self.close()
        if self.events is not None:
            self.events.close()

    def save(self, gan: GAN) -> None:
        """Write the last checkpoint (with the best score so far, so a resume keeps it)."""
        io.save_gan(self.out / CHECKPOINT, gan, self.run.config, run={"best": self.best, "ranks": self.ranks})

    def on_epoch_end(self, gan: GAN, summary: dict[str, float]) -> None:
        self.close()
        self.save(gan)  # first, so that an evaluation that fails (out of memory, say) loses no training
        cfg = self.run.config
        evaluated = gan.epoch % cfg["eval_every"] == 0 or gan.epoch == self.epochs
        scores = self.run.evaluate(seed=cfg["seed"] + 12345) if evaluated else {}
        if scores:
            self.scores = scores
        warnings = collapse_warnings(summary, scores)
        picture = self.out / "samples" / f"epoch_{gan.epoch:03d}.png"
        title = f"{cfg['model']} on {cfg['dataset']}, epoch {gan.epoch}"
        if "modes_covered" in scores:
            title += (f": {scores['modes_covered']:.0f}/{scores['modes_total']:.0f} modes, "
                      f"{100 * scores['high_quality']:.1f}% high quality")
        shown = self.run.picture(2500 if self.run.toy else 100, seed=cfg["seed"] + 777, title=title)
        plot.write_png(picture, shown)
        score = self.run.score(scores) if scores else None
        improved = score is not None and ("score" not in self.best or score > self.best["score"])
        if improved:
            self.best = {"score": score, "epoch": gan.epoch, **scores}
            io.save_gan(self.out / BEST, gan, cfg, run={"best": self.best, "ranks": self.ranks})
            self.save(gan)  # the last checkpoint again, now carrying the new best score
        record: dict[str, Any] = {"kind": "epoch", "epoch": gan.epoch, "steps": gan.steps,
                                  "seconds": round(time.perf_counter() - self.start, 3)}
        record.update({k: round(v, 6) for k, v in summary.items()})
        record.update(scores)
        if scores:
            record["best_epoch"] = self.best["epoch"]
        if warnings:
            record["warnings"] = warnings
        self._append(record)
        if self.events is not None:
            self.events.scalars("epoch", record, gan.steps)
            self.events.image("samples", shown, gan.steps)
        if gan.epoch == self.epochs or time.perf_counter() - self.curves_drawn >= CURVES_EVERY_S:
            self.draw_curves()
        line = f"epoch {gan.epoch}/{self.epochs}  " + "  ".join(
            f"{label} {summary[key]:{fmt}}" for key, label, fmt in STAT_LABELS if key in summary)
        if "d_acc_real" in summary:
            line += f"  acc real/fake {summary['d_acc_real']:.2f}/{summary['d_acc_fake']:.2f}"
        if "modes_covered" in scores:
            line += f"  modes {scores['modes_covered']:.0f}/{scores['modes_total']:.0f}  high-quality {100 * scores['high_quality']:.1f}%"
        if "val_parzen" in scores:
            line += f"  val Parzen {scores['val_parzen']:.1f}"
        if "val_bicubic_psnr" in scores:
            line += f"  val PSNR {scores['val_psnr']:.2f} dB (bicubic {scores['val_bicubic_psnr']:.2f})"
        if "val_l1" in scores:
            line += f"  val L1 to the true map {scores['val_l1']:.4f} (identity {scores['val_identity_l1']:.4f})"
        if "val_cycle_l1" in scores:
            line += f"  val cycle L1 {scores['val_cycle_l1']:.4f}"
        if improved:
            line += "  (best)"
        line += f"  ({time.perf_counter() - self.start:.1f} s)"
        for w in warnings:
            line += f"\n  warning: {w}"
        print(line, flush=True)

    def draw_curves(self) -> None:
        """Redraw ``curves.png`` from the log (about half a second of Matplotlib)."""
        write_curves(self.out)
        self.curves_drawn = time.perf_counter()


def _train_actions() -> dict[str, argparse.Action]:
    """The actions of ``pygan train``'s flags by destination (with their built-in defaults)."""
    probe = argparse.ArgumentParser(add_help=False)
    _train_arguments(probe)
    return {a.dest: a for a in probe._actions}


def config_defaults(path: str) -> dict[str, Any]:
    """The flags a ``--config`` file gives, each checked as on the command line: ``{dest: value}``."""
    def bad(msg: str) -> UsageError:
        return UsageError(f"pygan train: error: --config {path}: {msg}")

    p = Path(path)
    try:
        if not p.is_file():
            raise bad("not a file")
        if p.stat().st_size > 1 << 20:
            raise bad("larger than 1 MiB; a configuration is a few lines")
        text = p.read_text()
        if p.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise bad("reading TOML needs Python 3.11 or later (tomllib); give the flags as JSON") from None
            doc = tomllib.loads(text)
        else:
            doc = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        if isinstance(e, UsageError):
            raise
        raise bad(f"unreadable ({'TOML' if p.suffix == '.toml' else 'JSON'}): {e}") from None
    if not isinstance(doc, dict):
        raise bad("expected a table (an object) of flags")
    actions = _train_actions()
    out: dict[str, Any] = {}
    for key, value in doc.items():
        dest = str(key).lstrip("-").replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in ("config", "help"):
            raise bad(f"{key}: not a flag of pygan train")
        flag = action.option_strings[0]
        if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
            if not isinstance(value, bool):
                raise bad(f"{key}: expected true or false for {flag}, got {value!r}")
        elif isinstance(value, (bool, list, dict)) or value is None:
            raise bad(f"{key}: expected one value for {flag}, got {value!r}")
        elif action.type is not None:
            try:
                value = action.type(str(value))
            except argparse.ArgumentTypeError as e:
                raise bad(f"{key}: {e}") from None
        else:
            value = str(value)
        if action.choices is not None and value not in action.choices:
            raise bad(f"{key}: {value!r} is not one of {', '.join(map(str, action.choices))}")
        out[dest] = value
    return out


def _resume_conflicts(args: argparse.Namespace, config: dict[str, Any]) -> list[str]:
    """The flags given to ``--resume`` that contradict the checkpoint's configuration."""
    conflicts = []
    for dest, action in _train_actions().items():
        value = getattr(args, dest, action.default)
        if dest in RESUME_FREE or value == action.default or dest not in config or config[dest] == value:
            continue
        conflicts.append(f"{action.option_strings[0]} {value} (the run has {config[dest]})")
    return conflicts


def _write_config(out: Path, config: dict[str, Any]) -> None:
    with atomic_write(out / CONFIG_FILE, text=True) as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _holds_run(out: Path) -> str | None:
    """The first of a run's files that ``out`` holds, else None."""
    return next((name for name in RUN_FILES if (out / name).exists()), None)


def _prepare(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], int | None]:
    """A run's configuration, its best evaluation so far and the ranks it was trained on (a
    resumed run's, from its checkpoint): the checks of --out, --resume and --overwrite, and the
    flags resolved; nothing is written but a legacy run's converted checkpoints."""
    if not args.out.strip():
        raise UsageError("pygan train: error: --out: expected a folder name, got an empty one")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"pygan train: error: --out: {out} is a file, not a folder")
    ckpt = out / CHECKPOINT
    if args.resume and args.overwrite:
        raise UsageError("pygan train: error: --resume continues the run in --out, --overwrite replaces it: give one")
    held = _holds_run(out)
    if held and not args.resume and not args.overwrite:
        raise UsageError(f"pygan train: error: --out: {out} already holds a run ({held}); continue it with --resume, "
                         "replace it with --overwrite, or choose another --out")
    if args.resume:
        _convert_legacy(out)
        if not ckpt.exists():
            raise UsageError(f"pygan train: error: --resume: no checkpoint at {ckpt}")
        _, meta = io.load(ckpt)
        config = dict(meta.get("config", {}))
        conflicts = _resume_conflicts(args, config)
        if conflicts:
            raise UsageError(f"pygan train: error: --resume: flags that contradict the run in {out}: "
                             f"{'; '.join(conflicts)} (only --epochs, --backend, --threads, --data, --log-every, "
                             "--tensorboard and --distributed may change)")
        config.setdefault("eval_every", 1)  # runs from before best checkpoints
        if args.epochs is not None:
            config["epochs"] = args.epochs
        run_state = meta.get("run") if isinstance(meta.get("run"), dict) else {}
        ranks = run_state.get("ranks", 1)
        return config, dict(run_state.get("best", {})), ranks if isinstance(ranks, int) else None
    if args.distributed and args.model not in DISTRIBUTED_MODELS:
        raise UsageError(f"pygan train: error: --distributed trains {', '.join(DISTRIBUTED_MODELS)}, not --model {args.model}")
    return _train_config(args), {}, None


def _setup_run(args: argparse.Namespace, config: dict[str, Any], ranks: int) -> Run:
    """The run of ``config`` built (its data loaded), its batch checked against the data, the
    packing and the ``ranks``, and on ``--resume`` its checkpoint restored."""
    run = Run(config)
    config["batch_size"] = config["batch_size"] or run.spec.batch_size
    if run.x is not None and len(run.x) < config["batch_size"]:
        raise UsageError(f"pygan train: error: --train-size: {len(run.x)} examples are fewer than one batch of "
                         f"{config['batch_size']} (--batch-size)")
    if config["batch_size"] % (config["pack"] * ranks):
        raise UsageError(f"pygan train: error: --batch-size {config['batch_size']} must be a multiple of --pack "
                         f"{config['pack']}" + (f" times the {ranks} ranks" if ranks > 1 else ""))
    if args.resume:
        io.restore_gan(Path(args.out) / CHECKPOINT, run.gan)
    return run


def _attempt(body: Callable[[], Any]) -> Any:
    """``body()``, or the user's mistake or the run's failure it raised (to be agreed on by the
    ranks of a --distributed run before any of them fails)."""
    try:
        return body()
    except (UsageError, *RUNTIME_ERRORS) as e:
        return e


def _describe(e: BaseException) -> tuple[int, str]:
    """A failure as (exit status, its one-line message naming this rank), the same on every rank
    it is sent to."""
    if isinstance(e, UsageError):
        return 2, str(e)
    text = str(e) if isinstance(e, RunFailed) else f"pygan train: error: {_one_line(e)}"
    return 1, f"{text} (rank {_GROUP.rank if _GROUP else 0})" if _GROUP and _GROUP.rank else text


def _agreed(e: BaseException) -> BaseException:
    """Mark a failure every rank of a --distributed run raises at once: rank 0 reports it, and
    each rank exits with its status (no rank is left waiting, so none need end the others)."""
    e.agreed = True  # type: ignore[attr-defined]
    return e


def train(args: argparse.Namespace) -> dict[str, float]:
    """``pygan train``: returns the last epoch's metrics. With ``--distributed`` (under
    ``mpiexec``) every rank trains a replica on its share of each batch (``pygan.distributed``)
    and rank 0 writes the run."""
    global _GROUP
    out = Path(args.out)
    ckpt = out / CHECKPOINT
    if not args.distributed:
        config, best, ranks = _prepare(args)
        _configure_backend(args.backend, args.threads)
        run = _setup_run(args, config, 1)
        rank, size = 0, 1
    else:
        try:
            _GROUP = distributed.Group()
        except ImportError as e:
            raise RunFailed(f"pygan train: error: --distributed: {e}") from None
        group, rank, size = _GROUP, _GROUP.rank, _GROUP.size
        if rank:
            sys.stdout = open(os.devnull, "w")  # rank 0 speaks for the run
        threads = args.threads or max(1, (os.cpu_count() or 1) // group.local_size())
        # Until every rank is set up, a failure is agreed on (every rank ends with rank 0's or the
        # first failed rank's message) instead of ending the job from one rank.
        prepared = _attempt(lambda: _prepare(args)) if rank == 0 else None
        prepared = group.comm.bcast(prepared, root=0)
        if isinstance(prepared, BaseException):
            raise _agreed(prepared)
        config, best, ranks = prepared
        _configure_backend(args.backend, threads)
        built = _attempt(lambda: _setup_run(args, config, size))
        failures = [f for f in group.comm.allgather(_describe(built) if isinstance(built, BaseException) else None) if f]
        if failures:
            raise _agreed(built if isinstance(built, BaseException) and _describe(built) == failures[0] else
                          RunFailed(failures[0][1]) if failures[0][0] == 1 else UsageError(failures[0][1]))
        run = built
        try:
            group.attach(run.gan)
        except RuntimeError as e:  # the ranks compared their replicas together: each raises it
            raise _agreed(RunFailed(f"pygan train: error: --distributed: {e}")) from None
    if rank:  # the other ranks train; rank 0 writes the run
        run.gan.fit(run.x, config["epochs"], config["batch_size"], labels=run.labels, seed=config["seed"],
                    transform=run.transform, schedule=run.schedule, d_schedule=run.d_schedule)
        return {}
    out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        _trim_log(out / LOG, run.gan.steps)
        print(f"resumed from {ckpt} at epoch {run.gan.epoch}, batch {run.gan.batch_in_epoch} (step {run.gan.steps})")
        if ranks != size:
            print(f"note: the run was trained on {ranks or '?'} rank(s), it goes on on {size}: the same batches, "
                  "but not bit for bit what it would have been")
    else:
        for stale in (LOG, BEST):
            (out / stale).unlink(missing_ok=True)
        for stale_events in (out / TENSORBOARD).glob("events.out.tfevents.*"):
            stale_events.unlink()
    events = None
    if args.tensorboard:
        try:
            events = board.EventLog(out / TENSORBOARD, purge_step=run.gan.steps if args.resume else None)
        except ImportError as e:
            raise RunFailed(f"pygan train: error: --tensorboard: {e}") from None
    _write_config(out, config)
    print(backend_info())
    if _GROUP is not None:
        print(f"distributed: {size} ranks ({distributed.library()}), {config['batch_size'] // size} examples of each "
              f"batch of {config['batch_size']} per rank")
    assert run.x is not None
    print(
        f"training {config['model']} on {config['dataset']} ({len(run.x)} examples, batch {config['batch_size']}, "
        f"{config['epochs']} epochs, loss {config['loss']}, pack {config['pack']}) -> {out}"
    )
    batches = len(run.x) // config["batch_size"]
    start = time.perf_counter()
    log_every = args.log_every or max(1, round(batches / 50))
    reporter = _Reporter(run, out, config["epochs"], batches, start, best, log_every, events, ranks=size)
    try:
        result = run.gan.fit(
            run.x, config["epochs"], config["batch_size"], labels=run.labels, callbacks=[reporter],
            seed=config["seed"], transform=run.transform, schedule=run.schedule, d_schedule=run.d_schedule,
        )
    except TrainingDiverged as e:
        kept = f"the last good checkpoint is {ckpt}" if ckpt.exists() else "no checkpoint was written"
        raise RunFailed(f"pygan train: error: {e}; {kept}") from None
    finally:
        reporter.finish()
    if result.interrupted:
        reporter.save(run.gan)
        if (out / LOG).exists():
            reporter.draw_curves()
        print(f"interrupted: saved {ckpt} at epoch {run.gan.epoch}, batch {run.gan.batch_in_epoch}; continue with --resume")
        return {}
    if reporter.best:
        print(f"best: epoch {reporter.best['epoch']} ({out / BEST}); last: {ckpt}")
    return reporter.scores


def parse_seeds(spec: str) -> list[int]:
    """``"0-9"``, ``"0,3,7"`` or a mix (``"0-2,8"``) -> distinct seeds in order."""
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            lo, sep, hi = part.strip().partition("-")
            first, last = int(lo), int(hi) if sep else int(lo)
            if first < 0 or last < first or last - first >= 10000:
                raise ValueError
            seeds.extend(s for s in range(first, last + 1) if s not in seeds)
    except ValueError:
        raise UsageError(f"pygan train: error: --seeds: expected seeds like 0-9 or 0,3,7, got {spec!r}") from None
    return seeds


def _child_argv(args: argparse.Namespace, seed: int, out: Path, threads: int) -> list[str]:
    """The ``pygan train`` command line of one seed of a ``--seeds`` run: every flag the user gave."""
    probe = argparse.ArgumentParser(add_help=False)
    _train_arguments(probe)
    argv = ["train"]
    for action in probe._actions:
        value = getattr(args, action.dest)
        if action.dest in ("seeds", "jobs", "seed", "out", "threads", "config") or value == action.default:
            continue
        if action.dest == "data":  # the runs start in their own folder
            value = Path(value).resolve()
        if isinstance(value, bool):  # a store_true flag, or --spectral-norm / --no-spectral-norm
            argv.append(action.option_strings[0] if value else action.option_strings[-1])
        else:
            argv += [action.option_strings[0], str(value)]
    return argv + ["--seed", str(seed), "--out", str(out), "--threads", str(threads)]


#: The final metrics a ``--seeds`` run summarises (those a run's last evaluation has).
_SEED_METRICS = ("modes_covered", "high_quality", "val_parzen")


def _held_message(root: Path, held: list[str]) -> str:
    return (f"pygan train: error: --out: {root} already holds runs ({', '.join(held[:3])}); continue them "
            "with --resume, replace them with --overwrite, or choose another --out")


def _run_seeds(args: argparse.Namespace, seeds: list[int], jobs: int, threads: int, root: Path,
               start: float) -> dict[int, dict[str, Any]]:
    """Train ``seeds`` as ``pygan train`` processes, ``jobs`` at a time on ``threads`` threads each,
    each into ``root/seed-S``; the last and best evaluation of each run that finished."""
    import subprocess

    # each run starts in its own folder, so a source checkout in the working directory never
    # shadows the installed package; paths it is given are absolute. An MPI launcher's variables
    # stay with this process: the runs are plain processes of their own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_LOCALNRANKS", "HYDRA_"))}
    if env.get("PYGAN_DATA"):
        env["PYGAN_DATA"] = str(Path(env["PYGAN_DATA"]).resolve())
    pending, running, results = list(seeds), {}, {}
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            out = root / f"seed-{seed}"
            out.mkdir(exist_ok=True)
            log = (out / "train.log").open("w")
            cmd = [sys.executable, "-m", "pygan", *_child_argv(args, seed, out, threads)]
            running[seed] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=out, env=env), log, out)
        time.sleep(0.2)
        for seed, (proc, log, out) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[seed]
            if proc.returncode != 0:
                tail = (out / "train.log").read_text().strip().splitlines()[-1:] or ["(no output)"]
                print(f"seed {seed}: failed (exit {proc.returncode}): {tail[0]}  [{out / 'train.log'}]")
                continue
            last = next((r for r in reversed(read_log(out)) if "best_epoch" in r), {})
            _, meta = io.load(out / CHECKPOINT)
            best = meta.get("run", {}).get("best", {})
            results[seed] = {"last": {k: last[k] for k in _SEED_METRICS if k in last},
                             "best": {k: best[k] for k in _SEED_METRICS if k in best}, "best_epoch": best.get("epoch")}
            shown = "  ".join(f"{k} {v:.4g}" for k, v in results[seed]["last"].items())
            print(f"seed {seed}: {shown}  (best epoch {best.get('epoch')}; {time.perf_counter() - start:.0f} s)", flush=True)
    return results


def train_seeds(args: argparse.Namespace) -> dict[str, Any]:
    """``pygan train --seeds``: one run per seed in ``--out/seed-S`` (parallel processes sharing the
    cores), then the mean and standard error over the seeds of each run's last and best evaluation.
    Under ``mpiexec -n N`` the seeds are dealt to the N ranks (rank r runs seeds r, r + N, ...), with
    no communication but one gather of the results to rank 0, which writes the summary."""
    global _GROUP
    if args.distributed:
        raise UsageError("pygan train: error: --distributed trains one run across the ranks; --seeds runs a run per "
                         "seed (under mpiexec, dealt to the ranks): give one")
    seeds = parse_seeds(args.seeds)
    cores = os.cpu_count() or 1
    root = Path(args.out).resolve()
    held = [f"seed-{s}" for s in seeds if _holds_run(root / f"seed-{s}")]
    if distributed.launched_size() > 1:
        try:
            _GROUP = distributed.Group()
        except ImportError as e:
            raise RunFailed(f"pygan train: error: --seeds under mpiexec: {e}") from None
        if held and not args.resume and not args.overwrite:  # every rank saw the same folder
            raise _agreed(UsageError(_held_message(root, held)))
        _GROUP.barrier()  # every rank checked the folder before any writes to it
        mine, jobs = seeds[_GROUP.rank :: _GROUP.size], 1
        threads = args.threads or max(1, cores // _GROUP.local_size())
        print(f"rank {_GROUP.rank} of {_GROUP.size}: seeds {', '.join(map(str, mine)) or 'none'} into {root}/seed-S, "
              f"{threads} thread(s)", flush=True)
    else:
        if held and not args.resume and not args.overwrite:
            raise UsageError(_held_message(root, held))
        mine, jobs = seeds, min(len(seeds), args.jobs or cores)
        threads = args.threads or max(1, cores // jobs)
        print(f"{len(seeds)} runs (seeds {args.seeds}) into {root}/seed-S, {jobs} at a time, {threads} thread(s) each")
    root.mkdir(parents=True, exist_ok=True)
    results = _run_seeds(args, mine, jobs, threads, root, time.perf_counter())
    if _GROUP is not None:
        gathered = _GROUP.gather(results)
        if gathered is None:  # rank 0 summarises
            return {}
        results = {seed: r for part in gathered for seed, r in part.items()}
    summary: dict[str, Any] = {"seeds": sorted(results), "runs": results, "failed": sorted(set(seeds) - set(results))}
    for which in ("last", "best"):
        for k in _SEED_METRICS:
            vals = np.array([r[which][k] for r in results.values() if k in r[which]])
            if len(vals):
                se = float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else float("nan")
                summary[f"{which}_{k}"] = {"mean": float(vals.mean()), "stderr": se, "n": len(vals)}
                print(f"{which} {k}: {vals.mean():.4g} +- {se:.2g} (mean +- standard error of {len(vals)} seeds)")
    (root / "seeds.json").write_text(json.dumps(summary, indent=1) + "\n")
    if summary["failed"]:
        raise RunFailed(f"pygan train: error: seeds {summary['failed']} failed; see their train.log")
    return summary


def _convert_legacy(out: Path) -> None:
    """Rewrite the checkpoints of a run from before safetensors (``checkpoint.pygan``,
    ``best.pygan``) in the current format under the current names, so that ``--resume`` goes on
    from them; each old file is removed once its new one is written."""
    for new, old in LEGACY_NAMES.items():
        if not (out / old).is_file() or (out / new).exists():
            continue
        _, meta = io.load(out / old)
        run = _from_checkpoint(str(out / old), None)
        io.save_gan(out / new, run.gan, run.config, run=meta.get("run") if isinstance(meta.get("run"), dict) else {})
        (out / old).unlink()
        print(f"converted {out / old} (format {meta['format_version']}) to {out / new}")


def checkpoint_path(path: str) -> Path:
    """A checkpoint file as given, or a run folder's best checkpoint (its last if it has no best)."""
    try:
        return recipes.checkpoint_file(path)
    except io.CheckpointError as e:
        raise UsageError(f"pygan: error: {e}") from None


def _from_checkpoint(path: str, backend: str | None) -> Run:
    """The run a checkpoint (or a generator exported alone: then only the generator is restored)
    holds, on ``backend`` (None: the one in use)."""
    if backend is not None:
        _configure_backend(backend, None)
    ckpt = checkpoint_path(path)
    tensors, meta = io.load(ckpt)
    try:
        config = recipes.run_config(ckpt, meta)
    except io.CheckpointError as e:  # a file pygan train did not write: the user named the wrong one
        raise UsageError(f"pygan: error: {e}") from None
    run = Run(config, load_data=False)
    if meta.get("contents") == recipes.GENERATOR_ONLY:
        recipes.restore_generator(ckpt, tensors, meta, run.gan.generator)
        run.gan.ema = None  # the exported weights are the average already
        if run.gan.reference_z is not None:
            ref = recipes.reference_batch(ckpt, tensors, run.gan.reference_z.shape)
            run.gan.reference_z[...] = get_backend().xp.asarray(ref)
    else:
        io.restore_gan(ckpt, run.gan)
    return run


def export(args: argparse.Namespace) -> None:
    """``pygan export``: a checkpoint's generator alone, as safetensors or npz."""
    ckpt = checkpoint_path(args.checkpoint)
    out = Path(args.out) if args.out else ckpt.with_name(f"generator.{args.format}")
    if out.is_dir():
        raise UsageError(f"pygan export: error: --out: {out} is a folder; give a file name")
    if out.exists() and out.resolve() == ckpt.resolve():
        raise UsageError(f"pygan export: error: --out: {out} is the checkpoint being exported")
    info = recipes.export_generator(ckpt, out, args.format)
    print(f"wrote the {info['config']['model']} generator of {ckpt} (step {info.get('steps', '?')}) to {out}")


def sample(args: argparse.Namespace) -> None:
    """``pygan sample``: write ``--n`` samples of a checkpoint as a PNG."""
    run = _from_checkpoint(args.checkpoint, args.backend)
    model = run.config["model"]
    if args.style_mixing and model != "stylegan":
        raise UsageError("pygan sample: error: --style-mixing is the stylegan model's")
    if args.truncation is not None and model in models.TRANSLATION_MODELS:
        raise UsageError(f"pygan sample: error: --truncation: the {model} model maps images, it draws no z")
    if args.truncation is not None and model == "stylegan":
        run.gan.generator.truncation = args.truncation
    elif args.truncation is not None:
        run.truncation = args.truncation
    if model in models.TRANSLATION_MODELS:  # the model on test digits
        test, _ = data.load_images("mnist", "test", args.data or run.config.get("data"))
        if model == "srgan":
            picture = translation.sr_picture(run.gan, test)
        else:
            task = run.config.get("task") or "invert"
            b = translation.true_map(task, test) if task == "invert" else data.load_images(
                "fashion-mnist", "test", args.data or run.config.get("data"))[0]
            picture = translation.cycle_picture(run.gan, test, b)
        plot.write_png(args.out, picture)
        print(f"wrote the {model} model's outputs on 10 test digits to {args.out}")
        return
    if args.style_mixing:
        plot.write_png(args.out, style_mixing_grid(run, seed=args.seed))
        print(f"wrote a style-mixing grid to {args.out}")
        return
    classes = run.gan.num_classes
    if args.label is not None and not args.label < classes:
        raise UsageError(f"pygan sample: error: --class {args.label}: the {model} model has "
                         + (f"classes 0 .. {classes - 1}" if classes else "no classes (it is not conditional)"))
    labels = None if args.label is None else np.full(args.n, args.label)
    if args.interpolate is not None:
        if run.toy:
            raise UsageError("pygan sample: error: --interpolate is for image models")
        write_walks(run, args.out, min(args.n, 10), args.interpolate, args.seed, args.label)
        print(f"wrote {min(args.n, 10)} latent walks of {args.interpolate} steps to {args.out}")
        return
    if str(args.out).lower().endswith(".gif"):
        raise UsageError("pygan sample: error: --out: a .gif is written for --interpolate; samples are a .png")
    what = f"class {args.label}" if args.label is not None else "samples"
    title = f"{model} on {run.config['dataset']}: {args.n} {what} (seed {args.seed})"
    plot.write_png(args.out, run.picture(args.n, seed=args.seed, title=title, labels=labels, columns=args.grid))
    print(f"wrote {args.n} samples to {args.out}")


def write_walks(run: Run, out: str, rows: int, steps: int, seed: int, label: int | None) -> None:
    """Latent walks between random pairs of the prior's points (spherical for a Gaussian prior,
    linear for the uniform one), one a row: a PNG grid, or for a ``.gif`` an animation whose frame
    ``t`` shows every walk's ``t``-th point (forth and back)."""
    rng = np.random.default_rng(seed)
    z0, z1 = to_numpy(run.gan.noise(rows, rng)), to_numpy(run.gan.noise(rows, rng))
    method = "spherical" if run.gan.prior == "normal" else "linear"
    classes = run.gan.num_classes
    walks = []
    for r in range(rows):
        lab = None if not classes else np.full(steps, label if label is not None else r % classes)
        path = latent_path(z0[r], z1[r], steps, method)
        if run.truncation is not None:  # psi * slerp(z0, z1) = slerp(psi z0, psi z1), defined for psi = 0 too
            path = path * path.dtype.type(run.truncation)
        walks.append(run.decode(run.gan.generate(path, labels=lab)))
    images = np.stack(walks)  # (rows, steps, C, H, W)
    if out.lower().endswith(".gif"):
        frames = [plot.image_grid(images[:, t], columns=rows) for t in range(steps)]
        plot.write_gif(out, frames + frames[-2:0:-1], frame_ms=120)
    else:
        plot.write_png(out, plot.image_grid(images.reshape(rows * steps, *images.shape[2:]), columns=steps))


def style_mixing_grid(run: Run, seed: int, sources: int = 6) -> np.ndarray:
    """StyleGAN's figure 3 at MNIST scale: the first row draws ``sources`` column sources, the first
    column ``sources`` row sources; each cell takes its row source's coarse styles (4x4 and 8x8
    layers) and its column source's finer ones, with the column source's noise."""
    gan, g = run.gan, run.gan.generator
    rng = np.random.default_rng(seed)
    cols, rows = gan.noise(sources, rng), gan.noise(sources, rng)
    with gan.averaged_weights():
        g.eval()
        try:
            with no_grad():
                top = to_numpy(g(cols).data)
                left = to_numpy(g(rows).data)
                cells = [to_numpy(g.mixed(rows[i : i + 1].repeat(sources, axis=0), cols, 4).data) for i in range(sources)]
        finally:
            g.train()
    blank = np.full_like(top[:1], -1.0)
    grid = [np.concatenate([blank, top])]
    grid += [np.concatenate([left[i : i + 1], cells[i]]) for i in range(sources)]
    images = run.spec.unscale(np.concatenate(grid).astype(np.float64))
    return plot.image_grid(images, columns=sources + 1)


#: The rows of ``pygan eval``'s table: key, label, format, key of the standard error.
_ROWS: tuple[tuple[str, str, str, str | None], ...] = (
    ("modes_covered", "modes covered", "{:.0f}", None),
    ("high_quality", "high-quality samples (%)", "{:.1f}", None),
    ("parzen", "Parzen log-likelihood (nats)", "{:.1f}", "parzen_stderr"),
    ("fid", "FID (classifier features)", "{:.3f}", None),
    ("kid", "KID", "{:.4g}", "kid_stderr"),
    ("precision", "precision (k=3)", "{:.3f}", None),
    ("recall", "recall (k=3)", "{:.3f}", None),
    ("classifier_score", "classifier score", "{:.3f}", "classifier_score_stderr"),
)
_SCALE = {"high_quality": 100.0}


def _cell(values: dict[str, float], key: str, fmt: str, se: str | None) -> str:
    if key not in values:
        return "-"
    text = fmt.format(values[key] * _SCALE.get(key, 1.0))
    if se is not None and se in values:
        text += " +- " + fmt.format(values[se] * _SCALE.get(se, 1.0))
    return text


def _image_scores(x: np.ndarray, validation: np.ndarray, test: np.ndarray, dataset: str, seed: int) -> dict[str, float]:
    p = metrics.parzen_log_likelihood(x, validation, test)
    scores = {"parzen": p.mean, "parzen_stderr": p.stderr, "parzen_sigma": p.sigma}
    if dataset in classifier.CLASSIFIER_DATASETS:
        scores.update(metrics.image_metrics(x, test, dataset, seed=seed))
    return scores


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """``pygan eval``: one table of the model's metrics beside the real data's (the floor): mode
    coverage on toy data; on images the 2014 paper's Parzen protocol and, in pygan's classifier's
    feature space, FID, KID, precision/recall and the classifier score."""
    start = time.perf_counter()
    run = _from_checkpoint(args.checkpoint, args.backend)
    cfg = run.config
    if cfg["model"] in models.TRANSLATION_MODELS:
        return _evaluate_translation(args, run, start)
    if run.toy:
        n = args.samples or 2500
        model = metrics.mode_coverage(run.samples(n, seed=args.seed), run.means, run.sigma)
        real = metrics.mode_coverage(data.toy_samples(cfg["dataset"], n, seed=args.seed + 1), run.means, run.sigma)
        protocol = f"{n} samples; high quality: within 3 sigma of the nearest mode; real data: {n} true samples"
    else:
        n = args.samples or 10000
        if run.folder is not None:
            train_x, validation, test_x = recipes.folder_images(cfg)
        else:
            folder = args.data or cfg.get("data")
            train_x, _ = data.load_images(cfg["dataset"], "train", folder)
            test_x, _ = data.load_images(cfg["dataset"], "test", folder)
            validation = validation_images(train_x)
        test = test_x[: args.test_size]
        model = _image_scores(run.samples(n, seed=args.seed), validation, test, cfg["dataset"], args.seed)
        real = _image_scores(train_x[: min(n, 50000)], validation, test, cfg["dataset"], args.seed)
        protocol = (
            f"{n} samples against {len(test)} test images; real data: the first {min(n, len(train_x), 50000)} training "
            f"images; Parzen bandwidth {model['parzen_sigma']:.3f} (real: {real['parzen_sigma']:.3f}) chosen on "
            f"{len(validation)} validation images"
        )
    print(f"{checkpoint_path(args.checkpoint)}: {cfg['model']} on {cfg['dataset']}")
    _print_table(("metric", "model", "real data"),
                 [(label, _cell(model, k, fmt, se), _cell(real, k, fmt, se)) for k, label, fmt, se in _ROWS if k in model])
    print(f"({protocol}; {time.perf_counter() - start:.1f} s)")
    result = {"checkpoint": str(checkpoint_path(args.checkpoint)), "model_name": cfg["model"], "dataset": cfg["dataset"],
              "protocol": protocol, "model": model, "real": real}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _evaluate_translation(args: argparse.Namespace, run: Run, start: float) -> dict[str, Any]:
    """``pygan eval`` of SRGAN (PSNR, SSIM, the classifier's accuracy, beside bicubic upsampling)
    and CycleGAN (L1 and PSNR of G_AB(a) to the true map, beside the identity; the cycle's L1)."""
    cfg = run.config
    test, labels = data.load_images("mnist", "test", args.data or cfg.get("data"))
    test, labels = test[: args.test_size], labels[: args.test_size]
    print(f"{checkpoint_path(args.checkpoint)}: {cfg['model']} on {len(test)} MNIST test digits")
    if cfg["model"] == "srgan":
        s = translation.sr_scores(run.gan, test, labels, classifier.load("mnist"))
        _print_table(("metric", "srgan", "bicubic"), [
            ("PSNR (dB)", f"{s['sr_psnr']:.2f} ± {s['sr_psnr_stderr']:.2f}", f"{s['bicubic_psnr']:.2f} ± {s['bicubic_psnr_stderr']:.2f}"),
            ("SSIM", f"{s['sr_ssim']:.4f}", f"{s['bicubic_ssim']:.4f}"),
            ("classifier accuracy (%)", f"{100 * s['sr_accuracy']:.2f}", f"{100 * s['bicubic_accuracy']:.2f}"),
        ])
        protocol = (f"7x7 inputs (4x4 means) of {len(test)} test digits, x4; the classifier is right on "
                    f"{100 * s['hr_accuracy']:.2f}% of the 28x28 originals")
    else:
        task = cfg.get("task") or "invert"
        s = translation.cycle_scores(run.gan, task, test)
        rows = [("cycle L1, G_BA(G_AB(a)) to a", f"{s['cycle_l1']:.4f}", "")]
        if "l1" in s:
            rows = [("L1 of G_AB(a) to the true map", f"{s['l1']:.4f}", f"{s['identity_l1']:.4f}"),
                    ("PSNR of G_AB(a) (dB)", f"{s['psnr']:.2f}", f"{s['identity_psnr']:.2f}"),
                    ("L1 of G_BA(true map of a) to a", f"{s['ba_l1']:.4f}", f"{s['identity_l1']:.4f}"), *rows]
        _print_table(("metric", "cyclegan", "identity"), rows)
        protocol = f"task {task}: {len(test)} test digits as domain A"
    print(f"({protocol}; {time.perf_counter() - start:.1f} s)")
    result = {"checkpoint": str(checkpoint_path(args.checkpoint)), "model_name": cfg["model"], "dataset": cfg["dataset"],
              "protocol": protocol, "model": s}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


#: Exceptions that end a command with one line (exit status 1) rather than a traceback: pygan's
#: own errors name the argument or file; the rest are the system's (a full disk, no memory, no CuPy).
RUNTIME_ERRORS = (RunFailed, data.DataError, io.CheckpointError, TrainingDiverged, ValueError, TypeError, OSError,
                  ImportError, MemoryError, RuntimeError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pygan`` console script: 0 on success, 2 for a mistake in the command
    line, 1 for a run that failed; errors are one line (``--debug`` adds the traceback)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train" and args.config is not None:
            args = build_parser(config_defaults(args.config)).parse_args(argv)
        if args.command == "train" and args.seeds is not None:
            train_seeds(args)
        elif args.command == "train":
            train(args)
        elif args.command == "sample":
            sample(args)
        elif args.command == "plot":
            plot_run(args)
        elif args.command == "export":
            export(args)
        else:
            evaluate(args)
    except UsageError as e:
        if args.debug:
            raise
        return _report(str(e), 2, e)
    except RUNTIME_ERRORS as e:
        if args.debug:
            raise
        if isinstance(e, RunFailed):
            text = str(e)
        elif isinstance(e, (data.DataError, io.CheckpointError, TrainingDiverged)):
            text = f"pygan {args.command}: error: {e}"
        else:
            text = f"pygan {args.command}: error: {_one_line(e)} (--debug shows the traceback)"
        return _report(text, 1, e)
    except BaseException:
        if _GROUP is not None and _GROUP.size > 1:
            import traceback

            traceback.print_exc()
            _GROUP.abort(1)
        raise
    return 0


#: How long a rank other than 0 of a --distributed run waits, after a failure, for rank 0 to end
#: the job (when the failure was everyone's, so that its message is printed once).
ABORT_GRACE_S = 3.0


def _report(text: str, status: int, e: BaseException) -> int:
    """Print a failure's one line and return its exit status. In a --distributed run: a failure
    the ranks agreed on is printed by rank 0 alone; any other ends every rank (the others may be
    waiting in a collective for this one): rank 0 at once, another rank after giving rank 0
    ``ABORT_GRACE_S`` to do so first (the same failure on every rank: printed once)."""
    group = _GROUP
    if group is None or group.size == 1:
        print(text, file=sys.stderr)
        return status
    if getattr(e, "agreed", False):
        if group.rank == 0:
            print(text, file=sys.stderr)
        return status
    if group.rank:
        time.sleep(ABORT_GRACE_S)
        text += f" (rank {group.rank} of {group.size})"
    print(text, file=sys.stderr)
    group.abort(status)
    return status
def _one_line(e: BaseException) -> str:
    """An exception as one line: its message (the type's name where the message alone is unclear)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, ValueError) else f"{type(e).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
