"""The video contract (frames through the image contract's code) and the audio contract
reading a video's soundtrack (``source: video``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polyfuse.core.errors import ConfigError, ContractError, InvalidInputError
from polyfuse.modalities import (
    AudioContract,
    ImageContract,
    VideoClip,
    VideoContract,
    contract_from_dict,
    create_contract,
)
from polyfuse.modalities.base import AbsentInputError
from tests.videos import write_clip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("video")
    write_clip(d / "tone.mp4")
    write_clip(d / "none.mp4", audio=None)
    return d


def _contract(**params: object) -> VideoContract:
    base: dict[str, object] = {"frames": 4, "size": [16, 16], "channels": 1}
    return create_contract("clip", "video", {**base, **params})  # type: ignore[return-value]


def test_load_samples_frames_with_timestamps_through_the_image_contract(folder: Path) -> None:
    contract = _contract()
    clip = contract.load("tone.mp4", base_dir=folder)
    assert isinstance(clip, VideoClip) and len(clip) == 4
    assert clip.frames.shape == (4, 32, 32, 1) and clip.frames.dtype == np.uint8
    np.testing.assert_allclose(clip.timestamps, [0.2, 0.7, 1.2, 1.7], atol=0.051)
    x = contract.preprocess(clip)
    assert x.shape == (4, 1, 16, 16)  # (T, C, H, W)
    image = ImageContract.create("clip", {"size": [16, 16], "channels": 1})
    for t in range(4):  # each frame exactly as the image contract preprocesses an image
        assert torch.equal(x[t], image.preprocess(clip.frames[t]))


def test_arrays_and_clips_load_too_and_bad_arrays_are_refused() -> None:
    contract = _contract(channels=3)
    frames = np.zeros((3, 10, 12, 3), np.uint8)
    clip = contract.load(frames)
    assert clip.frames.shape == (3, 10, 12, 3) and list(clip.timestamps) == [0.0, 1.0, 2.0]
    assert contract.load(clip).frames.shape == (3, 10, 12, 3)
    with pytest.raises(InvalidInputError, match=r"\(T, H, W\[, C\]\)"):
        contract.load(np.zeros((4, 4), np.uint8))


def test_collate_pads_time_and_records_frame_counts() -> None:
    contract = _contract()
    long, short = torch.ones(4, 1, 16, 16), torch.full((2, 1, 16, 16), 2.0)
    batch = contract.collate([long, short], torch.tensor([True, False, True]))
    assert batch.data.shape == (2, 4, 1, 16, 16) and batch.lengths.tolist() == [4, 2]
    assert float(batch.data[1, 2:].abs().sum()) == 0.0  # missing frames are zeros
    assert torch.equal(contract.sample_view(batch, 1), short)
    assert contract.padded_length(long) == 4
    noise = contract.noise(long, np.random.default_rng(0))
    assert noise.shape == long.shape


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"frames": 0}, "modalities.clip.contract.frames"),
        ({"sampling": "every"}, "modalities.clip.contract.sampling"),
        ({"fps": 0}, "modalities.clip.contract.fps"),
        ({"size": [16]}, "modalities.clip.contract.size"),  # the image contract's own check
        ({"std": [0.0]}, "modalities.clip.contract.std"),
        ({"frame_rate": 5}, "modalities.clip.contract.frame_rate"),
    ],
)
def test_bad_parameters_name_their_key(params: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _contract(**params)
    assert key in str(info.value)


def test_round_trip_and_version_check() -> None:
    contract = _contract(sampling="keyframes")
    again = contract_from_dict(contract.to_dict())
    assert again == contract and again.fingerprint() == contract.fingerprint()
    with pytest.raises(ContractError, match="video contract v9"):
        contract_from_dict({**contract.to_dict(), "version": 9})


def test_limits_reach_the_reader(folder: Path) -> None:
    with pytest.raises(InvalidInputError, match="longer than the limit of 1 s"):
        _contract(max_seconds=1.0).load(folder / "tone.mp4")
    with pytest.raises(InvalidInputError, match="above the limit of 100"):
        _contract(max_bytes=100).load(folder / "tone.mp4")


def test_audio_reads_a_videos_soundtrack_only_with_a_source(folder: Path) -> None:
    audio = AudioContract.create("audio", {"sample_rate": 8000, "source": "video"})
    wave = audio.load(folder / "tone.mp4")
    assert wave.dtype == np.float32 and 16000 <= wave.size <= 17100
    assert audio.manifest_key == "video"
    with pytest.raises(AbsentInputError, match="no audio track") as info:
        audio.load(folder / "none.mp4")
    assert isinstance(info.value, InvalidInputError)  # callers that do not know still see one
    plain = AudioContract.create("audio", {"sample_rate": 8000})
    with pytest.raises(InvalidInputError, match="content is an MP4 video"):
        plain.load(folder / "tone.mp4")  # no source: audio files only, as before
    assert plain.manifest_key == "audio" and "source" not in plain.params()
    assert contract_from_dict(audio.to_dict()).source == "video"
