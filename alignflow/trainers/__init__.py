"""Trainers: SFT, reward model (and the shared optimisation loop)."""
