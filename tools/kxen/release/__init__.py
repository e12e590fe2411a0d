"""Releasing the way Fedora's kernel is released: the package rendered into a dist-git
checkout (`distgit`), its upstream files in the lookaside cache (`lookaside`)."""
