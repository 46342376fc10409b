"""One file per revision, named ``NNNN_what.py``; each names its ``down_revision``."""
