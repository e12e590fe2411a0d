"""Run one command for kxen's runner, and take its process group down if kxen dies.

The runner starts this script (`python -I -S supervise.py LIFELINE ARGV...`) as the
leader of a new process group; the command and everything it starts (rpmbuild ->
make -> gcc) stay in that group. LIFELINE is the read end of a pipe whose write end
only kxen holds: when kxen dies, however it died (SIGKILL, a crash, the OOM killer),
the kernel closes the write end, the read end reports end of file, and this process
stops the whole group, so no orphaned build runs on. A signal the runner sends to
the group itself (a stop, a timeout) reaches the command directly; this process then only
waits and passes on how the command ended: its exit status, or death by the same
signal.

It runs with -S and imports only built-in modules (`signal` alone would cost 20 ms
for its enum), so it adds about 17 ms to a command.
"""

from __future__ import annotations

import _signal
import os
import select
import sys
import time

GRACE_SECONDS = 5.0
_PASSED_ON = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)
_RESTORED = (_signal.SIGPIPE, _signal.SIGXFSZ)


def _stop_group(child: int) -> None:
    """SIGTERM the group, give the command a grace period, then SIGKILL what is left
    (this process included: nobody waits for its status any more)."""
    os.killpg(0, _signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        try:
            if os.waitpid(child, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            break
        time.sleep(0.05)
    os.killpg(0, _signal.SIGKILL)


def _ignore(signum: int, frame: object) -> None:
    """The command in the group got the same signal; its end is what is reported."""


def _wait(child: int, lifeline: int) -> int:
    """The command's wait status; stops the group if the lifeline breaks first."""
    poller = select.poll()
    ended = os.pidfd_open(child)
    poller.register(ended, select.POLLIN)
    poller.register(lifeline, select.POLLIN | select.POLLHUP)
    while True:
        for fd, _ in poller.poll():
            if fd == lifeline and not os.read(lifeline, 1):
                _stop_group(child)
            if fd == ended:
                return os.waitpid(child, 0)[1]


def main(args: list[str]) -> int:
    lifeline, argv = int(args[0]), args[1:]
    os.set_inheritable(lifeline, False)
    child = os.fork()
    if child == 0:
        # Python ignores these and exec keeps what is ignored: give the command the
        # defaults it would get from a shell (a reader that went away ends a writer).
        for signum in _RESTORED:
            _signal.signal(signum, _signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"{argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    for signum in _PASSED_ON:
        _signal.signal(signum, _ignore)
    status = _wait(child, lifeline)
    if os.WIFSIGNALED(status):
        killed_by = os.WTERMSIG(status)
        _signal.signal(killed_by, _signal.SIG_DFL)
        os.kill(os.getpid(), killed_by)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
