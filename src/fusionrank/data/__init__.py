"""fusionrank.data"""
