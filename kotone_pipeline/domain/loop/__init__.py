"""Loop policy: augmentation, quality, split, hard dims, the gate, hyper-parameters, served and reviewed rows."""
