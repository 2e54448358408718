"""Trainers: SFT, reward model, offline DPO (and the shared optimisation loop)."""
