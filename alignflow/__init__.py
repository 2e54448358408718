"""alignflow: align language models with human feedback (SFT, reward models, PPO, GRPO, DPO)."""

__version__ = "0.1.0"
