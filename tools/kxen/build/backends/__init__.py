"""Build executors behind one interface: local rpmbuild today, mock and koji next."""

from kxen.build.backends.base import ArchResult, Backend, BuildRequest

__all__ = ["ArchResult", "Backend", "BuildRequest"]
