"""fusionrank.features"""
