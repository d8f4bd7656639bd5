"""Viscous 1D Burgers on a periodic domain: u_t + u u_x = nu u_xx, x in [0, 2*pi).

Pseudo-spectral in space (2/3-rule dealiasing of the nonlinear flux), integrating-factor
RK4 in time: the stiff diffusion term is integrated exactly, so the step size is bounded
only by the advective CFL condition. Trajectories are solved on a fine grid (at least 256
points, so the viscous shocks are resolved) and reduced to ``n_x`` cell averages centred
on the coarse nodes (finite-volume view: no aliasing, and the mean stays exact).

The flux is written in conservative form (u^2 / 2)_x, so the k = 0 mode (the spatial mean)
is never touched: the mean is conserved to round-off and the L2 energy only decays for
nu > 0 (the tests check both).

``generate`` caches its result as ``.npz`` keyed by a hash of all parameters, under
``$STUDYC_CACHE/burgers`` (or ``~/.cache/studyc/burgers``), written atomically so that
several runs can generate the same data set at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

SOLVER_VERSION = 2  # bump when the numerics change: it is part of the cache key
DOMAIN = 2.0 * np.pi
MIN_FINE = 256  # smallest grid the equation is solved on
N_MODES = 4  # random Fourier modes in an initial condition
U_BOUND = 1.3  # |u0| <= peak amplitude 1 + |mean offset| 0.3


def cache_dir() -> Path:
    base = os.environ.get("STUDYC_CACHE")
    root = Path(base) / "burgers" if base else Path.home() / ".cache" / "studyc" / "burgers"
    return root


def initial_conditions(n_traj: int, n_fine: int, seed: int) -> np.ndarray:
    """Random smooth periodic fields [n_traj, n_fine]: a mean offset plus a few modes.

    Trajectory i depends only on (seed, i), so the first k trajectories of a larger set
    are the trajectories of a smaller one.
    """
    x = np.arange(n_fine) * (DOMAIN / n_fine)
    u0 = np.empty((n_traj, n_fine))
    k = np.arange(1, N_MODES + 1)
    for i in range(n_traj):
        rng = np.random.default_rng([seed, i])
        amp = rng.normal(size=N_MODES) / k  # smooth: amplitude falls like 1/k
        phase = rng.uniform(0.0, 2.0 * np.pi, size=N_MODES)
        field = (amp[:, None] * np.sin(k[:, None] * x[None, :] + phase[:, None])).sum(0)
        field /= np.abs(field).max() + 1e-12  # peak amplitude 1 ...
        field *= rng.uniform(0.5, 1.0)  # ... scaled to [0.5, 1]
        u0[i] = field + rng.uniform(-0.3, 0.3)  # a conserved mean offset
    return u0


def solve(
    u0: np.ndarray, n_t: int, dt: float, nu: float, cfl: float = 0.5, umax: float | None = None
) -> np.ndarray:
    """Integrate [B, n] periodic fields; returns [B, n_t, n] snapshots t = 0, dt, ...

    The step is cfl * dx / umax, with umax a bound on |u| (by the maximum principle,
    max |u0| unless given; a fixed bound keeps each trajectory independent of its batch).
    """
    batch, n = u0.shape
    wavenum = np.fft.rfftfreq(n, d=DOMAIN / (2.0 * np.pi * n))  # integer wavenumbers
    dealias = (np.abs(wavenum) < (2.0 / 3.0) * (n // 2)).astype(float)
    dx = DOMAIN / n
    if umax is None:
        umax = float(np.abs(u0).max())
    umax = max(umax, 1e-6)
    n_sub = max(1, int(np.ceil(dt / (cfl * dx / umax))))
    h = dt / n_sub
    lin = -nu * wavenum**2
    e_half = np.exp(lin * h / 2.0)
    e_full = e_half * e_half
    coef = -0.5j * wavenum * dealias  # N(v) = -(ik/2) FFT(u^2), dealiased

    def nonlinear(v_hat: np.ndarray) -> np.ndarray:
        u = np.fft.irfft(v_hat, n=n, axis=-1)
        return coef * np.fft.rfft(u * u, axis=-1)

    out = np.empty((batch, n_t, n))
    v = np.fft.rfft(u0, axis=-1)
    out[:, 0] = u0
    for t in range(1, n_t):
        for _ in range(n_sub):  # integrating-factor RK4
            k1 = nonlinear(v)
            k2 = nonlinear(e_half * (v + 0.5 * h * k1))
            k3 = nonlinear(e_half * v + 0.5 * h * k2)
            k4 = nonlinear(e_full * v + h * e_half * k3)
            v = e_full * v + (h / 6.0) * (e_full * k1 + 2.0 * e_half * (k2 + k3) + k4)
        out[:, t] = np.fft.irfft(v, n=n, axis=-1)
    return out


def cell_average(u: np.ndarray, factor: int) -> np.ndarray:
    """[..., n * factor] fine-grid values -> [..., n] averages over the cells centred on
    every factor-th point (trapezoid weights for even factors). Each fine point gets total
    weight 1 / factor, so the spatial mean is exactly the fine-grid mean (conserved)."""
    if factor == 1:
        return u
    if factor % 2:
        offsets, weights = np.arange(-(factor // 2), factor // 2 + 1), np.ones(factor)
    else:
        offsets = np.arange(-(factor // 2), factor // 2 + 1)
        weights = np.ones(factor + 1)
        weights[[0, -1]] = 0.5
    out = 0.0
    for off, w in zip(offsets, weights / factor):
        out = out + w * np.roll(u, -off, axis=-1)[..., ::factor]
    return out


def _key(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def generate(
    n_traj: int,
    n_x: int = 64,
    n_t: int = 21,
    dt: float = 0.1,
    nu: float = 0.05,
    seed: int = 0,
    cache: bool = True,
) -> np.ndarray:
    """Trajectories [n_traj, n_t, n_x] (float32) from random smooth initial conditions."""
    factor = max(1, -(-MIN_FINE // n_x))  # ceil(MIN_FINE / n_x)
    n_fine = n_x * factor
    params = {
        "version": SOLVER_VERSION,
        "n_traj": int(n_traj),
        "n_x": int(n_x),
        "n_t": int(n_t),
        "dt": float(dt),
        "nu": float(nu),
        "seed": int(seed),
        "n_fine": n_fine,
    }
    path = cache_dir() / f"burgers_{_key(params)}.npz"
    if cache and path.exists():
        try:
            with np.load(path) as data:
                return data["u"]
        except Exception:  # a corrupt file (should not happen: writes are atomic)
            pass
    u0 = initial_conditions(n_traj, n_fine, seed)
    u = cell_average(solve(u0, n_t, dt, nu, umax=U_BOUND), factor).astype(np.float32)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, u=u, params=json.dumps(params))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return u
