"""Short training runs (seconds each) that assert learning happened: an MLP with BatchNorm1d and
Dropout, a CNN with Conv2d/BatchNorm2d/pooling, and an Embedding bag, each on synthetic data
with plain SGD written here (the optimizers live in deepkern.optim) and the cross-entropy
computed as log_softmax + gather (the losses live in deepkern.nn.loss)."""

from __future__ import annotations

import deepkern as dk
import deepkern.nn.functional as F
import numpy as np
from deepkern import nn


def cross_entropy(logits, labels):
    logp = F.log_softmax(logits, dim=1)
    return -logp[np.arange(len(labels)), labels].mean()


def sgd(model, lr):
    with dk.no_grad():
        for p in model.parameters():
            p._array -= lr * p.grad._array
    model.zero_grad()


def train(model, x, y, steps, lr):
    losses = []
    for _ in range(steps):
        loss = cross_entropy(model(x), y)
        loss.backward()
        sgd(model, lr)
        losses.append(loss.item())
    return losses


def accuracy(model, x, y):
    model.eval()
    with dk.no_grad():
        pred = model(x).numpy().argmax(axis=1)
    model.train()
    return (pred == y).mean()


def test_mlp_learns_gaussian_blobs(rng):
    dk.manual_seed(0)
    centers = rng.standard_normal((3, 10)) * 2
    y = rng.integers(0, 3, 300)
    x = dk.tensor((centers[y] + rng.standard_normal((300, 10))).astype(np.float32))
    model = nn.Sequential(
        nn.Linear(10, 32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(32, 32),
        nn.GELU(),
        nn.Linear(32, 3),
    )
    losses = train(model, x, y, steps=60, lr=0.2)
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    assert accuracy(model, x, y) > 0.9


def test_cnn_learns_where_the_blob_is(rng):
    dk.manual_seed(1)
    n = 64
    y = rng.integers(0, 2, n)
    images = rng.standard_normal((n, 1, 12, 12)).astype(np.float32) * 0.5
    for i, label in enumerate(y):  # a bright 3x3 square in the left or the right half
        r, c = rng.integers(0, 9), rng.integers(0, 3) + 6 * label
        images[i, 0, r : r + 3, c : c + 3] += 2
    x = dk.tensor(images)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.LeakyReLU(0.1),
        nn.AvgPool2d(2),
        nn.AdaptiveAvgPool2d((1, 2)),
        nn.Flatten(),
        nn.Linear(16, 2),
    )
    losses = train(model, x, y, steps=60, lr=0.2)
    assert losses[-1] < 0.3 * losses[0], losses[::5]
    assert accuracy(model, x, y) > 0.9


class Bag(nn.Module):
    """Mean of the tokens' embeddings, then a linear classifier."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8, padding_idx=0)
        self.out = nn.Linear(8, 2)

    def forward(self, tokens):
        return self.out(self.emb(tokens).mean(dim=1))


def test_embedding_bag_learns_which_tokens_matter(rng):
    dk.manual_seed(2)
    tokens = rng.integers(1, 20, size=(200, 6))
    tokens[:, 5] = 0  # a padding position
    y = (np.isin(tokens, [1, 2, 3, 4, 5]).sum(axis=1) > 0).astype(np.int64)  # any "signal" token
    model = Bag()
    losses = train(model, dk.tensor(tokens), y, steps=150, lr=2.0)
    assert losses[-1] < 0.6 * losses[0], losses[::15]
    assert np.all(model.emb.weight.detach().numpy()[0] == 0)  # the padding row never moved
