"""Ray for the distributed tests: one local instance for the module, sized for a 2-core machine.

Two ranks hold one CPU each (the whole machine); every call in the library waits with a timeout,
and pytest-timeout bounds each test, so a hang fails in minutes.
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'alignflow[ray]')")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()
