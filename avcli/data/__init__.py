"""The catalog, ingest, clip datasets, samplers and augmentations."""
