"""The composition root: the ``rwa`` command and the embedded-stack launcher."""
