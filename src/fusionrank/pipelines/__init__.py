"""fusionrank.pipelines"""
