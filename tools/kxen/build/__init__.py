"""From inputs to RPMs: the rendered spec, the reproducible SRPM, the backends that
build it (local rpmbuild, mock, koji) and the published results."""
