"""Readers of the firewall: OCR for images, speech recognition for audio, PDF documents."""
