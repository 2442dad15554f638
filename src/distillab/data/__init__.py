"""Data sets as LightningDataModules whose batches are ``{"inputs", "labels", "index"}`` dicts."""

from distillab.data.digits import DigitsDataModule
from distillab.data.digits_domains import DigitsDomainsDataModule
from distillab.data.idx_images import FashionMNISTDataModule, MNISTDataModule
from distillab.data.lm_corpus import CorpusDataModule
from distillab.data.tensor_datamodule import IndexedTensorDataset, TensorDataModule
from distillab.data.text import TextClassificationDataModule
from distillab.data.text_domains import TextDomainsDataModule

__all__ = ["DigitsDataModule", "DigitsDomainsDataModule", "FashionMNISTDataModule", "MNISTDataModule", "IndexedTensorDataset", "CorpusDataModule", "TensorDataModule",
           "TextClassificationDataModule", "TextDomainsDataModule"]
