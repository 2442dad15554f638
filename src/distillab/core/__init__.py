"""The bottom layer: config errors and checks, content keys, atomic entries and locks,
checkpoints and the distributed environment. It imports nothing else of distillab."""
