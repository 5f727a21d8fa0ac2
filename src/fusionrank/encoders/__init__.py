"""fusionrank.encoders"""
