"""Models run in the step's own process: PyTorch (a base model, with a LoRA adapter or full weights) and
exported ONNX directories (ONNX Runtime through optimum, the same loader the export checks use).

Both answer through `generate` with a streamer in a second thread (transformers' TextIteratorStreamer),
so the first generated token is seen when it is produced, not when the whole answer is done. Heavy
imports load inside the functions: the step imports this module, the DAG processor never does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.compare.timing import Clock
from tasks.config.catalog import CatalogEntry
from tasks.contracts.compare import Answer, CompareModel, ComparePrompt, GenerationSettings
from tasks.exporting.checks import load_format
from tasks.runtime.errors import StepError
from tasks.scoring.generation import decoding, render_prompts
from tasks.storage import store
from tasks.training.base_models import load_model, load_tokenizer


@dataclass
class LocalModel:
    """A loaded model and its tokenizer, on `device`; `answer` asks it one prompt."""

    model: Any
    tokenizer: Any
    device: str

    def answer(self, prompt: ComparePrompt, settings: GenerationSettings, temperature: float) -> Answer:
        return answer(self, prompt, settings, temperature)

    def warm_up(self) -> LocalModel:
        """One token generated and thrown away, so the first prompt's TTFT is not the runtime's one-time
        start-up (kernels chosen, memory first touched, ONNX Runtime's first run): counted in load_s."""
        import torch

        inputs = self.tokenizer("Hello", return_tensors="pt", return_token_type_ids=False).to(self.device)
        with torch.inference_mode():
            self.model.generate(
                **inputs, max_new_tokens=1, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
            )
        return self


def _entry_with_weights(model: CompareModel) -> CatalogEntry:
    """The base model's entry, its weights replaced by a full fine-tune's when there is one."""
    assert model.entry is not None
    if not model.model_uri:
        return model.entry
    replaced = {"source": {"path": model.model_uri}, "kind": "uri"}
    return CatalogEntry.model_validate({**model.entry.model_dump(), **replaced})


def load_pytorch(model: CompareModel, store_root: str) -> LocalModel:
    import torch

    entry = _entry_with_weights(model)
    adapter = str(store.fetch(model.adapter_uri)) if model.adapter_uri else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    loaded = load_model(entry, store_root, adapter_dir=adapter, dtype=dtype).to(device)
    return LocalModel(loaded, load_tokenizer(entry, store_root, padding_side="left"), device)


def load_onnx(model: CompareModel) -> LocalModel:
    from transformers import AutoTokenizer

    assert model.onnx_uri is not None
    directory: Path = store.fetch(model.onnx_uri)
    if not (directory / "model.onnx").exists():
        raise StepError(f"{model.onnx_uri} holds no model.onnx: give an exported ONNX directory")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The INT8 graph is built for CPU (tasks.exporting.checks.format_device).
    return LocalModel(load_format(directory, "onnx-int8"), tokenizer, "cpu")


def load(model: CompareModel, store_root: str) -> LocalModel:
    loaded = load_onnx(model) if model.kind == "onnx" else load_pytorch(model, store_root)
    return loaded.warm_up()


def _streamer(tokenizer: Any, clock: Clock) -> Any:
    """A TextIteratorStreamer that also stamps the first generated token and counts them all."""
    from transformers import TextIteratorStreamer

    class Timed(TextIteratorStreamer):
        generated = 0

        def put(self, value: Any) -> None:
            if not self.next_tokens_are_prompt:  # the first call carries the prompt, not new tokens
                clock.token()
                self.generated += int(value.numel())
            super().put(value)

    return Timed(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)


def answer(
    loaded: LocalModel, prompt: ComparePrompt, settings: GenerationSettings, temperature: float
) -> Answer:
    """One streamed answer to `prompt`, timed."""
    import torch

    tokenizer = loaded.tokenizer
    text = render_prompts(tokenizer, [prompt.messages])[0]
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False, return_token_type_ids=False)
    inputs = inputs.to(loaded.device)
    sampling = decoding(temperature, settings.top_p)
    if sampling.get("do_sample"):
        torch.manual_seed(settings.seed)  # every model draws the same random numbers
    failure: list[BaseException] = []
    clock = Clock()
    streamer = _streamer(tokenizer, clock)

    def generate() -> None:
        try:
            with torch.inference_mode():
                loaded.model.generate(
                    **inputs,
                    max_new_tokens=settings.max_new_tokens,
                    streamer=streamer,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    **sampling,
                )
        except BaseException as error:  # reported by the caller's thread, which is waiting on the streamer
            failure.append(error)
            streamer.end()

    worker = threading.Thread(target=generate, name="compare-generate", daemon=True)
    worker.start()
    pieces = list(streamer)
    worker.join()
    clock.stop()
    if failure:
        raise failure[0]
    return clock.answer(prompt.id, "".join(pieces), int(inputs["input_ids"].shape[1]), streamer.generated)
