"""fusionrank.fusion"""
