"""fusionrank.features: the (user, candidate) feature table, from training data only."""
