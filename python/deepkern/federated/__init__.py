"""deepkern.federated: federated learning, simulated in one process or on the ranks of an MPI job.

- :class:`FedAvg` (the server: client sampling, sample-weighted averaging), :class:`LocalTrainer`
  (a client's local epochs; ``mu`` adds FedProx's proximal term), :class:`ClientRunner` (where
  clients run), :class:`SimulationRunner` (all clients on one model object in this process) and
  :class:`MPIRunner` (the clients on the ranks of an MPI job, rank 0 the server)
- :func:`weighted_average`, :func:`add_proximal_gradient`, :func:`host_state`, :func:`evaluate_model`
- partitions of a data set among clients: :func:`iid_split`, :func:`dirichlet_split` (label skew),
  :func:`shard_split` (label-sorted shards), and :func:`label_entropy` to measure their skew
- :mod:`deepkern.federated.flower`: a deepkern model as a Flower client (needs
  ``pip install "deepkern[federated]"``; never imported by this package)
"""

from .fedavg import (
    ClientRunner,
    ClientUpdate,
    FedAvg,
    LocalTrainer,
    MPIRunner,
    SimulationRunner,
    add_proximal_gradient,
    evaluate_model,
    host_state,
    weighted_average,
)
from .splits import dirichlet_split, iid_split, label_entropy, shard_split

__all__ = [
    "ClientRunner",
    "ClientUpdate",
    "FedAvg",
    "LocalTrainer",
    "MPIRunner",
    "SimulationRunner",
    "add_proximal_gradient",
    "evaluate_model",
    "host_state",
    "weighted_average",
    "dirichlet_split",
    "iid_split",
    "label_entropy",
    "shard_split",
]
