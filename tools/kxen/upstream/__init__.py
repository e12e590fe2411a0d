"""Where the upstream tree comes from and how it is kept: kernel.org files, a local
tarball or a git snapshot (`origin`), archives checked before extraction (`archive`),
the extracted tree (`tree`), the lookaside cache and `sources` file (`sources`),
signatures, snapshots and version bumps."""
