"""rrn: the command-line entry point that gathers rrn_core's and orchestration's commands."""
