"""The data.binance.vision mirror: S3 listing, streaming downloads, checksums and the manifest."""
