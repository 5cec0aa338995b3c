"""Offline text-to-speech with eSpeak NG, from the ``espeakng-loader`` wheel (no system install).

Used to render spoken digits for the demo and real speech for tests on a
machine with nothing but PyPI.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from polyfuse.errors import DependencyError, PolyfuseError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_RATE, _PITCH, _RANGE = 1, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
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
            text: what to say.
            voice: eSpeak voice, optionally with a variant (``en-us+f3``).
            rate: words per minute (80-450).
            pitch: base pitch 0-100.
            pitch_range: pitch variation 0-100.
        """
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise PolyfuseError(f"unknown eSpeak voice '{voice}'")
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            if self._lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None) != 0:
                raise PolyfuseError(f"eSpeak NG could not synthesise {text!r}")
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0
