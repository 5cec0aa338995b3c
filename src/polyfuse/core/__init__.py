"""Foundations every layer may use: errors, registries, configuration helpers, devices,
progress bars and where pretrained weights come from. Imports nothing else of polyfuse."""
