"""Text classification data sets: TSV/CSV tables, domains, unlabelled sentences."""
