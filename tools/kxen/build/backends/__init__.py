"""Build executors behind one interface (`base`): local rpmbuild, mock and koji."""

from kxen.build.backends.base import ArchBuild, ArchResult, Backend, BuildRequest, Run, Source

__all__ = ["ArchBuild", "ArchResult", "Backend", "BuildRequest", "Run", "Source"]
