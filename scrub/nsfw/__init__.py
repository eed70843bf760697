"""NSFW rescoring: LAION's CLIP-based head over embeddings or images (extra ``nsfw``)."""
