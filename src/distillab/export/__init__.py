"""Deployable forms of a trained model: int8 dynamic quantization, ONNX export, and a Hugging
Face folder (config, safetensors weights, tokenizer, model card) checked by loading it back."""

from distillab.export.hf import HFExport, export_hf
from distillab.export.onnx import export_onnx, onnx_agreement
from distillab.export.quantize import deployable_copy, quantize_int8

__all__ = ["HFExport", "deployable_copy", "export_hf", "export_onnx", "onnx_agreement", "quantize_int8"]
