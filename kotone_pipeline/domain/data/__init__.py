"""Data contracts and files: schemas, the six dims, JSONL reading and writing, imports, committed data."""
