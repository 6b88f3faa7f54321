"""Training a PP-TSMv2 on preprocessed clip tensors (AdamW, cosine schedule)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .optional import lazy
from .progress import progress

paddle = lazy("paddle")
F = lazy("paddle.nn.functional")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 250  # at most
    batch_size: int = 8
    # Stop once the mean accuracy of the last ``window`` training batches reaches ``stop_at``
    # (after at least ``min_steps``). Held-out clips are never looked at while training.
    stop_at: float = 0.97
    window: int = 12
    min_steps: int = 40
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    val_top1: float
    final_loss: float
    seconds: float
    steps: int

    def to_dict(self) -> dict:
        return asdict(self)


def train(model, x_train: np.ndarray, y_train: np.ndarray, cfg: TrainConfig, augment=None) -> TrainResult:
    """Train ``model`` in place. ``x_train`` is ``[N, T, 3, S, S]`` float32, ``y_train`` ``[N]``.

    ``augment(x, y, rng) -> (x, y)``, if given, transforms each batch.
    """
    paddle.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    schedule = paddle.optimizer.lr.CosineAnnealingDecay(cfg.lr, T_max=cfg.steps)
    opt = paddle.optimizer.AdamW(schedule, parameters=model.parameters(), weight_decay=cfg.weight_decay)
    model.train()
    start = time.time()
    order = rng.permutation(len(x_train))
    cursor = 0
    loss_value = float("nan")
    recent: list[float] = []
    steps_done = 0
    for step in progress(range(cfg.steps), desc="train", unit="step"):
        if cursor + cfg.batch_size > len(order):
            order, cursor = rng.permutation(len(x_train)), 0
        idx = order[cursor : cursor + cfg.batch_size]
        cursor += cfg.batch_size
        xb, yb = x_train[idx], y_train[idx]
        if augment is not None:
            xb, yb = augment(xb, yb, rng)
        logits = model(paddle.to_tensor(np.ascontiguousarray(xb)))
        loss = F.cross_entropy(logits, paddle.to_tensor(yb.astype("int64")))
        loss.backward()
        opt.step()
        opt.clear_grad()
        schedule.step()
        loss_value = float(loss)
        steps_done = step + 1
        recent = (recent + [float(np.mean(np.argmax(logits.numpy(), 1) == yb))])[-cfg.window :]
        if steps_done >= cfg.min_steps and len(recent) == cfg.window and np.mean(recent) >= cfg.stop_at:
            break
    model.eval()
    return TrainResult(val_top1=float("nan"), final_loss=loss_value, seconds=time.time() - start, steps=steps_done)


def predict(model, x: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Logits of ``model`` (eval mode) for ``x`` ``[N, T, 3, S, S]``."""
    model.eval()
    out = []
    with paddle.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(paddle.to_tensor(x[i : i + batch_size])).numpy())
    return np.concatenate(out)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))
