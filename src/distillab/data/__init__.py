"""Data sets as LightningDataModules whose batches are ``{"inputs", "labels", "index"}`` dicts
(data/batch.py lists every key), and the abilities some of them add (data/abilities.py)."""

from distillab.data.abilities import ImageData, LabelledTexts, TakesTokenizer
from distillab.data.batch import Batch
from distillab.data.images.digits import DigitsDataModule
from distillab.data.images.digits_domains import DigitsDomainsDataModule
from distillab.data.images.idx_images import FashionMNISTDataModule, MNISTDataModule
from distillab.data.language.lm_corpus import CorpusDataModule
from distillab.data.tensor_datamodule import IndexedTensorDataset, TensorDataModule
from distillab.data.text.classification import TextClassificationDataModule
from distillab.data.text.domains import TextDomainsDataModule
from distillab.data.text.token_classification import TokenClassificationDataModule

__all__ = [
    "Batch",
    "ImageData",
    "LabelledTexts",
    "TakesTokenizer",
    "DigitsDataModule",
    "DigitsDomainsDataModule",
    "FashionMNISTDataModule",
    "MNISTDataModule",
    "IndexedTensorDataset",
    "CorpusDataModule",
    "TensorDataModule",
    "TextClassificationDataModule",
    "TextDomainsDataModule",
    "TokenClassificationDataModule",
]
