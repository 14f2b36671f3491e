"""Click commands, one module per command (see pyspeaker/cli.py)."""
