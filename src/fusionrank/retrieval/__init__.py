"""fusionrank.retrieval"""
