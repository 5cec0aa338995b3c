"""The Prometheus binaries (Debian package ``prometheus``; .ci/run installs it): the tests
skip without them locally and fail under CI=true, where they must be present."""

from __future__ import annotations

import shutil

import pytest

from tests.browser import under_ci


def binary(name: str) -> str:
    """Path of ``name`` (promtool, prometheus), or skip the test (fail it under CI)."""
    found = shutil.which(name)
    if found:
        return found
    reason = f"needs {name} (apt-get install prometheus; .ci/run installs it)"
    if under_ci():
        pytest.fail(f"{reason}; CI=true, so this test fails instead of skipping", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool."""
    return binary("promtool")


@pytest.fixture(scope="session")
def prometheus() -> str:
    """Path of the prometheus server."""
    return binary("prometheus")
