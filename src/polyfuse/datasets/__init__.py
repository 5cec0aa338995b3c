"""Dataset builders that turn public data into polyfuse manifests."""
