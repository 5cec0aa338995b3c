"""Alignment and captioning artifacts behind ``/v1/search``, ``/v1/consistency`` and
``/v1/caption``.

`AlignServices` holds what ``polyfuse serve`` was given besides the model artifact:

- ``--index DIR``: a vector index written by ``polyfuse index`` (its ``index.json`` names
  the alignment artifact that embedded it); ``/v1/search`` embeds the query (text or
  image) and returns the nearest items of the other modality;
- ``--align DIR``: an alignment artifact; ``/v1/consistency`` scores whether an (image,
  text) pair agrees, with the contradiction threshold calibrated at training time (also
  the embedder of ``--index`` when given);
- ``--caption DIR``: a captioning artifact; ``/v1/caption`` writes a caption per image.

The models run on one dedicated thread (one request at a time per server; these routes
are not micro-batched), off the event loop. Inputs are the bytes or text the HTTP layer
read: nothing is fetched and no client path is ever opened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from polyfuse.core.errors import ArtifactError, ConfigError, PolyfuseError
from polyfuse.serve.types import ServeError

T = TypeVar("T")
Inputs = Mapping[str, bytes | str]

#: Routes this module serves and the flag that enables each.
ROUTES: dict[str, str] = {
    "search": "--index DIR (a folder written by `polyfuse index`)",
    "consistency": "--align DIR (an alignment artifact)",
    "caption": "--caption DIR (a captioning artifact)",
}
MAX_K = 100
MAX_BEAM = 8


class AlignServices:
    """Search, consistency and captioning for the HTTP layer.

    Args:
        aligner: a loaded `polyfuse.retrieval.pipeline.Aligner` (consistency; search embedder).
        index: a folder written by ``polyfuse index`` (search), needs ``aligner``.
        captioner: a loaded `polyfuse.models.captioner.Captioner`.
    """

    def __init__(
        self,
        *,
        aligner: Any = None,
        index: str | Path | None = None,
        captioner: Any = None,
    ) -> None:
        self.aligner = aligner
        self.captioner = captioner
        self.index_dir = None if index is None else Path(index)
        self._tables: dict[str, Any] = {}
        self._exact: dict[str, bool] = {}
        if self.index_dir is not None:
            if aligner is None:
                raise ConfigError("--index", "searching an index needs its alignment artifact")
            info = read_index_info(self.index_dir)
            roles = info["roles"]
            if roles != aligner.info["roles"]:
                raise ConfigError(
                    "--index",
                    f"the index holds {roles} but the alignment artifact has roles "
                    f"{aligner.info['roles']}",
                    hint="pass the alignment artifact the index was built with (--align)",
                )
            from polyfuse.retrieval.index import VectorIndex

            for name in (roles["item"], roles["query"]):
                self._tables[name] = VectorIndex.open(self.index_dir, name)
                self._exact[name] = not info.get("ann", {}).get(name, False)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="align")

    @classmethod
    def load(
        cls,
        *,
        index: str | Path | None = None,
        align: str | Path | None = None,
        caption: str | Path | None = None,
    ) -> AlignServices | None:
        """Load what the flags name (None when none is given); the alignment artifact of
        ``index`` is the one its ``index.json`` records unless ``align`` is given."""
        if index is None and align is None and caption is None:
            return None
        aligner = captioner = None
        if align is None and index is not None:
            align = read_index_info(Path(index))["artifact"]
        if align is not None:
            from polyfuse.retrieval.pipeline import Aligner

            aligner = _load("--align", Aligner.load, align)
        if caption is not None:
            from polyfuse.inference.captioner import Captioner

            captioner = _load("--caption", Captioner, caption)
        return cls(aligner=aligner, index=index, captioner=captioner)

    # ---- description ----------------------------------------------------------------
    @property
    def routes(self) -> tuple[str, ...]:
        """The routes these artifacts support (``search``, ``consistency``, ``caption``)."""
        have = {
            "search": bool(self._tables),
            "consistency": self.aligner is not None,
            "caption": self.captioner is not None,
        }
        return tuple(r for r in ROUTES if have[r])

    def modalities(self, route: str) -> tuple[str, ...]:
        """Input names a route accepts."""
        if route == "caption":
            return (str(self.captioner.info["roles"]["image"]),)
        roles = self.aligner.info["roles"]
        return (str(roles["item"]), str(roles["query"]))

    def info(self) -> dict[str, Any]:
        """What is served: routes, roles, index sizes."""
        out: dict[str, Any] = {"routes": list(self.routes)}
        if self.aligner is not None:
            out["alignment"] = {
                "roles": self.aligner.info["roles"],
                "dim": self.aligner.info.get("dim"),
                "threshold": self.aligner.info["consistency"]["threshold"],
            }
        if self._tables:
            out["index"] = {name: len(table) for name, table in self._tables.items()}
        if self.captioner is not None:
            out["captioning"] = {"roles": self.captioner.info["roles"]}
        return out

    # ---- requests -------------------------------------------------------------------
    async def search(self, inputs: Inputs, k: int) -> dict[str, Any]:
        """The ``k`` nearest items of the other modality to the one query in ``inputs``."""
        self.require("search")
        if not 1 <= k <= MAX_K:
            raise ServeError("invalid_input", f"k must be in 1..{MAX_K}, got {k}")
        if len(inputs) != 1:
            raise ServeError(
                "invalid_input",
                f"search takes exactly one query, got {len(inputs)} inputs",
                hint=f"send one of {', '.join(self.modalities('search'))}",
            )
        ((modality, value),) = inputs.items()
        roles = self.aligner.info["roles"]
        target = roles["item"] if modality == roles["query"] else roles["query"]

        def run() -> list[Any]:
            vector = self.aligner.embed(modality, [value])[0].numpy()
            hits: list[Any] = self._tables[target].search(vector, k, exact=self._exact[target])
            return hits

        hits = await self._call(run)
        return {
            "query": modality,
            "searched": target,
            "hits": [
                {"id": h.id, "score": round(h.score, 6), "metadata": h.metadata} for h in hits
            ],
        }

    async def consistency(self, inputs: Inputs) -> dict[str, Any]:
        """Agreement score of the (item, query) pair in ``inputs`` and the contradiction
        flag at the artifact's calibrated threshold."""
        self.require("consistency")
        item, query = self.modalities("consistency")
        missing = [m for m in (item, query) if m not in inputs]
        if missing:
            raise ServeError(
                "invalid_input",
                f"consistency needs both '{item}' and '{query}' (missing {', '.join(missing)})",
                hint="send the pair whose agreement you want scored",
            )
        ((score, contradiction),) = await self._call(
            self.aligner.consistency, [inputs[item]], [inputs[query]]
        )
        return {
            "score": round(score, 6),
            "threshold": float(self.aligner.info["consistency"]["threshold"]),
            "contradiction": contradiction,
            "roles": {"item": item, "query": query},
        }

    async def caption(self, inputs: Inputs, beam: int) -> dict[str, Any]:
        """A caption of the one image in ``inputs`` (beam search of width ``beam``)."""
        self.require("caption")
        if not 1 <= beam <= MAX_BEAM:
            raise ServeError("invalid_input", f"beam must be in 1..{MAX_BEAM}, got {beam}")
        (image,) = self.modalities("caption")
        if image not in inputs:
            raise ServeError(
                "invalid_input", f"send the image as '{image}'", details={"input": image}
            )
        (text,) = await self._call(self.captioner.caption_images, [inputs[image]], beam)
        return {"caption": text, "beam": beam}

    def require(self, route: str) -> None:
        """Raise ``not_found`` (with the flag to pass) when ``route`` is not served."""
        if route not in self.routes:
            raise not_served(route)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, fn, *args)
        except ServeError:
            raise
        except PolyfuseError as exc:  # unreadable content: the client's input
            raise ServeError("invalid_input", exc.message, hint=exc.hint) from None

    def close(self) -> None:
        """Stop the model thread."""
        self._thread.shutdown(wait=False, cancel_futures=True)


def not_served(route: str) -> ServeError:
    """The ``not_found`` error of a route this server was not started for."""
    return ServeError(
        "not_found",
        f"this server does not serve /v1/{route}",
        hint=f"start `polyfuse serve` with {ROUTES[route]}",
    )


def read_index_info(folder: Path) -> dict[str, Any]:
    """``index.json`` of an index folder (`ConfigError` naming ``--index`` otherwise)."""
    try:
        info: dict[str, Any] = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            "--index",
            f"{folder} is not a polyfuse index ({exc})",
            hint="build one with `polyfuse index ARTIFACT --data MANIFEST --db DIR`",
        ) from None
    return info


def _load(flag: str, loader: Callable[[Any], T], path: str | Path) -> T:
    try:
        return loader(path)
    except (ArtifactError, OSError) as exc:
        message = exc.message if isinstance(exc, PolyfuseError) else str(exc)
        hint = exc.hint if isinstance(exc, PolyfuseError) else None
        raise ConfigError(flag, message, hint=hint) from None


__all__ = ["MAX_BEAM", "MAX_K", "ROUTES", "AlignServices", "not_served", "read_index_info"]
