"""Process tuning for the serving process: the frozen heap and glibc malloc arenas."""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """Collect garbage, then exempt every object still alive from later collections
    (`gc.freeze`): a long-lived server's heap is mostly the model, torch and the app,
    which full collections would otherwise walk again and again while holding the GIL."""
    gc.collect()
    gc.freeze()


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap the C library's malloc arenas of this process at ``arenas``
    (``mallopt(M_ARENA_MAX)``, glibc); threads that allocate for the first time later
    share those. False where the C library has no such option (then nothing changes)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows)
        return False
    m_arena_max = -8  # <malloc.h>
    return bool(mallopt(ctypes.c_int(m_arena_max), ctypes.c_int(arenas)))
