"""Reading the deployment kit (deploy/) the way Docker, Compose and Kubernetes read it, so the
tests can check its names and run its command lines outside a container.

- `read_dockerfile`: the instructions of a Dockerfile (continuation lines joined, comments
  dropped) and the final stage as an `Image`: its environment, entrypoint, command, health
  check, user, volumes and where each copied file comes from.
- `DockerIgnore`: the build context's ``.dockerignore`` (last matching pattern wins, ``!``
  re-includes, a pattern that matches a folder matches everything under it).
- `interpolate`: Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``.
- `Mounts`: container paths -> host folders, for rewriting paths in arguments and configs.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

#: Every Dockerfile instruction (docs.docker.com/reference/dockerfile).
INSTRUCTIONS = frozenset(
    {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL"}
    | {"MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)
_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case), the text after it, its first line."""

    keyword: str
    text: str
    line: int


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile; `ValueError` naming the line of an unknown one."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments inside a continued instruction are dropped too
        if not pending:
            start = number
        continued = line.endswith("\\")
        pending.append(line.removesuffix("\\").strip())
        if continued:
            continue
        keyword, _, rest = " ".join(pending).partition(" ")
        pending = []
        if keyword.upper() not in INSTRUCTIONS:
            raise ValueError(f"line {start}: unknown instruction {keyword!r}")
        out.append(Instruction(keyword.upper(), rest.strip(), start))
    if pending:
        raise ValueError(f"line {start}: the file ends inside a continued instruction")
    return out


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` replaced from ``values`` (unknown ones become empty)."""
    return _VARIABLE.sub(lambda m: values.get(m["braced"] or m["bare"], ""), text)


def exec_form(text: str, where: str) -> list[str]:
    """The JSON array of an exec-form instruction (PID 1 is the program, signals reach it)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{where}: not the exec form (a JSON array): {text!r}") from None
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{where}: not a JSON array of strings")
    return value


def _options(text: str) -> tuple[dict[str, str], str]:
    """Leading ``--name=value`` options of an instruction, and the rest of its text."""
    options: dict[str, str] = {}
    while text.startswith("--"):
        option, _, text = text.partition(" ")
        name, _, value = option[2:].partition("=")
        options[name] = value
        text = text.strip()
    return options, text


@dataclass
class Image:
    """What the final stage of a Dockerfile gives a container.

    Attributes:
        env: its environment (``ENV``), variables expanded as the build expands them.
        args: build arguments (``ARG``) with their defaults, global and of the final stage.
        entrypoint, cmd: exec-form arrays.
        healthcheck: the health check's command (exec form) and its options.
        copies: path in the image -> path in the build context, for every ``COPY`` from
            the context (not ``--from`` another stage).
        user, workdir, volumes, exposed: as declared.
        runs: the text of every ``RUN`` of every stage, arguments expanded.
    """

    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)
    user: str = "root"
    workdir: str = "/"
    volumes: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def command(self) -> list[str]:
        """What the container runs: entrypoint + command."""
        return [*self.entrypoint, *self.cmd]


def _env_pairs(text: str, values: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    for word in shlex.split(text):
        name, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"ENV {text!r}: use the NAME=VALUE form")
        yield name, substitute(value, values)


def _copy(image: Image, text: str) -> None:
    options, text = _options(text)
    if "from" in options:
        return
    *sources, dest = exec_form(text, "COPY") if text.startswith("[") else shlex.split(text)
    for source in sources:
        target = dest
        if dest.endswith("/") or len(sources) > 1:
            target = str(PurePosixPath(dest) / PurePosixPath(source).name)
        image.copies[target] = source


def _healthcheck(image: Image, text: str, where: str) -> None:
    options, rest = _options(text)
    keyword, _, command = rest.partition(" ")
    if keyword.upper() != "CMD":
        raise ValueError(f"{where}: HEALTHCHECK without CMD")
    image.healthcheck, image.healthcheck_options = exec_form(command, where), options


def _volume(image: Image, text: str, where: str) -> None:
    image.volumes += exec_form(text, where) if text.startswith("[") else text.split()


def _values(image: Image) -> dict[str, str]:
    return {**image.args, **image.env}


#: How each instruction of a stage changes the image: (image, text, "file:line").
_APPLY: dict[str, Callable[[Image, str, str], None]] = {
    "ENV": lambda im, text, _: im.env.update(_env_pairs(text, _values(im))),
    "RUN": lambda im, text, _: im.runs.append(substitute(text, _values(im))),
    "ENTRYPOINT": lambda im, text, where: setattr(im, "entrypoint", exec_form(text, where)),
    "CMD": lambda im, text, where: setattr(im, "cmd", exec_form(text, where)),
    "HEALTHCHECK": _healthcheck,
    "COPY": lambda im, text, _: _copy(im, text),
    "ADD": lambda im, text, _: _copy(im, text),
    "USER": lambda im, text, _: setattr(im, "user", text),
    "WORKDIR": lambda im, text, _: setattr(im, "workdir", str(PurePosixPath(im.workdir) / text)),
    "VOLUME": _volume,
    "EXPOSE": lambda im, text, _: im.exposed.extend(text.split()),
}


def read_dockerfile(path: Path) -> Image:
    """The final stage of the Dockerfile at ``path`` as an `Image`."""
    image = Image()
    global_args: dict[str, str] = {}
    stage_started = False
    for ins in instructions(path.read_text(encoding="utf-8")):
        if ins.keyword == "ARG":
            name, sep, default = ins.text.partition("=")
            if not stage_started:
                global_args[name] = default
            else:  # `ARG NAME` alone takes the global default into the stage
                image.args[name] = substitute(default, _values(image)) if sep else global_args[name]
        elif ins.keyword == "FROM":
            stage_started = True  # each stage starts afresh
            image = Image(runs=image.runs)
        elif ins.keyword in _APPLY:
            _APPLY[ins.keyword](image, ins.text, f"{path.name}:{ins.line}")
    return image


def _pattern(pattern: str) -> re.Pattern[str]:
    """A ``.dockerignore`` pattern as a regular expression over context-relative paths."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


class DockerIgnore:
    """The patterns of a ``.dockerignore`` file."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            cleaned = str(PurePosixPath(line.removeprefix("!").strip().lstrip("/")))
            self.rules.append((include, _pattern(cleaned)))

    def sends(self, path: str) -> bool:
        """True when ``path`` (relative to the context) reaches the build."""
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        sent = True
        for include, rule in self.rules:
            if any(rule.fullmatch(p) for p in prefixes):
                sent = include
        return sent


_COMPOSE_VARIABLE = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation over a loaded compose file (strings in any nesting);
    ``${VAR:?message}`` with VAR unset or empty raises `KeyError` with the message."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        empty = current is None or (op is not None and op.startswith(":") and current == "")
        if op is not None and op.endswith("?") and empty:
            raise KeyError(f"{name}: {arg}")
        if op is not None and op.endswith("-") and empty:
            return str(arg)
        return current or ""

    return _COMPOSE_VARIABLE.sub(one, value)


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=VALUE`` lines of a Compose ``.env`` file (comments and blanks skipped)."""
    out: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def load_yaml(path: Path) -> list[Any]:
    """Every document of a YAML file."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


@dataclass
class Mounts:
    """Container paths mapped to host folders (longest container path first)."""

    paths: dict[str, Path] = field(default_factory=dict)

    def host(self, text: str) -> str:
        """``text`` with a mounted container path at its start replaced by the host path."""
        for inside in sorted(self.paths, key=len, reverse=True):
            if text == inside or text.startswith(inside.rstrip("/") + "/"):
                return str(self.paths[inside]) + text[len(inside.rstrip("/")) :]
        return text


def env_list(entries: list[dict[str, Any]], secrets: Mapping[str, str]) -> dict[str, str]:
    """A Kubernetes container's ``env`` as a mapping; ``secretKeyRef`` values come from
    ``secrets`` (``"NAME/KEY"`` -> value)."""
    out: dict[str, str] = {}
    for entry in entries:
        if "value" in entry:
            out[entry["name"]] = str(entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            out[entry["name"]] = secrets[f"{ref['name']}/{ref['key']}"]
    return out
