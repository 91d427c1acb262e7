"""Reading a sweep back: tables, formats, plots."""
