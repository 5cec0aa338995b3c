"""Runtime settings: the cores a serving process may use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.serve.runtime.settings import RuntimeConfig, usable_cpus


def test_a_container_quota_caps_the_cores(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # docker --cpus 1.5
    assert usable_cpus(str(quota)) == min(affinity, 2)
    quota.write_text("max 100000\n")  # no limit
    assert usable_cpus(str(quota)) == affinity
    quota.write_text("garbage\n")
    assert usable_cpus(str(quota)) == affinity
    assert usable_cpus(str(tmp_path / "absent")) == affinity


def test_preprocess_choices_are_checked() -> None:
    assert RuntimeConfig().preprocess == "auto"
    for mode in ("auto", "thread", "process"):
        RuntimeConfig.from_options(preprocess=mode)
    with pytest.raises(ConfigError, match=r"serve\.preprocess"):
        RuntimeConfig.from_options(preprocess="fork")
