"""One root exception, one exit code per error class.

The library raises these and never prints or exits; `kxen.cli` maps them to
exit codes (documented in README.md) so CI can tell a bad manifest from a
compiler error without parsing text.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # unexpected failure inside kxen
    INVALID_INPUT = 2  # manifest, sources file, fragment, series, command line
    SOURCE_VERIFY = 3  # hash mismatch or download failure
    CONFIG = 4  # Kconfig could not produce the requested config
    BUILD = 5  # rpmbuild (or a build backend) failed
    MISSING_TOOL = 6  # a host tool the step needs is absent
    LOCKED = 7  # another kxen holds the lock of this result/build dir
    PUBLISH = 8  # results could not be written
    LINT = 9  # rpmlint reported errors
    NO_SPACE = 10  # too little free disk for the work asked for
    PATCH = 11  # a downstream patch does not apply as %prep applies it (--fuzz=0)
    HUB = 12  # the koji hub stayed unreachable/offline after retries, or refused the login
    VERIFY = 13  # `kxen verify`: a built RPM failed a check
    BOOT = 14  # `kxen boot-test`: the kernel did not boot to its marker as the expected guest
    DIST_GIT = 15  # `kxen dist-git`: the target is no clean git work tree, or git refused
    LOOKASIDE = 16  # the lookaside refused an upload or download, or stayed unreachable
    HANGUP = 129  # SIGHUP (the terminal or the session went away)
    INTERRUPTED = 130  # SIGINT
    TERMINATED = 143  # SIGTERM


class KxenError(Exception):
    """Root of every error kxen reports to its user."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (parallel per-arch work): keep class and details.
        return (_restore, (type(self), self.message, self.details))


def _restore(cls: type[KxenError], message: str, details: list[str]) -> KxenError:
    error = cls.__new__(cls)
    KxenError.__init__(error, message, details=details)
    return error


class InputError(KxenError):
    """Something the user wrote is wrong; the message names file, line or field."""

    exit_code = ExitCode.INVALID_INPUT


class UnsafePathError(InputError):
    """A path kxen would read or write is a symlink, special file or leads outside the
    checkout; it is refused rather than followed."""


class SourceError(KxenError):
    """An upstream source could not be fetched or failed verification."""

    exit_code = ExitCode.SOURCE_VERIFY


class ConfigError(KxenError):
    exit_code = ExitCode.CONFIG


class BuildError(KxenError):
    exit_code = ExitCode.BUILD


class MissingToolError(KxenError):
    exit_code = ExitCode.MISSING_TOOL


class LockedError(KxenError):
    exit_code = ExitCode.LOCKED


class PublishError(KxenError):
    exit_code = ExitCode.PUBLISH


class NoSpaceError(KxenError):
    exit_code = ExitCode.NO_SPACE


class LintError(KxenError):
    exit_code = ExitCode.LINT


class PatchError(KxenError):
    """A downstream patch fails, or needs fuzz, on the upstream tree."""

    exit_code = ExitCode.PATCH


class HubError(KxenError):
    """The koji hub could not be reached (after bounded retries) or refused us."""

    exit_code = ExitCode.HUB


class DistGitError(KxenError):
    """The dist-git checkout cannot take an export: not the top of a git work tree, has
    uncommitted changes, or git refused the commit. The checkout is left as it was."""

    exit_code = ExitCode.DIST_GIT


class LookasideError(KxenError):
    """The lookaside cache (dist-git's upload.cgi, or its download tree) refused or could
    not be reached after retries."""

    exit_code = ExitCode.LOOKASIDE


class Interrupted(KxenError):
    """A signal stopped the work; everything started was cleaned up."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = ExitCode(128 + signum)
