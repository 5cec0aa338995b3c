"""The thin registry."""

from __future__ import annotations

import pytest

from polyfuse.core.errors import ConfigError, RegistryError
from polyfuse.core.registry import Registry


class Widget:
    def __init__(self, size: int, color: str = "red") -> None:
        self.size, self.color = size, color


def test_register_get_list_build() -> None:
    reg: Registry[Widget] = Registry("widget")
    reg.register("plain")(Widget)
    assert reg.list() == ["plain"] and "plain" in reg
    w = reg.build("plain", 3, where="parts.w", params={"color": "blue"})
    assert (w.size, w.color) == (3, "blue")


def test_errors_name_the_choices_and_the_key() -> None:
    reg: Registry[Widget] = Registry("widget")
    reg.register("plain")(Widget)
    with pytest.raises(RegistryError, match="did you mean 'plain'"):
        reg.get("plian")
    with pytest.raises(ConfigError, match=r"parts\.w\.colour: unknown parameter .* valid: color"):
        reg.build("plain", 3, where="parts.w", params={"colour": "blue"})
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register("plain")(Widget)
