"""Data sets as LightningDataModules whose batches are ``{"inputs", "labels", "index"}`` dicts."""

from distillab.data.digits import DigitsDataModule
from distillab.data.digits_domains import DigitsDomainsDataModule
from distillab.data.tensor_datamodule import IndexedTensorDataset, TensorDataModule

__all__ = ["DigitsDataModule", "DigitsDomainsDataModule", "IndexedTensorDataset", "TensorDataModule"]
