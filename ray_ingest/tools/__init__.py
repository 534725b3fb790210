"""Tools around the data path: the synthetic dataset (:mod:`synth`) and the demo (:mod:`demo`)."""
