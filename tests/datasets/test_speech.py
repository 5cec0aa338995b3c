"""Real eSpeak NG synthesis from the espeakng-loader wheel."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.core.errors import PolyfuseError
from polyfuse.datasets.speech import Espeak


def test_renders_audible_speech_whose_length_follows_the_text() -> None:
    tts = Espeak.get()
    short = tts.say("one")
    long = tts.say("one two three four five six")
    assert tts.sample_rate == 22050
    assert short.dtype == np.float32 and 0.1 < short.size / tts.sample_rate < 1.5
    assert long.size > 3 * short.size
    assert 0.01 < float(np.sqrt(np.mean(short**2))) < 1.0


def test_ssml_marks_report_when_they_are_reached() -> None:
    tts = Espeak.get()
    plain = tts.say("one two three")
    x, marks = tts.say_ssml(
        '<speak>one <mark name="a"/>two <break time="500ms"/> three<mark name="b"/></speak>'
    )
    seconds = x.size / tts.sample_rate
    assert set(marks) == {"a", "b"}
    assert 0.1 < marks["a"] < marks["b"] <= seconds + 0.01
    assert x.size > plain.size + 0.3 * tts.sample_rate  # the break is silence added


def test_voices_differ_and_unknown_voice_is_an_error() -> None:
    tts = Espeak.get()
    a, b = tts.say("seven", "en-us+m3", pitch=30), tts.say("seven", "en-us+f3", pitch=80)
    n = min(a.size, b.size)
    assert not np.allclose(a[:n], b[:n])
    with pytest.raises(PolyfuseError, match="unknown eSpeak voice"):
        tts.say("x", voice="no-such-voice")


def test_demo_voices_render_identically_in_every_process() -> None:
    """The demo data must not change between runs (eSpeak's "breath" variants add noise)."""
    import subprocess
    import sys

    code = (
        "import hashlib\n"
        "from polyfuse.datasets.speech import Espeak\n"
        "from polyfuse.datasets.spoken_digits import TEST_VOICES, TRAIN_VOICES\n"
        "h = hashlib.sha256()\n"
        "for v in (*TRAIN_VOICES, *TEST_VOICES):\n"
        "    h.update(Espeak.get().say('three', v, rate=150, pitch=40).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1
