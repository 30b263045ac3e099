"""The ALOCC one-class model: networks, training, calibration, evaluation and the scoring API."""
