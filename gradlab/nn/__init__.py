"""The network: hand-written forward and backward passes in NumPy."""
from .activations import ACTIVATIONS, Activation, make_activation
from .dense import Dense
from .dropout import Dropout
from .init import expected_std, init_weight
from .losses import LOSSES, Loss, make_loss
from .mlp import MLP, Sequential, build_mlp
from .module import Module
from .norm import BatchNorm

__all__ = [
    "ACTIVATIONS", "Activation", "BatchNorm", "Dense", "Dropout", "LOSSES", "Loss", "MLP", "Module",
    "Sequential", "build_mlp", "expected_std", "init_weight", "make_activation", "make_loss",
]
