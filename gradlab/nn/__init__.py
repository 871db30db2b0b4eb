"""The network: hand-written forward and backward passes in NumPy."""
from .activations import ACTIVATIONS, Activation, make_activation
from .conv import AvgPool2d, Conv2d, Flatten, GlobalAvgPool, MaxPool2d, ResBlock
from .custom import CustomActivation, CustomError, CustomModule, find_class, make_custom
from .dense import Dense
from .dropout import Dropout
from .init import expected_std, init_weight
from .losses import LOSSES, Loss, make_loss
from .mlp import MLP, Sequential, build_mlp
from .module import Module
from .norm import BatchNorm

__all__ = [
    "ACTIVATIONS", "Activation", "AvgPool2d", "BatchNorm", "Conv2d", "CustomActivation", "CustomError",
    "CustomModule", "Dense", "Dropout", "Flatten", "GlobalAvgPool", "LOSSES", "Loss", "MLP", "MaxPool2d",
    "Module", "ResBlock", "Sequential", "build_mlp", "expected_std", "find_class", "init_weight", "make_activation",
    "make_custom", "make_loss",
]
