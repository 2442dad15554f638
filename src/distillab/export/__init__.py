"""Deployable forms of a trained model: int8 dynamic quantization and ONNX export."""

from distillab.export.onnx import export_onnx, onnx_agreement
from distillab.export.quantize import deployable_copy, quantize_int8

__all__ = ["deployable_copy", "export_onnx", "onnx_agreement", "quantize_int8"]
