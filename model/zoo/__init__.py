"""The model zoo: one file per model, each registering its specs with :mod:`model.registry` on import.

Every module here (names not starting with ``_``) is imported by the registry on the first look-up, sorted by
file name; that order is the listing order of ``mslstm models``. Nothing needs to import them by hand.
"""
