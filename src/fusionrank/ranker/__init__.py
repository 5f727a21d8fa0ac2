"""fusionrank.ranker: LightGBM learning to rank (lambdarank, XE-NDCG or pointwise) with early
stopping, importances and explanations."""
