"""koji's own hub and builder on 127.0.0.1, for the tests: see stack.py."""

from .stack import ADMIN, BUILD_TAG, DEST_TAG, TARGET, USER, RealKoji

__all__ = ["ADMIN", "BUILD_TAG", "DEST_TAG", "TARGET", "USER", "RealKoji"]
