"""Language-model corpora: texts packed into blocks of byte-level BPE tokens."""
