"""Export: merging the winner, ONNX fp32/fp16, INT8 quantization with calibration, and the checks of
every export (parity, metric drop, latency, size).

May import `tasks.config`, `tasks.contracts`, `tasks.storage`, `tasks.runtime`, `tasks.data`,
`tasks.training` and `tasks.scoring`.
"""
