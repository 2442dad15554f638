"""Data sets as LightningDataModules whose batches are ``{"inputs", "labels", "index"}`` dicts."""

from distillab.data.images.digits import DigitsDataModule
from distillab.data.images.digits_domains import DigitsDomainsDataModule
from distillab.data.images.idx_images import FashionMNISTDataModule, MNISTDataModule
from distillab.data.language.lm_corpus import CorpusDataModule
from distillab.data.tensor_datamodule import IndexedTensorDataset, TensorDataModule
from distillab.data.text.classification import TextClassificationDataModule
from distillab.data.text.domains import TextDomainsDataModule

__all__ = [
    "DigitsDataModule",
    "DigitsDomainsDataModule",
    "FashionMNISTDataModule",
    "MNISTDataModule",
    "IndexedTensorDataset",
    "CorpusDataModule",
    "TensorDataModule",
    "TextClassificationDataModule",
    "TextDomainsDataModule",
]
