"""Blockwise 8-bit weights: every constant-weight MatMul to MatMulNBits, the embedding to
GatherBlockQuantized (sharing lm_head's bytes when they are tied). This is the `dynamic` INT8 graph, and
what the `static` one does to the MatMuls kept out of activation quantization.

Measured on SmolLM2-135M-Instruct (2 CPU cores, batch 1, 128 tokens; PyTorch fp32 538 MB, p50 ~287 ms):
- onnxruntime's per-tensor dynamic quantization (MatMulInteger) cost accuracy unless the MLP down_proj
  stayed fp32 (greedy agreement with PyTorch on prompt positions 0.82), which left 0.56x the size; static
  QDQ with calibrated per-tensor activation ranges did worse (0.75 minmax, 0.70 percentile; on the demo's
  held-out rows 0.83 against 0.92 for the blockwise graph below).
- Blockwise 8-bit weights (MatMulNBits, bits=8, a scale and zero point per 64 weights) with int8 compute
  (accuracy_level=4: activations quantized per block at run time) on every MatMul, down_proj and lm_head
  included, plus the tied embedding stored once in 8 bits (GatherBlockQuantized over lm_head's bytes):
  0.27x the size, p50 0.38x PyTorch, ROUGE-L on the fine-tuned demo +0.008. 32-weight blocks: 0.29x and
  about 10% slower for no measurable accuracy gain.

numpy, onnx and onnxruntime are imported inside the functions: only the export needs them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.exporting.onnx_fp import MODEL_FILE, save_onnx
from tasks.runtime.errors import StepError

# MatMulNBits' int8 compute: activations quantized to int8 per block at run time (about 2x faster on AVX512
# VNNI than dequantizing the weights to fp32, accuracy_level 0, with the same agreement).
INT8_ACCURACY_LEVEL = 4


def _initializers(graph: Any) -> dict[str, Any]:
    return {tensor.name: tensor for tensor in graph.initializer}


def _consumers(graph: Any, name: str) -> list[Any]:
    return [node for node in graph.node if name in node.input]


def embedding_gather(graph: Any) -> Any | None:
    """The token embedding lookup: the Gather over the largest 2-D initializer."""
    inits = _initializers(graph)
    gathers = [
        node
        for node in graph.node
        if node.op_type == "Gather" and node.input[0] in inits and len(inits[node.input[0]].dims) == 2
    ]
    return max(gathers, key=lambda n: inits[n.input[0]].dims[0], default=None)


def untie_lm_head(graph: Any, table: str) -> str | None:
    """Give a tied lm_head (MatMul by Transpose(embedding), as optimum exports tied weights) its own
    transposed initializer so the weight quantizer sees a constant; returns the lm_head's output name."""
    import numpy as np  # with onnx: only when quantizing
    from onnx import numpy_helper

    for node in list(graph.node):
        if node.op_type != "Transpose" or node.input[0] != table:
            continue
        users = _consumers(graph, node.output[0])
        if len(users) == 1 and users[0].op_type == "MatMul" and users[0].input[1] == node.output[0]:
            weight = numpy_helper.to_array(_initializers(graph)[table])
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), node.output[0]))
            graph.node.remove(node)
            return users[0].output[0]
    return None


def _weight_only_config(block_size: int) -> Any:
    try:  # heavy: only when quantizing
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig
    except ModuleNotFoundError as error:  # onnxruntime imports onnx_ir there without declaring it
        raise StepError(
            f"export: INT8 needs the {error.name} package for onnxruntime's MatMulNBits quantizer; "
            "pip install 'tunerflow[export]' (or onnx-ir)"
        ) from None

    return DefaultWeightOnlyQuantConfig(
        block_size=block_size,
        is_symmetric=False,
        accuracy_level=INT8_ACCURACY_LEVEL,
        bits=8,
        op_types_to_quantize=("MatMul",),
    )


def _gather_block_quantized(
    graph: Any, gather: Any, data: str, scales: str, zero_points: str, shape: tuple[int, int, int]
) -> None:
    """Replace the fp32 lookup by GatherBlockQuantized over [vocab, blocks, block] uint8 rows: the layout
    MatMulNBits stores lm_head in, so a tied embedding is kept once."""
    import numpy as np  # with onnx: only when quantizing
    from onnx import helper, numpy_helper

    vocab, blocks, block = shape
    prefix = f"{gather.name or 'embedding'}/int8"
    block_shape = numpy_helper.from_array(
        np.array([vocab, blocks, 1], dtype=np.int64), f"{prefix}/scale_shape"
    )
    out_shape = numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), f"{prefix}/out_shape")
    graph.initializer.extend([block_shape, out_shape])
    nodes = [
        helper.make_node(
            "Reshape", [scales, block_shape.name], [f"{prefix}/scales"], name=f"{prefix}/ScalesReshape"
        ),
        helper.make_node(
            "Reshape",
            [zero_points, block_shape.name],
            [f"{prefix}/zero_points"],
            name=f"{prefix}/ZeroReshape",
        ),
        helper.make_node(
            "GatherBlockQuantized",
            [data, gather.input[1], f"{prefix}/scales", f"{prefix}/zero_points"],
            [f"{prefix}/blocks"],
            name=f"{prefix}/GatherBlockQuantized",
            domain="com.microsoft",
            bits=8,
            block_size=block,
            gather_axis=0,
            quantize_axis=2,
        ),
        helper.make_node(
            "Reshape", [f"{prefix}/blocks", out_shape.name], [gather.output[0]], name=f"{prefix}/Out"
        ),
    ]
    position = list(graph.node).index(gather)
    graph.node.remove(gather)
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)


def quantize_embedding(graph: Any, gather: Any, lm_head_output: str | None, block_size: int) -> str:
    """Store the embedding table in 8 bits, sharing lm_head's quantized weight when they are tied."""
    from onnx import numpy_helper  # with onnxruntime: only when quantizing
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantizer

    inits = _initializers(graph)
    table = gather.input[0]
    vocab, hidden = (int(d) for d in inits[table].dims)
    if hidden % block_size:
        return f"fp32 (hidden size {hidden} is not a multiple of int8_block_size {block_size})"
    shape = (vocab, hidden // block_size, block_size)
    lm_head = next((n for n in graph.node if lm_head_output in n.output), None) if lm_head_output else None
    if lm_head is not None and lm_head.op_type == "MatMulNBits" and len(lm_head.input) > 3:
        data, scales, zero_points = lm_head.input[1], lm_head.input[2], lm_head.input[3]
        shared = tuple(int(d) for d in inits[data].dims) == shape
    else:
        shared = False
    if not shared:
        packed, scale, zero = DefaultWeightOnlyQuantizer(_weight_only_config(block_size)).qbits_block_quant(
            numpy_helper.to_array(inits[table]).T.copy()
        )
        data, scales, zero_points = f"{table}_Q8", f"{table}_Q8_scales", f"{table}_Q8_zero_points"
        graph.initializer.extend(
            [
                numpy_helper.from_array(packed.reshape(shape), data),
                numpy_helper.from_array(scale.reshape(vocab, -1), scales),
                numpy_helper.from_array(zero.reshape(vocab, -1), zero_points),
            ]
        )
    _gather_block_quantized(graph, gather, data, scales, zero_points, shape)
    if not _consumers(graph, table):
        graph.initializer.remove(inits[table])
    return "int8, shared with lm_head" if shared else "int8"


def weight_only_int8(source: Path, target: Path, block_size: int) -> dict[str, Any]:
    """Every MatMul that still has a constant fp32 weight (all of them for dynamic; the ones kept out of
    static activation quantization otherwise, and lm_head) to MatMulNBits with 8-bit blockwise weights,
    and the embedding to 8 bits."""
    import onnx  # heavy: only when quantizing

    config = _weight_only_config(block_size)  # first: it says what to install when a package is missing
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # It logs a line per node at INFO (thousands for an LLM), which buries the step's own log.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    model = onnx.load(source)
    gather = embedding_gather(model.graph)
    lm_head_output = untie_lm_head(model.graph, gather.input[0]) if gather is not None else None
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    model = quantizer.model.model
    gather = embedding_gather(model.graph)
    embedding = (
        quantize_embedding(model.graph, gather, lm_head_output, block_size) if gather else "none found"
    )
    save_onnx(model, target / MODEL_FILE)
    return {
        "weight_only_matmuls": sum(n.op_type == "MatMulNBits" for n in model.graph.node),
        "embedding": embedding,
    }
