"""A koji hub for tests: XML-RPC over real HTTP on 127.0.0.1, with a builder that
really runs rpmbuild, and switches to inject the failures a driver must survive.

The wire contract it follows is koji's (see /work/shared/notes/koji.md)."""

from .hub import KOJI_VERSION, Hub, HubState, Task

__all__ = ["KOJI_VERSION", "Hub", "HubState", "Task"]
