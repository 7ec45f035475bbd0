"""File-format readers: GGUF and safetensors headers, ONNX external data, tar headers, ``.tursi`` bundles.

Same layer as ``tursi.core``; stdlib-only parsers that never trust a length field."""
