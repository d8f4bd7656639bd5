"""Viscous 1D Burgers: a spectral solver, a latent-token neural operator, a trainer."""
