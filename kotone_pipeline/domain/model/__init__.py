"""The model: predictors, the encoder and its cache, the champion's two parts, baselines and metrics."""
