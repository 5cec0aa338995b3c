"""Detectors of the firewall: PII recognizers, prompt injection, hidden text."""
