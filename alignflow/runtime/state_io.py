"""Save and load the state files a run resumes from (optimizer, schedule, RNG, step, ...).

Only tensors and plain Python values may be stored: loading uses ``torch.load(weights_only=True)``,
so a crafted file in an output folder cannot run code when a job auto-resumes from it. A state file
is written beside its final name and renamed into place, so a killed write never leaves half a file
under the real name.
"""

from __future__ import annotations

import os
import pickle
import signal
import zipfile
from pathlib import Path
from typing import Any

import torch

KILL_AT_ENV = "ALIGNFLOW_KILL_AT"


class StateFileError(ValueError):
    """A state file that cannot be loaded safely; the message names the file and what to do."""


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (tensors and plain values only) to ``path`` atomically."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    fault_point(f"state:{path.name}")
    os.replace(partial, path)
    return path


def load_state(path: str | Path, *, advice: str = "delete it and start again") -> dict[str, Any]:
    """Load a state file with ``weights_only=True``; a refused or damaged file is a one-line
    :class:`StateFileError` naming the file and ending with ``advice`` (what the user can do)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[-1][:200]
        raise StateFileError(f"{path}: refused to load: it holds Python objects that are not a plain state "
                             f"(tensors, numbers, strings, lists, dicts), which could run code ({reason}); "
                             f"{advice}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        reason = " ".join(str(err).split())[:120]
        raise StateFileError(f"{path} is corrupt or truncated ({reason}); {advice}") from None
    if not isinstance(state, dict):
        raise StateFileError(f"{path}: expected a mapping of state, found {type(state).__name__}; {advice}")
    return state


def fault_point(name: str) -> None:
    """Fault-injection hook for the reliability tests: when ``ALIGNFLOW_KILL_AT`` equals ``name``
    (e.g. ``checkpoint:4``, ``log:train:3``), the process kills itself with SIGKILL right here."""
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
