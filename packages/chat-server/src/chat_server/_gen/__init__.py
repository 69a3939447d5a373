"""Generated code (see noxfile.py, session proto); not edited by hand."""
