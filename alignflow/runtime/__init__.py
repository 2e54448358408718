"""What a process needs before it trains: its device, precision, seeds and distributed group.

Nothing here knows about models, data or RL: every other layer may import it.
"""

from alignflow.runtime.device import resolve_device
from alignflow.runtime.precision import autocast, effective_dtype, native_bf16
from alignflow.runtime.seeding import rng_state, set_rng_state, set_seed, set_threads

__all__ = ["autocast", "effective_dtype", "native_bf16", "resolve_device", "rng_state", "set_rng_state", "set_seed",
           "set_threads"]
