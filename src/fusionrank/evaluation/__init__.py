"""fusionrank.evaluation"""
