"""Downstream patches: the quilt `series`, what each patch touches, and applying the
series to a scratch copy of the pristine tree as strictly as %prep does."""
