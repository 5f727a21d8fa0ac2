"""fusionrank.retrieval: top-N candidates per source (exact or FAISS) and their union."""
