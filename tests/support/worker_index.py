"""Index an app the way Azure's Python worker does, inside the worker's own venv; print a JSON report.

Runs under `.venv-worker/bin/python` (Python 3.13 with `azure-functions-runtime` and the app's
locked dependencies), never under the dev venv. It repeats the worker's start-up: load the
binding registry from azure-functions, import `function_app.py` and find its app
(`index_function_app`), then give each function, one at a time, to the worker's own per-function
processing (`process_indexed_function`: `Registry.add_indexed_function`'s validation, the binding
protos, the retry options, the raw bindings sent to the host). A function the worker refuses is
reported with the worker's message; the others with their bindings.

The worker gets its protobuf messages from the host's proxy worker; the stand-ins below carry the
values of `BindingInfo.Direction` and `BindingInfo.DataType` from the Functions host's
`FunctionRpc.proto` (in 0, out 1, inout 2; undefined 0, string 1, binary 2, stream 3) and keep
the fields of the messages the worker builds.

Run: `.venv-worker/bin/python tests/support/worker_index.py <app folder>`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class BindingInfo:
    """`AzureFunctionsRpcMessages.BindingInfo`: its enum values, and the fields it is built with."""

    out = 1
    inout = 2
    undefined = 0
    string = 1
    binary = 2
    stream = 3

    def __init__(self, **fields: Any) -> None:
        self.fields = fields


setattr(BindingInfo, "in", 0)  # `in` is a keyword in Python; the generated proto class has it all the same


class Message:
    """A protobuf message the worker builds (`RpcFunctionMetadata`, `RpcRetryOptions`): its fields."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


PROTOS = SimpleNamespace(BindingInfo=BindingInfo, RpcFunctionMetadata=Message, RpcRetryOptions=Message)


def index(app_dir: Path) -> dict[str, Any]:
    """What the worker makes of the app in `app_dir`: indexed functions with bindings, refused ones with why."""
    os.chdir(app_dir)
    sys.path.insert(0, str(app_dir))
    import azure.functions
    from azure_functions_runtime.bindings.meta import load_binding_registry
    from azure_functions_runtime.functions import Registry
    from azure_functions_runtime.loader import index_function_app, process_indexed_function
    from azure_functions_runtime.version import VERSION

    load_binding_registry()
    functions = index_function_app(str(app_dir / "function_app.py"))
    registry = Registry()
    indexed: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for function in functions:
        name = function.get_function_name()
        try:
            [metadata], _ = process_indexed_function(PROTOS, registry, [function], str(app_dir))
        except Exception as exc:  # the worker's refusal (FunctionLoadError) or anything else it raises
            refused[name] = f"{type(exc).__name__}: {exc}"
            continue
        indexed[name] = {
            "entry_point": metadata.entry_point,
            "bindings": [json.loads(raw) for raw in metadata.raw_bindings],
            "retry": metadata.retry_options is not None,
        }
    return {
        "python": platform.python_version(),
        "azure_functions_runtime": VERSION,
        "azure_functions": azure.functions.__version__,
        "indexed": indexed,
        "refused": refused,
    }


if __name__ == "__main__":
    print(json.dumps(index(Path(sys.argv[1]).resolve())))
