"""Builders: turn image sources (CoOp folders, image folders, URLs, synthetic drawings) into FDRD shards."""
