"""The one decoder per format: every part of polyfuse that turns bytes into pixels, samples,
text or a PDF document does it here.

The model's contracts (`polyfuse.modalities`), the firewall (`polyfuse.guard.readers`),
serving and evaluation all call these functions, so a file looks the same to each of them:
the same EXIF orientation, the same alpha compositing, the same resampler, the same limits
and the same typed errors (`InvalidInputError` naming the input and the reason).
Heavy libraries (Pillow, soundfile, scipy, pypdfium2) are imported inside the functions.

Modules: `image` (`decode_image`, `pixels_from_pil`, `pixels_from_array`), `audio`
(`decode_audio`, `samples_from_array`, `to_mono`, `resample`), `text` (`decode_text`),
`pdf` (`open_pdf`, `pdfium`) and `formats`, the sniffer (`sniff`, `detect`, `describe`).
Time series (``.npy`` / CSV) are read by `polyfuse.modalities.timeseries`, their only
reader. This package re-exports nothing; `polyfuse.modalities.io` (sources: a path or
bytes) sits above it and re-exports the sniffer.
"""
