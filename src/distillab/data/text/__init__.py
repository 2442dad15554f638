"""Text data sets: classification from TSV/CSV tables, domains, unlabelled sentences; token
classification (named entities) from CoNLL files."""
