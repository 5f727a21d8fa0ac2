"""fusionrank.collab"""
