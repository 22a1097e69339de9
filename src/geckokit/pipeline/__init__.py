"""The whole recipe as one resumable run (``geckokit distill``); its run folders, shards and
stage clock are :mod:`geckokit.runs`."""
