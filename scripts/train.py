#!/usr/bin/env python3
"""Train a small classifier and report its held-out accuracy and loss through jobreport.

    train.py --model /srv/models/blobs.json --epochs 30

A multinomial logistic regression (softmax) in pure Python, trained with mini-batch
gradient descent on a synthetic data set it generates from a seed: three classes of points
around different centres in four dimensions, one fifth held out for evaluation. The model
(weights, biases, the metrics) is written atomically as JSON.

Reported through ``job_metrics("train")``:

- jobreport_last_items: training examples seen (examples x epochs)
- jobreport_last_size_bytes: size of the saved model
- gauges ``train_accuracy`` and ``train_loss`` (held-out) and ``train_epochs``.

``--min-accuracy`` turns a model that came out worse than expected into a failed run, so
that the "last run failed" alert fires for it, not only for crashes. Under
``jobreport run --job train`` the figures join the wrapper's run (one run, not two).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from jobreport import JobMetrics, current_job, job_metrics

PROG = "train"
Vector = list[float]


def make_data(n: int, seed: int, classes: int = 3, dims: int = 4,
              spread: float = 1.6) -> list[tuple[Vector, int]]:
    """``n`` points: class k is a Gaussian cloud around a random centre."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    centres = [[rng.uniform(-3, 3) for _ in range(dims)] for _ in range(classes)]
    data = []
    for i in range(n):
        label = i % classes
        data.append(([rng.gauss(c, spread) for c in centres[label]], label))
    rng.shuffle(data)
    return data


def softmax(scores: Vector) -> Vector:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


class Model:
    """Softmax regression: p(class | x) = softmax(W x + b)."""

    def __init__(self, classes: int, dims: int) -> None:
        self.weights = [[0.0] * dims for _ in range(classes)]
        self.biases = [0.0] * classes

    def probabilities(self, x: Vector) -> Vector:
        return softmax([sum(w * v for w, v in zip(row, x, strict=True)) + b
                        for row, b in zip(self.weights, self.biases, strict=True)])

    def predict(self, x: Vector) -> int:
        p = self.probabilities(x)
        return p.index(max(p))

    def step(self, batch: Sequence[tuple[Vector, int]], rate: float) -> None:
        """One gradient-descent step on the mean cross-entropy of ``batch``."""
        grad_w = [[0.0] * len(row) for row in self.weights]
        grad_b = [0.0] * len(self.biases)
        for x, label in batch:
            p = self.probabilities(x)
            for k, pk in enumerate(p):
                err = pk - (1.0 if k == label else 0.0)
                grad_b[k] += err
                for j, v in enumerate(x):
                    grad_w[k][j] += err * v
        scale = rate / len(batch)
        for k, row in enumerate(self.weights):
            self.biases[k] -= scale * grad_b[k]
            for j in range(len(row)):
                row[j] -= scale * grad_w[k][j]

    def evaluate(self, data: Sequence[tuple[Vector, int]]) -> tuple[float, float]:
        """Accuracy and mean cross-entropy loss on ``data``."""
        correct = 0
        loss = 0.0
        for x, label in data:
            p = self.probabilities(x)
            correct += p.index(max(p)) == label
            loss -= math.log(max(p[label], 1e-12))
        return correct / len(data), loss / len(data)

    def to_json(self) -> dict[str, object]:
        return {"weights": self.weights, "biases": self.biases}

    @classmethod
    def from_json(cls, data: dict[str, list]) -> Model:  # type: ignore[type-arg]
        model = cls(len(data["biases"]), len(data["weights"][0]))
        model.weights = data["weights"]
        model.biases = data["biases"]
        return model


def save_atomically(path: Path, payload: dict[str, object]) -> int:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path.stat().st_size


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Train a small classifier, reported.")
    p.add_argument("--model", type=Path, default=Path("model.json"),
                   help="where to save the model (default model.json)")
    p.add_argument("--examples", type=int, default=1500, help="data set size (default 1500)")
    p.add_argument("--epochs", type=int, default=20, help="passes over the data (default 20)")
    p.add_argument("--rate", type=float, default=0.1, help="learning rate (default 0.1)")
    p.add_argument("--batch", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--job", default="train", help="jobreport job name (default train)")
    p.add_argument("--expect-every", help="expected interval, e.g. 7d (for overdue alerts)")
    p.add_argument("--min-accuracy", type=float, default=0.0,
                   help="fail the run when held-out accuracy ends below this")
    return p


def train(args: argparse.Namespace, job: JobMetrics) -> tuple[float, float]:
    """Train, save and report; return (held-out accuracy, held-out loss)."""
    data = make_data(args.examples, args.seed)
    cut = len(data) * 4 // 5
    training, held_out = data[:cut], data[cut:]
    model = Model(classes=3, dims=len(data[0][0]))
    rng = random.Random(args.seed + 1)  # noqa: S311
    for _ in range(args.epochs):
        rng.shuffle(training)
        for start in range(0, len(training), args.batch):
            model.step(training[start:start + args.batch], args.rate)
        job.add_items(len(training))
    accuracy, loss = model.evaluate(held_out)
    job.gauge("train_accuracy", accuracy, help="Accuracy on the held-out fifth")
    job.gauge("train_loss", loss, help="Mean cross-entropy on the held-out fifth")
    job.gauge("train_epochs", args.epochs, help="Passes over the training data")
    job.set_size(save_atomically(args.model, {**model.to_json(), "seed": args.seed,
                                              "examples": args.examples,
                                              "accuracy": accuracy, "loss": loss}))
    return accuracy, loss


def run(args: argparse.Namespace) -> int:
    """One training run; main() reports each call of it with the decorator form."""
    accuracy, loss = train(args, current_job())
    print(f"{args.model}: held-out accuracy {accuracy:.3f}, loss {loss:.4f}")
    if accuracy < args.min_accuracy:
        # SystemExit(n) inside the reported call: outcome failure with exit code n
        print(f"{PROG}: error: accuracy {accuracy:.3f} is below --min-accuracy "
              f"{args.min_accuracy}", file=sys.stderr)
        raise SystemExit(3)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.epochs < 1 or args.batch < 1 or args.examples < 10:
        parser().error("--epochs and --batch must be at least 1, --examples at least 10")
    # the decorator form, applied here because the job name is an option:
    # @job_metrics("train") above `def run` does the same for a fixed name
    reported = job_metrics(args.job, expect_every=args.expect_every)(run)
    return reported(args)


if __name__ == "__main__":
    sys.exit(main())
