"""`kxen nightly`: build what changed upstream for every arch and flavour, keep the
history, compare with the previous good run, publish a dnf repository and a report, and
tell the people who asked."""
