"""The store in a bucket: a data root given as a URL (`CRYPTO_BASE_DIR=s3://bucket/prefix`).

`store` moves whole objects; `manifest` publishes a tree as a generation and brings a local copy
up to date from it; `lease` is the lock; `workcopy` runs a command in a local working copy between
a sync and a publish. ARCHITECTURE.md "The object-store protocol" describes the guarantees.
"""
