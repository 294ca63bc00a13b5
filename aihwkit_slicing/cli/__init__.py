"""The ``aihwkit-slicing`` command (``aihwkit-slicing --help``)."""
