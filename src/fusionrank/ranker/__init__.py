"""fusionrank.ranker: LightGBM lambdarank with early stopping, importances and explanations."""
