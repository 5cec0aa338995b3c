"""Offline text-to-speech with eSpeak NG, from the ``espeakng-loader`` wheel (no system install).

Used to render spoken digits for the demo and real speech for tests on a
machine with nothing but PyPI.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from polyfuse.core.errors import DependencyError, PolyfuseError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_RATE, _PITCH, _RANGE = 1, 3, 4
_CHARS_UTF8, _SSML = 1, 0x10
_EVENT_END_OF_LIST, _EVENT_MARK = 0, 3


class _Event(ctypes.Structure):
    """``espeak_EVENT`` (speak_lib.h); ``id`` is a union whose ``name`` member marks use."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("name", ctypes.c_char_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class Espeak:
    """A synthesizer over ``libespeak-ng`` (one per process; calls are serialised).

    Use `Espeak.get` rather than the constructor: the library is process-global.
    """

    _instance: Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise DependencyError("espeakng-loader", "speech synthesis", "demo") from exc
        self._lib: Any = ctypes.CDLL(espeakng_loader.get_library_path())
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if rate <= 0:
            raise PolyfuseError("eSpeak NG failed to initialise")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._marks: dict[str, float] = {}
        self._callback = _CALLBACK(self._collect)  # keep a reference: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> Espeak:
        """The process-wide synthesizer."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events and events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_MARK and events[i].name:
                name = events[i].name.decode("utf-8", "replace")
                self._marks[name] = events[i].audio_position / 1000.0
            i += 1
        return 0

    def say(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 160,
        pitch: int = 50,
        pitch_range: int = 50,
    ) -> np.ndarray:
        """Render ``text``; returns float32 mono samples at `sample_rate`.

        Args:
            text: what to say (plain text; see `say_ssml` for markup).
            voice: eSpeak voice, optionally with a variant (``en-us+f3``).
            rate: words per minute (80-450).
            pitch: base pitch 0-100.
            pitch_range: pitch variation 0-100.
        """
        return self._synth(text, voice, rate, pitch, pitch_range, _CHARS_UTF8)[0]

    def say_ssml(
        self,
        ssml: str,
        voice: str = "en-us",
        rate: int = 160,
        pitch: int = 50,
        pitch_range: int = 50,
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Render SSML (``<break time="300ms"/>``, ``<mark name="x"/>``, ``<prosody>`` ...;
        escape ``<``, ``>`` and ``&`` in the text) and return the samples together with
        the time in seconds at which each ``<mark>`` was reached.
        """
        return self._synth(ssml, voice, rate, pitch, pitch_range, _CHARS_UTF8 | _SSML)

    def _synth(
        self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, flags: int
    ) -> tuple[np.ndarray, dict[str, float]]:
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise PolyfuseError(f"unknown eSpeak voice '{voice}'")
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks, self._marks = [], {}
            data = text.encode("utf-8") + b"\0"
            if self._lib.espeak_Synth(data, len(data), 0, 0, 0, flags, None, None) != 0:
                raise PolyfuseError(f"eSpeak NG could not synthesise {text!r}")
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
            marks, self._marks = self._marks, {}
        if not chunks:
            return np.zeros(0, dtype=np.float32), marks
        return np.concatenate(chunks).astype(np.float32) / 32768.0, marks
