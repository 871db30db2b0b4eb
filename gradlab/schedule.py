"""Learning-rate schedules: the rate of every step, as pure functions of the step.

``t`` is the step (0, 1, ..., T - 1), ``T`` the run's steps, ``lr`` the config's ``train.lr``. A linear
warm-up of ``W`` steps comes first; the schedule then runs over the remaining ``T - W`` steps, counted
from the end of the warm-up.
"""
from __future__ import annotations

import math


def constant(lr: float, t: int, T: int) -> float:
    return lr


def step_decay(lr: float, t: int, T: int, every: int, gamma: float) -> float:
    """lr * gamma^floor(t / every): times gamma every ``every`` steps (PyTorch's StepLR)."""
    return lr * gamma ** (t // every)


def cosine(lr: float, t: int, T: int, floor: float) -> float:
    """From lr down to floor * lr along half a cosine over the T steps (Loshchilov & Hutter 2017, SGDR without
    restarts; PyTorch's CosineAnnealingLR with T_max = T, Keras' CosineDecay with alpha = floor)."""
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / T)))


def warmup(lr: float, t: int, W: int) -> float:
    """lr * (t + 1) / W for the first W steps: the first step at lr / W, step W - 1 at lr (Goyal et al. 2017)."""
    return lr * (t + 1) / W


def rate(schedule, lr: float, t: int, T: int) -> float:
    """The learning rate of step ``t`` of ``T`` under a ``ScheduleConfig``."""
    W = schedule.warmup
    if t < W:
        return warmup(lr, t, W)
    t, T = t - W, max(T - W, 1)
    if schedule.name == "step":
        return step_decay(lr, t, T, schedule.every, schedule.gamma)
    if schedule.name == "cosine":
        return cosine(lr, t, T, schedule.floor)
    return constant(lr, t, T)
