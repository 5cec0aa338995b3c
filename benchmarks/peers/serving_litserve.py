"""The LitServe peer: a polyfuse artifact in a `LitAPI` (started by
``serving.py --peer litserve``).

Configuration for a CPU machine, following LitServe's documentation (the docstrings of
``LitServer`` and ``LitServer.run`` in litserve 0.2.19, and
https://lightning.ai/docs/litserve/features/batching):

- **inference workers**: ``accelerator="cpu"``, ``workers_per_device=workers`` (2 here): "For
  CPU, set to the number of cores available on the machine"; each worker process has one
  torch thread, so the workers do not oversubscribe the cores.
- **batching** on the `LitAPI` (where 0.2.19 moved it): ``max_batch_size=32``,
  ``batch_timeout=0.005`` s, with ``batch``/``unbatch`` passing lists (`Predictor` collates).
  A ``batch_timeout`` of 0 would make each worker poll its queue without ever blocking
  (``collate_requests`` returns at once when the queue is empty and the loop calls it again);
  above 0 it waits on the queue in 1 ms steps.
- **API servers**: ``num_api_servers`` left at its default, one uvicorn process per
  inference worker ("None: Uses same count as inference workers (recommended)"), and
  ``fast_queue=True`` (ZeroMQ for the answers: "Enable ZeroMQ for high-throughput scenarios
  (>100 RPS)"). Logs at ``warning``, no client file, no OpenAPI page.
- ``timeout`` left at LitServe's 30 s.

No ``from __future__ import annotations`` here: LitServe reads ``decode_request``'s annotation
at run time, and only the `Request` class itself (not its name as a string) makes it parse
the body (``await request.form()`` or ``request.json()``) before handing it over.
"""

from typing import Any

import litserve as ls
from fastapi import HTTPException, Request
from serving import Answer, BadRequestError, Inputs, PeerModel, form_inputs, json_inputs


class PolyfuseAPI(ls.LitAPI):  # type: ignore[misc]
    """The artifact behind ``/v1/predict``: setup -> decode -> batch -> predict -> unbatch
    -> encode."""

    def __init__(self, artifact: str, max_batch: int, wait_s: float) -> None:
        super().__init__(max_batch_size=max_batch, batch_timeout=wait_s, api_path="/v1/predict")
        self.artifact = artifact
        self.model: PeerModel | None = None

    def setup(self, device: str) -> None:
        self.model = PeerModel(self.artifact, self.max_batch_size, torch_threads=1).load()

    def decode_request(self, request: Request) -> Inputs:
        try:
            if isinstance(request, dict):  # a JSON body
                return json_inputs(request)
            return form_inputs(request)
        except BadRequestError as exc:
            raise HTTPException(400, str(exc)) from exc

    def batch(self, inputs: list[Inputs]) -> list[Inputs]:
        return list(inputs)

    def predict(self, batch: list[Inputs]) -> list[Answer]:
        assert self.model is not None, "setup() loads the model"
        return self.model.predict(batch)

    def unbatch(self, output: list[Answer]) -> list[Answer]:
        return list(output)

    def encode_response(self, output: Answer) -> dict[str, Any]:
        if output.status != 200:
            raise HTTPException(output.status, output.body["error"]["message"])
        return output.body


def serve_forever(artifact: str, port: int, max_batch: int, wait_s: float, workers: int) -> None:
    """Serve on 127.0.0.1:``port`` until terminated."""
    server = ls.LitServer(
        PolyfuseAPI(artifact, max_batch, wait_s),
        accelerator="cpu",
        workers_per_device=workers,
        fast_queue=True,
        disable_openapi_url=True,
    )
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)
