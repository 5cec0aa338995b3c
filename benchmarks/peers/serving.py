"""The serving peers of ``benchmarks/serve_load.py``: the same polyfuse model behind Ray Serve
or LitServe, each in its own process on a loopback port.

Both peers run the model through polyfuse's library API (`Predictor`: the artifact's contracts'
loading, quality gates and preprocessing, collation, the encoders + adapters, the fusion and the
heads, decoded to a `Prediction`), batched by the peer's own batching, and speak the request
format of polyfuse's ``/v1/predict`` (multipart: one file part per modality, a text field for
text; or JSON ``{"inputs": {name: "text" | {"base64": "..."}}}``), so the same load client drives
all servers. The answer holds ``prediction.label``, ``prediction.probabilities`` and
``modalities_used`` as polyfuse's does.

Install the peers into polyfuse's virtual environment (they change none of torch, fastapi,
starlette or uvicorn there)::

    bash benchmarks/peers/setup.sh serving       # = pip install -r requirements-serving.txt

Run one by hand (``serve_load.py`` starts them itself)::

    .venv/bin/python benchmarks/peers/serving.py --peer litserve --artifact demo-output/model \\
        --port 8100
    curl -F image=@x.png -F audio=@x.wav http://127.0.0.1:8100/v1/predict

How each peer is configured, and why, is in ``serving_ray.py`` and ``serving_litserve.py``
(docs/benchmarks.md, "Serving over HTTP", has the summary).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PEERS = ("ray-serve", "litserve")
#: peer -> (module it needs, what to install)
NEEDS = {
    "ray-serve": ("ray.serve", "ray[serve]"),
    "litserve": ("litserve", "litserve"),
}
Inputs = dict[str, bytes | str]


def missing(peer: str) -> str | None:
    """Why ``peer`` cannot run here (its package is not installed), or None."""
    module, package = NEEDS[peer]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    if found:
        return None
    return (
        f"{peer}: {package} is not installed; install the serving peers with "
        "`bash benchmarks/peers/setup.sh serving` "
        "(pip install -r benchmarks/peers/requirements-serving.txt)"
    )


@dataclass(frozen=True)
class Answer:
    """One request's answer: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


class BadRequestError(ValueError):
    """A request body the peers cannot read (answered 400)."""


class PeerModel:
    """A polyfuse artifact run through `Predictor`, one batch of requests at a time.

    Cheap to construct; `load` reads the artifact and sets the process's torch threads.
    """

    def __init__(self, artifact: str, batch_size: int, torch_threads: int) -> None:
        self.artifact, self.batch_size, self.torch_threads = artifact, batch_size, torch_threads
        self.predictor: Any = None

    def load(self) -> PeerModel:
        """Load the artifact (contracts and versions checked) on the CPU."""
        import torch

        from polyfuse.inference.predict import Predictor

        torch.set_num_threads(self.torch_threads)
        self.predictor = Predictor.load(self.artifact, "cpu", batch_size=self.batch_size)
        return self

    def predict(self, batch: Sequence[Inputs]) -> list[Answer]:
        """Answers for a batch of requests, in order. One bad input fails the batched call
        (`Predictor.predict` refuses the batch), so the batch is then retried one by one and
        only the bad request is answered 400."""
        from polyfuse.core.errors import PolyfuseError

        try:
            return [self._ok(p) for p in self.predictor.predict(list(batch))]
        except PolyfuseError:
            if len(batch) == 1:
                return [self._one(batch[0])]
            return [self._one(item) for item in batch]

    def _one(self, item: Inputs) -> Answer:
        from polyfuse.core.errors import PolyfuseError

        try:
            return self._ok(self.predictor.predict(item))
        except PolyfuseError as exc:
            return Answer(400, {"error": {"code": "invalid_input", "message": str(exc)}})

    @staticmethod
    def _ok(prediction: Any) -> Answer:
        body = {
            "prediction": {"label": prediction.label, "probabilities": prediction.probabilities},
            "modalities_used": list(prediction.modalities_used),
        }
        return Answer(200, body)


def form_inputs(form: Mapping[str, Any]) -> Inputs:
    """Inputs of a parsed multipart form (Starlette's ``FormData``): a file part's bytes, a
    text field's string."""
    out: Inputs = {}
    for name, value in form.items():
        if isinstance(value, str):
            out[name] = value
        else:  # an UploadFile
            value.file.seek(0)
            out[name] = value.file.read()
    if not out:
        raise BadRequestError("empty form: send one part per modality")
    return out


def json_inputs(data: Any) -> Inputs:
    """Inputs of a JSON body ``{"inputs": {name: "text" | {"base64": "..."}}}``."""
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
        raise BadRequestError('expected {"inputs": {"text": "...", "image": {"base64": "..."}}}')
    out: Inputs = {}
    for name, value in data["inputs"].items():
        if isinstance(value, str):
            out[str(name)] = value
        elif isinstance(value, dict) and isinstance(value.get("base64"), str):
            try:
                out[str(name)] = base64.b64decode(value["base64"], validate=True)
            except binascii.Error as exc:
                raise BadRequestError(f"input '{name}' is not valid base64") from exc
        else:
            raise BadRequestError(f"input '{name}' must be a string or {{'base64': ...}}")
    return out


async def request_inputs(request: Any) -> Inputs:
    """Inputs of a Starlette request (multipart or JSON), as the Ray Serve peer reads them."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form() as form:
            return form_inputs(form)
    try:
        return json_inputs(json.loads(await request.body()))
    except json.JSONDecodeError as exc:
        raise BadRequestError("body is neither multipart/form-data nor JSON") from exc


def main() -> None:
    """Serve ``--artifact`` with ``--peer`` on 127.0.0.1:``--port`` until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", choices=PEERS, required=True)
    parser.add_argument("--artifact", required=True, help="polyfuse artifact folder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=32, help="requests per batch")
    parser.add_argument("--wait-ms", type=float, default=5.0, help="batch wait after the first")
    parser.add_argument("--workers", type=int, default=2, help="model replicas (1 core each)")
    args = parser.parse_args()
    reason = missing(args.peer)
    if reason:
        raise SystemExit(reason)
    if args.peer == "ray-serve":
        from serving_ray import serve_forever
    else:
        from serving_litserve import serve_forever  # type: ignore[no-redef]
    serve_forever(args.artifact, args.port, args.max_batch, args.wait_ms / 1000, args.workers)


if __name__ == "__main__":
    main()
