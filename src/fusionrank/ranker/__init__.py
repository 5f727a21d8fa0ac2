"""fusionrank.ranker"""
