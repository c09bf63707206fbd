"""MS MARCO passage ranking, one job a module: `files` (the published files, the raw files the workflow reads,
their download), `title_join` and `triples` (the seeds' shell steps, byte for byte), `tables` (text files ->
Parquet), `toolkits` (sentence-transformers' and Tevatron's files), `runs` (the MS MARCO run format)."""
