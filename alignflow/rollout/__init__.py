"""Rollout engines: turn prompts into sampled responses with their sampling log-probs."""

from alignflow.rollout.base import RolloutEngine, SamplingParams
from alignflow.rollout.hf import HFRolloutEngine
from alignflow.rollout.vllm import VLLMRolloutEngine

__all__ = ["HFRolloutEngine", "RolloutEngine", "SamplingParams", "VLLMRolloutEngine"]
