"""Ray for the distributed RL tests: one local instance per module, sized for a 2-core machine.

Two ranks hold one CPU each (the whole machine); every call in the library waits with a timeout,
and pytest-timeout bounds each test, so a hang fails in minutes. Tests that do not ask for
``ray_cluster`` (the offline trainers' spawned ranks) need no Ray.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'alignflow[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()
