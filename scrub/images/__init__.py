"""Images: hashing downloaded images and scrubbing webdataset copies (tars + parquet sidecars)."""
