"""What train.py trains beside the cross-entropy of the labeled crops.

--ssl modes (registry: modes.py; the interface and --ssl none: mode.py):
- selftrain (selftrain_mode.py): a teacher's pseudo labels (selftrain.py) of the unlabeled
  pixels, on strongly augmented crops (augment.py);
- s4gan (s4gan_mode.py): s4GAN's discriminator, feature matching and self-training (s4gan.py).
Both train on crops of the images with unlabeled pixels (unlabeled.py).

--contrastive heads (registry: contrastive.py), with any --ssl mode: reco, ReCo's
regional contrastive loss (reco.py).

A mode's or head's flags are refused while it is off (flags.py); every draw is seeded by lib.seeding.
"""
