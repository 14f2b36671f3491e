"""pyspeaker: Kaldi-style speaker verification in Python."""
__version__ = "0.1.0"
