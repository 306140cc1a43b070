"""Semi-supervised training: what train.py --ssl adds to the labeled images (lib.semisup.selftrain)."""
