"""/v1/search, /v1/consistency and /v1/caption against real tiny alignment, index and
captioning artifacts (frozen EfficientNet-Lite0 + MiniLM, trained here on drawn shapes)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from polyfuse.core.errors import ConfigError
from polyfuse.serve.http.app import create_app
from polyfuse.serve.runtime.align import AlignServices
from polyfuse.serve.runtime.model import ModelRuntime

pytestmark = pytest.mark.integration

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 40),
}
SHAPES = ("square", "circle")
LOOPBACK = ("127.0.0.1", 50000)


def _draw(colour: str, shape: str, seed: int) -> bytes:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (96, 96), tuple(int(v) for v in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(img)
    x, y = (int(v) for v in rng.integers(8, 24, 2))
    box = (x, y, x + 64, y + 64)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _manifest(folder: Path, name: str, seeds: range) -> Path:
    rows = []
    for seed in seeds:
        for colour in COLOURS:
            for shape in SHAPES:
                path = folder / f"{colour}-{shape}-{seed}.png"
                path.write_bytes(_draw(colour, shape, seed))
                for caption in (f"a {colour} {shape}", f"a {shape} coloured {colour}"):
                    rows.append({"image": str(path), "text": caption})
    out = folder / name
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


ENCODERS = {
    "image": {"kind": "image", "encoder": "efficientnet_lite0"},
    "text": {"kind": "text", "encoder": "minilm"},
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Alignment artifact, its index over the validation images, captioning artifact."""
    from polyfuse.cli import main
    from polyfuse.retrieval.pipeline import build_index

    root = tmp_path_factory.mktemp("align-serve")
    train = _manifest(root, "train.jsonl", range(6))
    val = _manifest(root, "val.jsonl", range(100, 102))
    configs = {
        "align": {
            "task": "contrastive",
            "modalities": ENCODERS,
            "model": {"dim": 64, "dropout": 0.0},
            "train": {"epochs": 30, "batch_size": 32, "lr": 3e-3, "seed": 0},
            "align": {"ensemble": 1, "querybank": False, "scorer": False},
        },
        "caption": {
            "task": "captioning",
            "modalities": ENCODERS,
            "model": {"dim": 64, "dropout": 0.0},
            "train": {"epochs": 40, "batch_size": 16, "lr": 3e-3, "seed": 0},
        },
    }
    for name, config in configs.items():
        path = root / f"{name}.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        args = ["train", str(path), "--train", str(train), "--val", str(val)]
        assert main([*args, "--out", str(root / name), "-q"]) == 0
    build_index(root / "align", val, root / "index", progress=False)
    return {**{n: root / n for n in ("align", "caption", "index")}, "val": val}


@pytest.fixture(scope="module")
def client(artifacts: dict[str, Path], trained: tuple[Path, Path]) -> Any:
    align = AlignServices.load(index=artifacts["index"], caption=artifacts["caption"])
    runtime = ModelRuntime.load(trained[0], preprocess="thread", max_batch=1)
    with TestClient(create_app(runtime, align=align), client=LOOPBACK) as c:
        yield c


def test_info_lists_the_routes(client: TestClient) -> None:
    info = client.get("/v1/info").json()
    assert {"search", "consistency", "caption"} <= set(info["routes"])
    assert info["alignment"]["index"] == {"image": 16, "text": 32}
    assert info["alignment"]["alignment"]["roles"] == {"item": "image", "query": "text"}


def test_text_search_finds_images_of_that_colour_and_shape(client: TestClient) -> None:
    right = total = 0
    for colour in COLOURS:
        for shape in SHAPES:
            r = client.post("/v1/search?k=2", files={"text": (None, f"a {colour} {shape}")})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["query"] == "text" and body["searched"] == "image"
            hits = body["hits"]
            assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
            total += 2
            right += sum(f"{colour}-{shape}-" in h["id"] for h in hits)
    assert right / total >= 0.3  # chance is 1/8; the tiny model is weak, the wiring is not:


def test_search_answers_what_the_library_answers(
    client: TestClient, artifacts: dict[str, Path]
) -> None:
    from polyfuse.retrieval.pipeline import search_index

    expected = search_index(artifacts["index"], "text", "a green circle", k=5)
    hits = client.post("/v1/search?k=5", files={"text": (None, "a green circle")}).json()["hits"]
    assert [h["id"] for h in hits] == [Path(h.id).name for h in expected]  # no server paths
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)


def test_image_search_answers_what_the_library_answers(
    client: TestClient, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    from polyfuse.retrieval.pipeline import search_index

    data = _draw("blue", "circle", 7)
    (tmp_path / "q.png").write_bytes(data)
    expected = search_index(artifacts["index"], "image", str(tmp_path / "q.png"), k=4)
    r = client.post("/v1/search?k=4", files={"image": ("x.png", data)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["searched"] == "text"
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected]  # caption rows' ids
    assert all(set(h["metadata"]) == {"image", "text"} for h in body["hits"])
    assert all("/" not in h["metadata"]["image"] for h in body["hits"])


def test_consistency_answers_what_the_library_answers(
    client: TestClient, artifacts: dict[str, Path]
) -> None:
    from polyfuse.retrieval.pipeline import Aligner

    aligner = Aligner.load(artifacts["align"])
    data = _draw("red", "square", 9)
    captions = ["a red square", "a yellow circle", "a blue square", "a circle coloured green"]
    expected = aligner.consistency([data] * len(captions), captions)
    for caption, (score, contradiction) in zip(captions, expected, strict=True):
        r = client.post(
            "/v1/consistency", files={"image": ("x.png", data), "text": (None, caption)}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["score"] == pytest.approx(score, abs=1e-5)
        assert body["contradiction"] is contradiction
        assert body["contradiction"] is (body["score"] < body["threshold"])


def test_caption_names_colour_and_shape(client: TestClient) -> None:
    right = 0
    for colour in COLOURS:
        r = client.post(
            "/v1/caption?beam=2", files={"image": ("x.png", _draw(colour, "circle", 11))}
        )
        assert r.status_code == 200, r.text
        text = r.json()["caption"]
        right += colour in text and "circle" in text
    assert right >= 3


def test_caption_matches_the_file_path_route(artifacts: dict[str, Path], tmp_path: Path) -> None:
    from polyfuse.inference.captioner import Captioner

    captioner = Captioner(artifacts["caption"])
    data = _draw("green", "square", 12)
    (tmp_path / "g.png").write_bytes(data)
    assert captioner.caption_images([data], beam=2) == captioner.caption(
        [str(tmp_path / "g.png")], beam=2
    )


def test_bad_requests_are_typed(client: TestClient) -> None:
    cases = [
        ("/v1/search?k=0", {"text": (None, "a red square")}, 400),
        ("/v1/search?k=abc", {"text": (None, "a red square")}, 400),
        ("/v1/search", {"text": (None, "a"), "image": ("x.png", _draw("red", "circle", 1))}, 400),
        ("/v1/search", {"audio": ("x.wav", b"RIFF")}, 400),
        ("/v1/consistency", {"text": (None, "a red square")}, 400),
        ("/v1/caption?beam=99", {"image": ("x.png", _draw("red", "circle", 1))}, 400),
        ("/v1/caption", {"image": ("x.png", b"not an image at all")}, 400),
    ]
    for path, files, status in cases:
        r = client.post(path, files=files)
        assert r.status_code == status, (path, r.text)
        assert r.json()["error"]["code"] == "invalid_input"
    assert client.get("/healthz").status_code == 200


def test_routes_without_their_artifact_say_which_flag(trained: tuple[Path, Path]) -> None:
    runtime = ModelRuntime.load(trained[0], preprocess="thread", max_batch=1)
    with TestClient(create_app(runtime), client=LOOPBACK) as c:
        for route, flag in (
            ("search", "--index"),
            ("consistency", "--align"),
            ("caption", "--caption"),
        ):
            r = c.post(f"/v1/{route}", files={"text": (None, "a red square")})
            assert r.status_code == 404
            assert flag in r.json()["error"]["hint"]
        assert c.get("/v1/info").json()["routes"] == ["predict", "embed"]


def test_load_errors_name_the_flag(artifacts: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--index"):
        AlignServices.load(index=tmp_path)
    with pytest.raises(ConfigError, match="--caption"):
        AlignServices.load(caption=artifacts["align"])  # an alignment artifact
    with pytest.raises(ConfigError, match="--align"):
        AlignServices.load(align=tmp_path)
    assert AlignServices.load() is None


def test_malformed_files_get_typed_answers_on_every_route(client: TestClient) -> None:
    """The firewall's corpus of malformed files as the image of each route: a typed 4xx
    (or 200 where the file is readable after all), never a server error."""
    from tests.serve.http.test_fuzz import CORPUS, MALFORMED

    seen: dict[int, int] = {}
    for name in CORPUS:
        data = (MALFORMED / name).read_bytes()
        for path, extra in (
            ("/v1/caption", {}),
            ("/v1/search?k=3", {}),
            ("/v1/consistency", {"text": (None, "a red square")}),
        ):
            r = client.post(path, files={"image": (name, data), **extra})
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code < 500, (path, name, r.text)
            if r.status_code != 200:
                assert r.json()["error"]["code"] in (
                    "invalid_input",
                    "too_large",
                    "unsupported_media",
                )
    assert seen.get(400, 0) + seen.get(413, 0) + seen.get(415, 0) >= len(CORPUS)
    assert client.get("/healthz").status_code == 200


def test_cli_serve_loads_the_flags(
    artifacts: dict[str, Path],
    trained: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import uvicorn

    from polyfuse import cli

    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    monkeypatch.delenv("POLYFUSE_API_KEYS", raising=False)
    args = ["serve", str(trained[0]), "--index", str(artifacts["index"])]
    assert cli.main([*args, "--caption", str(artifacts["caption"]), "-q"]) == cli.EXIT_OK
    align = apps[0].state.service.align
    assert align.routes == ("search", "consistency", "caption")
    # a wrong artifact behind a flag: refused before the model loads, naming the flag
    assert cli.main(["serve", str(trained[0]), "--caption", str(artifacts["align"])]) == 2
    assert "--caption" in capsys.readouterr().err
    assert len(apps) == 1


class _NoImageFindings:
    """The input side's image scanner, faked: these answers' outputs are under test."""

    def scan(self, data: bytes) -> list[Any]:
        return []


@pytest.fixture(scope="module")
def pii_index(artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of four validation rows whose captions hold an e-mail address and a card
    number."""
    import dataclasses

    from polyfuse.data.manifest import Manifest
    from polyfuse.retrieval.pipeline import Aligner, write_index

    aligner = Aligner.load(artifacts["align"])
    pii = ", write to jane.doe@example.com, card 4111 1111 1111 1111"
    rows = [
        dataclasses.replace(r, values={**r.values, "text": r.values["text"] + pii})
        for r in Manifest.load(artifacts["val"], ("image", "text")).rows[:4]
    ]
    zi = aligner.embed("image", [r.values["image"] for r in rows]).numpy()
    zq = aligner.embed("text", [r.values["text"] for r in rows]).numpy()
    out = tmp_path_factory.mktemp("pii") / "index"
    write_index(out, artifacts["align"], aligner.info["roles"], rows, zi, zq)
    return out


def test_answers_pass_the_output_policy_with_the_real_firewall(
    artifacts: dict[str, Path], trained: tuple[Path, Path], pii_index: Path
) -> None:
    """The default policy with the real PII detector (Presidio + the validated
    recognizers) over a real index and captioner: stored captions holding an e-mail
    address and a card number come back redacted, image paths as their file names."""
    from polyfuse.guard.detectors.pii import TextPII
    from polyfuse.guard.engine import Guard
    from polyfuse.retrieval.pipeline import Aligner

    align = AlignServices(aligner=Aligner.load(artifacts["align"]), index=pii_index, captioner=None)
    guard = Guard(text_detectors=[TextPII()], image_scanner=_NoImageFindings())
    runtime = ModelRuntime.load(trained[0], preprocess="thread", max_batch=1)
    with TestClient(create_app(runtime, guard=guard, align=align), client=LOOPBACK) as c:
        r = c.post("/v1/search?k=2", files={"image": ("q.png", _draw("red", "square", 3))})
        assert r.status_code == 200, r.text
        body = r.json()
    assert "example.com" not in r.text and "4111" not in r.text
    assert str(artifacts["val"].parent) not in r.text
    for hit in body["hits"]:
        assert hit["metadata"]["text"].endswith(", write to <EMAIL_ADDRESS>, card <CREDIT_CARD>")
        assert hit["metadata"]["image"] == Path(hit["metadata"]["image"]).name
    assert body["output_scan"]["redacted"] == {"EMAIL_ADDRESS": 2, "CREDIT_CARD": 2}


def test_cli_search_and_caption_print_what_the_policy_lets_out(
    artifacts: dict[str, Path], pii_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from polyfuse.cli import main

    policy = tmp_path / "policy.yaml"
    policy.write_text("entities: {EMAIL_ADDRESS: redact, CREDIT_CARD: redact}\n")
    search = ["search", "--db", str(pii_index), "--text", "a red square", "-k", "2", "--json"]
    assert main([*search, "--policy", str(policy)]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 2 and all("<EMAIL_ADDRESS>" in t for x in lines for t in x["text"])
    assert "example.com" not in out and "output firewall: redacted CREDIT_CARD x" in err
    policy.write_text("outputs: {entities: {EMAIL_ADDRESS: block}}\n")
    assert main([*search, "--policy", str(policy)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "blocks the answer (EMAIL_ADDRESS)" in err
    image = tmp_path / "g.png"
    image.write_bytes(_draw("green", "square", 12))
    assert main(["caption", str(artifacts["caption"]), str(image), "--policy", str(policy)]) == 0
    assert capsys.readouterr().out.startswith(str(image))
