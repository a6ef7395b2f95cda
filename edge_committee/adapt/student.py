"""The student's side of self-training: fine-tune a member with noise on labeled + pseudo-labeled data.

Noisy Student trains the student *noised* (input augmentation, dropout, stochastic depth) so
that it must do better than the un-noised teacher to match its labels. Here, for any PyTorch
member (no change to its code):

- input noise: a random translation of up to ``shift`` of the input size (the border filled
  with the image's minimum), an optional horizontal flip, and a random brightness/contrast
  change in the normalised input space (``x * (1 + a) + b``, ``a, b ~ U(-jitter, jitter)``);
- dropout on the input of the last ``nn.Linear`` (a forward pre-hook, active in training only);
- the loss: cross-entropy against soft targets (one-hot for labeled samples, the teacher's
  probabilities for pseudo-labeled ones), in one shuffled stream.

BatchNorm layers train as well, so their statistics move towards the footage's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from edge_committee._lazy import require
from edge_committee._util import progress


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Student noise and optimisation (defaults: a short, gentle fine-tune)."""

    epochs: int = 4  #: passes over labeled + pseudo-labeled samples
    batch_size: int = 128
    lr: float = 0.01  #: peak SGD learning rate (Nesterov momentum 0.9, cosine decay to 0)
    weight_decay: float = 5e-4
    dropout: float = 0.3  #: on the last linear layer's input
    shift: float = 0.08  #: largest translation, as a fraction of the input size
    flip: bool = False  #: random horizontal flips (right for symmetric classes only)
    jitter: float = 0.2  #: brightness/contrast noise in the normalised space
    labeled_ratio: float = 1.0  #: labeled samples per pseudo-labeled sample, drawn each epoch
    seed: int = 0


def add_dropout(model, p: float):
    """Dropout ``p`` on the input of the model's last ``nn.Linear``; returns the hook handle (or None)."""
    torch = require("torch")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears or p <= 0:
        return None
    return linears[-1].register_forward_pre_hook(
        lambda mod, args: (torch.nn.functional.dropout(args[0], p, mod.training),) + tuple(args[1:]))


def noisy(x, cfg: NoiseConfig, gen):
    """Input noise for a batch (N, C, H, W) float32 tensor: shift, optional flip, brightness/contrast."""
    torch = require("torch")
    n, _, h, w = x.shape
    if cfg.shift > 0:
        pad = max(1, round(cfg.shift * max(h, w)))
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), value=float(x.min()))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
        chans = torch.arange(x.shape[1])[None, :, None, None]
        x = xp[torch.arange(n)[:, None, None, None], chans, rows, cols]
    if cfg.flip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cfg.jitter > 0:
        a = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * cfg.jitter
        b = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * cfg.jitter
        x = x * (1 + a) + b
    return x


def finetune(model, inputs: np.ndarray, targets: np.ndarray, labeled_x: np.ndarray, labeled_y: np.ndarray,
             cfg: NoiseConfig, log: Callable[[str], None] = print):
    """Fine-tune ``model`` in place on pseudo-labeled ``inputs``/``targets`` plus labeled samples.

    Args:
        model: the student (a ``torch.nn.Module``), starting from its current weights.
        inputs: (P, ...) float32 preprocessed footage samples; ``targets`` (P, C) soft labels.
        labeled_x: (L, ...) float32 preprocessed labeled samples; ``labeled_y`` (L,) int labels.
        cfg: noise and optimisation settings.
        log: called with one line per epoch.

    Returns the model in eval mode, without the dropout hook.
    """
    torch = require("torch")
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    c = targets.shape[1]
    n_lab = min(len(labeled_x), round(cfg.labeled_ratio * len(inputs)))
    steps = math.ceil((len(inputs) + n_lab) / cfg.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / (cfg.epochs * steps))))
    hook = add_dropout(model, cfg.dropout)
    try:
        for epoch in range(cfg.epochs):
            lab = rng.choice(len(labeled_x), n_lab, replace=False)
            x = torch.from_numpy(np.concatenate([inputs, labeled_x[lab]]))
            t = torch.from_numpy(np.concatenate([targets, np.eye(c, dtype=np.float32)[labeled_y[lab]]]))
            loss = _epoch(model, x, t, opt, sched, cfg, gen, f"student epoch {epoch + 1}/{cfg.epochs}")
            log(f"student epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f} on {len(inputs)} pseudo-labeled + "
                f"{n_lab} labeled samples")
    finally:
        if hook is not None:
            hook.remove()
    return model.eval()


def _epoch(model, x, t, opt, sched, cfg: NoiseConfig, gen, desc: str) -> float:
    torch = require("torch")
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    total, seen = 0.0, 0
    starts = range(0, len(x), cfg.batch_size)
    for s in progress(starts, total=len(starts), desc=desc, unit="batch"):
        idx = perm[s : s + cfg.batch_size]
        logp = torch.log_softmax(model(noisy(x[idx], cfg, gen)), dim=1)
        loss = -(t[idx] * logp).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total, seen = total + loss.item() * len(idx), seen + len(idx)
    return total / max(seen, 1)
