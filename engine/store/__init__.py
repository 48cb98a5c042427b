"""Models on disk and on the hub: the local store, the curated catalog, hub listings, downloads and the
embedded default model."""
