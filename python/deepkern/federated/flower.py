"""A deepkern model as a Flower client (``flwr.client.NumPyClient``).

The parameters Flower sends and receives are the model's state dict as NumPy arrays, in state-dict
order (parameters and persistent buffers, e.g. BatchNorm's running statistics). ``fit`` trains with
a :class:`~deepkern.federated.LocalTrainer` (FedAvg, or FedProx with ``mu``) and returns the new
weights with the client's sample count, which Flower's FedAvg strategy uses as its averaging weight,
as :func:`deepkern.federated.weighted_average` does. Needs ``pip install "deepkern[federated]"``.
"""

from __future__ import annotations

try:
    from flwr.client import NumPyClient
except ImportError as exc:
    raise ImportError(
        'deepkern.federated.flower needs Flower (flwr); install it with pip install "deepkern[federated]"'
    ) from exc

from typing import List

import numpy as np

from .. import data, nn
from .fedavg import LocalTrainer, evaluate_model, host_state

__all__ = ["DeepkernClient"]


class DeepkernClient(NumPyClient):
    """Flower's view of one client: ``model`` (on ``trainer.device``) trained by ``trainer`` on
    ``train_set`` (shuffled batches seeded by ``seed``, the epoch count running on across rounds),
    evaluated on ``eval_set`` (default: ``train_set``) with ``trainer.criterion``."""

    def __init__(self, model: nn.Module, train_set, trainer: LocalTrainer, eval_set=None, seed: int = 0):
        if len(train_set) == 0:
            raise ValueError("DeepkernClient: train_set holds no samples")
        self.model = model
        self.trainer = trainer
        self.loader = data.DataLoader(train_set, trainer.batch_size, shuffle=True, seed=seed)
        self.eval_set = train_set if eval_set is None else eval_set
        self.names = list(model.state_dict())

    def get_parameters(self, config=None) -> List[np.ndarray]:
        """The model's state dict as host NumPy arrays, in state-dict order."""
        return list(host_state(self.model).values())

    def set_parameters(self, parameters) -> None:
        """Loads arrays in state-dict order (ValueError naming the counts when they differ)."""
        if len(parameters) != len(self.names):
            raise ValueError(
                f"DeepkernClient.set_parameters: got {len(parameters)} arrays for the model's {len(self.names)} "
                f"state-dict entries ({', '.join(self.names)})"
            )
        self.model.load_state_dict(dict(zip(self.names, parameters)))

    def fit(self, parameters, config=None):
        """Trains from ``parameters``; returns (new parameters, samples, {"train_loss"})."""
        self.set_parameters(parameters)
        global_state = dict(zip(self.names, parameters))
        loss = self.trainer.fit(self.model, self.loader, global_state)
        return self.get_parameters(), len(self.loader.dataset), {"train_loss": float(loss)}

    def evaluate(self, parameters, config=None):
        """(loss, samples, {"accuracy"} for classifiers) of ``parameters`` on ``eval_set``."""
        self.set_parameters(parameters)
        result = evaluate_model(self.model, self.eval_set, self.trainer.criterion, device=self.trainer.device)
        metrics = {"accuracy": float(result["accuracy"])} if "accuracy" in result else {}
        return float(result["loss"]), int(result["num_samples"]), metrics
