"""Shared machinery every stage uses: the one subprocess runner (and its supervisor),
file-system helpers that never leave half-written files or stale locks, the input gate
for checkout files, digest records for cache entries, and progress reporting."""
