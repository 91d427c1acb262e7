"""The sweep, in the order it runs: prepare, execute, trial, read back."""
