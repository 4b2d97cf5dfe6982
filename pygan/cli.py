"""The ``pygan`` command: ``train`` a GAN (progress bar, sample pictures, JSONL log, checkpoints,
``--resume``), ``sample`` from a checkpoint, and ``eval`` a checkpoint with the literature's metrics."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import data, io, metrics, models, plot, recipes
from .backend import BACKENDS, _checks, backend_info, set_backend, to_numpy
from .gan import GAN, PRIORS, TrainingDiverged
from .optim import SGD, Adam, Optimizer, Schedule

CHECKPOINT = "checkpoint.pygan"
#: The toy-data defaults, chosen so that `pygan train` covers the ring's 8 modes sharply in under a minute.
TOY_EPOCHS = 50
TOY_PACK = 4
# Per-dataset training defaults where the ring's do not carry over: the grid of 25 needs a larger
# batch, many more epochs and a leaky-ReLU generator to cover its modes (README, "Figures").
TOY_SETTINGS: dict[str, dict[str, Any]] = {"grid25": {"epochs": 300, "batch_size": 256, "g_act": "leaky_relu"}}
LOG = "metrics.jsonl"


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pygan`` command."""
    parser = argparse.ArgumentParser(prog="pygan", description="Train, sample and evaluate small GANs.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a GAN (default: the MLP GAN on the ring of 8 Gaussians)")
    train.add_argument("--model", choices=models.MODELS, default="mlp")
    train.add_argument("--dataset", choices=data.DATASETS, default="ring8")
    train.add_argument("--epochs", type=int, default=None, help=f"default: {TOY_EPOCHS} on toy data (300 on grid25), 25 on images")
    train.add_argument("--batch-size", type=int, default=None, help="default: the model's (128 toy, 256 on grid25, 64 DCGAN/MLP, 100 paper-mlp)")
    train.add_argument("--loss", choices=_checks.GENERATOR_LOSSES, default="non_saturating")
    train.add_argument("--d-steps", type=int, default=1, help="discriminator steps per generator step (k)")
    train.add_argument("--pack", type=int, default=None, help=f"PacGAN: samples the discriminator judges at once (default: {TOY_PACK} on toy data, else 1)")
    train.add_argument("--label-smoothing", type=float, default=1.0, metavar="TARGET", help="real target, e.g. 0.9 (one-sided)")
    train.add_argument("--prior", choices=PRIORS, default=None, help="default: the model's")
    train.add_argument("--lr", type=float, default=None, help="default: the model's")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default=None,
                       help="default: adam; sgd is paper-mlp's original schedule (lr 0.1, momentum 0.5 -> 0.7)")
    train.add_argument("--norm", choices=("batch", "virtual"), default="batch", help="DCGAN generator normalisation")
    train.add_argument("--train-size", type=int, default=None, help="examples to train on (toy default 25600; images: all 50,000)")
    train.add_argument("--backend", choices=BACKENDS, default="cpu")
    train.add_argument("--threads", type=int, default=None, help="native-kernel threads (default: all cores)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data", default=None, help="folder with the MNIST files (default: $PYGAN_DATA)")
    train.add_argument("--out", default="pygan-run", help="output folder (checkpoint, pictures, log)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")

    sample = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG")
    sample.add_argument("checkpoint")
    sample.add_argument("--n", type=int, default=100)
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--backend", choices=BACKENDS, default="cpu")

    ev = sub.add_parser("eval", help="print a checkpoint's metrics (mode coverage, or Parzen log-likelihood)")
    ev.add_argument("checkpoint")
    ev.add_argument("--samples", type=int, default=None, help="generated samples (2,500 toy; 10,000 images)")
    ev.add_argument("--test-size", type=int, default=10000, help="test digits for the Parzen estimate")
    ev.add_argument("--data", default=None, help="folder with the MNIST files (default: $PYGAN_DATA)")
    ev.add_argument("--seed", type=int, default=0)
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
        self.labels: np.ndarray | None = None
        self.x: np.ndarray | None = None
        if self.toy:
            self.means, self.sigma = data.toy_modes(config["dataset"])
        num_classes = recipes.num_classes(config)
        if load_data and self.toy:
            self.x, labels = data.toy_labelled(config["dataset"], config["train_size"], seed=config["seed"])
            self.labels = labels if num_classes else None
        elif load_data:
            x, labels = data.load_images(config["dataset"], "train", config.get("data"))
            n = min(config["train_size"], 50000)
            self.x, self.labels = x[:n], (labels[:n] if num_classes else None)
        marginals = self.x.mean(axis=0) if self.x is not None and not self.toy else None
        self.spec = recipes.build_spec(config, marginals)
        self.flat = not self.toy and config["model"] != "dcgan"
        if self.x is not None and self.flat:
            self.x = self.x.reshape(len(self.x), -1)
        opt = dict(self.spec.optimizer)
        if config.get("lr") is not None:
            opt["lr"] = config["lr"]
        self.opt = opt
        d_lr = opt["lr"] * opt.get("d_lr_scale", 1.0)
        g_opt, d_opt = self._optimizer(self.spec.generator, opt["lr"]), self._optimizer(self.spec.discriminator, d_lr)
        self.gan = GAN(
            self.spec.generator,
            self.spec.discriminator,
            g_opt,
            d_opt,
            latent_dim=self.spec.latent_dim,
            loss=config["loss"],
            d_steps=config["d_steps"],
            prior=config.get("prior") or self.spec.prior,
            real_target=config["label_smoothing"],
            num_classes=num_classes,
            pack=config["pack"],
            d_max_norm=self.spec.d_max_norm,
            updates=self.spec.updates,
            seed=config["seed"],
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

    def _optimizer(self, net: Any, lr: float) -> Optimizer:
        if self.opt["kind"] == "sgd":
            return SGD(net.parameters(), lr=lr, momentum=self.opt.get("momentum", 0.0))
        return Adam(net.parameters(), lr=lr)

    def transform(self, batch: np.ndarray) -> np.ndarray:
        """Host batch -> the generator's output range."""
        return batch if self.toy else self.spec.scale_data(batch)

    def samples(self, n: int, seed: int) -> np.ndarray:
        """``n`` generated samples on the host, in data units ([0, 1] pixels for images)."""
        out = to_numpy(self.gan.sample(n, seed=seed)).astype(np.float64)
        return out if self.toy else self.spec.unscale(out).reshape(n, 1, 28, 28)

    def picture(self, n: int, seed: int) -> np.ndarray:
        """A PNG-ready picture: a scatter against the true density (toy) or a grid of images."""
        if self.toy:
            return plot.scatter(self.samples(n, seed), self.means, self.sigma)
        return plot.image_grid(self.samples(n, seed), columns=10)

    def evaluate(self, seed: int) -> dict[str, float]:
        """Cheap per-epoch metrics: mode coverage on 2,500 samples for toy data."""
        if not self.toy:
            return {}
        return metrics.mode_coverage(self.samples(2500, seed), self.means, self.sigma)


def _train_config(args: argparse.Namespace) -> dict[str, Any]:
    toy = args.dataset in data.TOY_DATASETS
    preset = TOY_SETTINGS.get(args.dataset, {})
    if args.model in ("paper-mlp", "dcgan") and toy:
        raise SystemExit(f"pygan train: error: --model {args.model} needs an image dataset (mnist, fashion-mnist)")
    if args.optimizer == "sgd" and args.model != "paper-mlp":
        raise SystemExit("pygan train: error: --optimizer sgd is paper-mlp's original schedule; other models use adam")
    for name in ("epochs", "batch_size", "train_size", "threads", "pack"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise SystemExit(f"pygan train: error: --{name.replace('_', '-')} must be >= 1, got {v}")
    return {
        "model": args.model,
        "dataset": args.dataset,
        "epochs": args.epochs or (preset.get("epochs", TOY_EPOCHS) if toy else 25),
        "batch_size": args.batch_size or preset.get("batch_size"),
        "g_act": preset.get("g_act"),
        "loss": args.loss,
        "d_steps": args.d_steps,
        "pack": args.pack or (TOY_PACK if toy else 1),
        "label_smoothing": args.label_smoothing,
        "prior": args.prior,
        "lr": args.lr,
        "norm": args.norm,
        "optimizer": args.optimizer,
        "train_size": args.train_size or (25600 if toy else 50000),
        "seed": args.seed,
        "data": args.data,
    }


def _configure_backend(name: str, threads: int | None) -> None:
    set_backend(name)
    if threads is not None:
        from . import set_num_threads

        set_num_threads(threads)


def _trim_log(path: Path, epoch: int) -> None:
    """Keep only log lines of epochs the checkpoint has (a resumed run rewrites the rest)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("epoch", 0) <= epoch]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


class _Reporter:
    """fit() callbacks: progress bar, per-epoch picture, log line and checkpoint."""

    def __init__(self, run: Run, out: Path, epochs: int, batches: int, start: float) -> None:
        from tqdm import tqdm

        self.run, self.out, self.epochs, self.batches, self.start = run, out, epochs, batches, start
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
            self.bar.set_postfix(
                d_loss=f"{stats['d_loss']:.3f}", g_loss=f"{stats['g_loss']:.3f}",
                D_x=f"{stats['d_x']:.2f}", D_G_z=f"{stats['d_g_z']:.2f}", refresh=False,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, gan: GAN, summary: dict[str, float]) -> None:
        self.close()
        cfg = self.run.config
        scores = self.run.evaluate(seed=cfg["seed"] + 12345)
        picture = self.out / "samples" / f"epoch_{gan.epoch:03d}.png"
        plot.write_png(picture, self.run.picture(2500 if self.run.toy else 100, seed=cfg["seed"] + 777))
        record = {"epoch": gan.epoch, "steps": gan.steps, "seconds": round(time.perf_counter() - self.start, 3)}
        record.update({k: round(v, 6) for k, v in summary.items()})
        record.update(scores)
        with (self.out / LOG).open("a") as f:
            f.write(json.dumps(record) + "\n")
        io.save_gan(self.out / CHECKPOINT, gan, cfg)
        line = (
            f"epoch {gan.epoch}/{self.epochs}  d_loss {summary['d_loss']:.3f}  g_loss {summary['g_loss']:.3f}  "
            f"D(x) {summary['d_x']:.2f}  D(G(z)) {summary['d_g_z']:.2f}  "
            f"acc real/fake {summary['d_acc_real']:.2f}/{summary['d_acc_fake']:.2f}"
        )
        if scores:
            line += f"  modes {scores['modes_covered']:.0f}/{scores['modes_total']:.0f}  high-quality {100 * scores['high_quality']:.1f}%"
        print(f"{line}  ({time.perf_counter() - self.start:.1f} s)", flush=True)


def train(args: argparse.Namespace) -> dict[str, float]:
    """``pygan train``: returns the last epoch's metrics."""
    out = Path(args.out)
    ckpt = out / CHECKPOINT
    if args.resume:
        if not ckpt.exists():
            raise SystemExit(f"pygan train: error: --resume: no checkpoint at {ckpt}")
        _, meta = io.load(ckpt)
        config = dict(meta.get("config", {}))
        if args.epochs is not None:
            config["epochs"] = args.epochs
    else:
        config = _train_config(args)
    _configure_backend(args.backend, args.threads)
    run = Run(config)
    config["batch_size"] = config["batch_size"] or run.spec.batch_size
    if config["batch_size"] % config["pack"]:
        raise SystemExit(f"pygan train: error: --batch-size {config['batch_size']} must be a multiple of --pack {config['pack']}")
    out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        io.restore_gan(ckpt, run.gan)
        _trim_log(out / LOG, run.gan.epoch)
        print(f"resumed from {ckpt} at epoch {run.gan.epoch}, batch {run.gan.batch_in_epoch} (step {run.gan.steps})")
    else:
        (out / LOG).unlink(missing_ok=True)
    print(backend_info())
    assert run.x is not None
    print(
        f"training {config['model']} on {config['dataset']} ({len(run.x)} examples, batch {config['batch_size']}, "
        f"{config['epochs']} epochs, loss {config['loss']}, pack {config['pack']}) -> {out}"
    )
    batches = len(run.x) // config["batch_size"]
    start = time.perf_counter()
    reporter = _Reporter(run, out, config["epochs"], batches, start)
    try:
        result = run.gan.fit(
            run.x, config["epochs"], config["batch_size"], labels=run.labels, callbacks=[reporter],
            seed=config["seed"], transform=run.transform, schedule=run.schedule, d_schedule=run.d_schedule,
        )
    except TrainingDiverged as e:
        reporter.close()
        kept = f"the last good checkpoint is {ckpt}" if ckpt.exists() else "no checkpoint was written"
        raise SystemExit(f"pygan train: error: {e}; {kept}") from None
    reporter.close()
    if result.interrupted:
        io.save_gan(ckpt, run.gan, config)
        print(f"interrupted: saved {ckpt} at epoch {run.gan.epoch}, batch {run.gan.batch_in_epoch}; continue with --resume")
        return {}
    return run.evaluate(seed=config["seed"] + 12345)


def _from_checkpoint(path: str, backend: str) -> Run:
    _configure_backend(backend, None)
    _, meta = io.load(path)
    config = meta.get("config")
    if not isinstance(config, dict) or "model" not in config:
        raise SystemExit(f"pygan: error: {path}: the checkpoint has no run configuration (not written by pygan train)")
    run = Run(config, load_data=False)
    io.restore_gan(path, run.gan)
    return run


def sample(args: argparse.Namespace) -> None:
    """``pygan sample``: write ``--n`` samples of a checkpoint as a PNG."""
    if args.n < 1:
        raise SystemExit(f"pygan sample: error: --n must be >= 1, got {args.n}")
    run = _from_checkpoint(args.checkpoint, args.backend)
    plot.write_png(args.out, run.picture(args.n, seed=args.seed))
    print(f"wrote {args.n} samples to {args.out}")


def evaluate(args: argparse.Namespace) -> dict[str, float]:
    """``pygan eval``: mode coverage (toy data) or the 2014 paper's Parzen protocol (images)."""
    run = _from_checkpoint(args.checkpoint, args.backend)
    cfg = run.config
    if run.toy:
        n = args.samples or 2500
        scores = metrics.mode_coverage(run.samples(n, seed=args.seed), run.means, run.sigma)
        print(
            f"{cfg['dataset']}: {scores['modes_covered']:.0f}/{scores['modes_total']:.0f} modes covered, "
            f"{100 * scores['high_quality']:.1f}% high-quality samples (of {n}, within 3 sigma of a mode)"
        )
        return scores
    n = args.samples or 10000
    start = time.perf_counter()
    train_x, _ = data.load_images(cfg["dataset"], "train", args.data or cfg.get("data"))
    test_x, _ = data.load_images(cfg["dataset"], "test", args.data or cfg.get("data"))
    validation = train_x[50000:51000]  # the paper trains on digits 0-50k and validates on 50k-60k
    if len(validation) == 0:  # a smaller folder (tests): hold out its tail
        validation = train_x[-max(1, min(1000, len(train_x) // 5)) :]
    test = test_x[: args.test_size]
    result = metrics.parzen_log_likelihood(run.samples(n, seed=args.seed), validation, test)
    print(
        f"Parzen window log-likelihood on {len(test)} {cfg['dataset']} test images: {result.mean:.1f} +- {result.stderr:.1f} "
        f"(sigma {result.sigma:.3f} chosen on {len(validation)} validation images; {n} samples; "
        f"{time.perf_counter() - start:.1f} s)"
    )
    return {"parzen_mean": result.mean, "parzen_stderr": result.stderr, "sigma": result.sigma}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pygan`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            train(args)
        elif args.command == "sample":
            sample(args)
        else:
            evaluate(args)
    except (data.DataError, io.CheckpointError) as e:
        print(f"pygan {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
