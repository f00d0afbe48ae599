"""Every Bicep file parses, and the errors a compiler would raise across modules are caught here.

No Bicep compiler is published on the registries this project can reach (PyPI, npm, Debian), so the
pipeline's first stage compiles with `az bicep build`; here every `.bicep` file is parsed by two independent
parsers from PyPI: tree-sitter-bicep (a concrete syntax tree with node types and operator precedence) and
pycep-parser (a Lark grammar; the parser checkov uses). On tree-sitter's tree the test then checks what
crosses files and makes `az bicep build` fail:

- every argument a module call passes is a parameter of that module (BCP037), and every parameter without
  a default is passed (BCP035);
- every value that can reach a parameter with `@allowed` is in the list (BCP036, e.g. Azure/bicep#11889: a
  ternary whose branch passes a parameter through carries that parameter's whole union of literals);
- every default value is in its own `@allowed` list, and `main.parameters.json` names only real parameters.

It also keeps numbers that must agree across Bicep, host.json and the app in step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

Literal = str | int | bool


# --- parsers ---------------------------------------------------------------------------------------------------


def tree_sitter_parser() -> Any:
    ts = pytest.importorskip("tree_sitter", reason="tree-sitter is not installed (requirements-dev.txt)")
    bicep = pytest.importorskip("tree_sitter_bicep", reason="tree-sitter-bicep is not installed (requirements-dev.txt)")
    return ts.Parser(ts.Language(bicep.language()))


def syntax_errors(root: Any) -> list[str]:
    """Line:column and text of every ERROR node and every token the parser had to invent (MISSING)."""
    found: list[str] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            line, column = node.start_point
            kind = f"missing {node.type}" if node.is_missing else "unexpected"
            found.append(f"{line + 1}:{column + 1} {kind} {node.text.decode(errors='replace')[:60]!r}")
        elif node.has_error:
            stack.extend(node.children)
    return sorted(found)


# --- a small model of one Bicep file -----------------------------------------------------------------------------


@dataclass
class Param:
    name: str
    allowed: frozenset[Literal] | None
    default: Any  # the default's node, or None


@dataclass
class ModuleCall:
    symbol: str
    path: Path
    args: dict[str, Any]  # argument name -> value node
    line: int


@dataclass
class BicepFile:
    path: Path
    params: dict[str, Param] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    modules: list[ModuleCall] = field(default_factory=list)


def text(node: Any) -> str:
    return str(node.text.decode())


def decorators(node: Any) -> list[Any]:
    previous = node.prev_named_sibling
    if previous is None or previous.type != "decorators":
        return []
    return [child for child in previous.named_children if child.type == "decorator"]


def allowed_values(node: Any) -> frozenset[Literal] | None:
    for decorator in decorators(node):
        call = decorator.named_children[0]
        name = call.named_children[0]
        if call.type == "call_expression" and text(name).split(".")[-1] == "allowed":
            arguments = call.named_children[1].named_children
            values = [literal(item) for item in arguments[0].named_children]
            assert all(value is not None for value in values), f"non-literal @allowed value near {text(call)}"
            return frozenset(value for value in values if value is not None)
    return None


def literal(node: Any) -> Literal | None:
    """The value of a literal string, number or boolean node; None for anything computed."""
    if node.type == "string":
        if any(child.type == "interpolation" for child in node.named_children):
            return None
        return "".join(text(child) for child in node.named_children if child.type == "string_content")
    if node.type == "number":
        return int(text(node))
    if node.type == "unary_expression" and text(node).startswith("-") and node.named_children[0].type == "number":
        return -int(text(node.named_children[0]))
    if node.type == "boolean":
        return text(node) == "true"
    return None


def object_properties(node: Any) -> Iterator[tuple[str, Any]]:
    for prop in node.named_children:
        if prop.type == "object_property":
            key, value = prop.named_children[0], prop.named_children[-1]
            yield text(key).strip("'"), value


def module_body(declaration: Any) -> Any:
    body = declaration.named_children[-1]
    if body.type == "if_statement":  # module x '...' = if (cond) { ... }
        body = body.named_children[-1]
    if body.type == "for_statement":  # module x '...' = [for ...: { ... }]
        body = body.named_children[-1]
    return body


def load(path: Path, parser: Any) -> BicepFile:
    tree = parser.parse(path.read_bytes())
    errors = syntax_errors(tree.root_node)
    assert not errors, f"{path}: {errors}"
    model = BicepFile(path)
    for node in tree.root_node.named_children:
        if node.type == "parameter_declaration":
            name = text(node.named_children[0])
            default = node.named_children[2] if len(node.named_children) > 2 else None
            model.params[name] = Param(name, allowed_values(node), default)
        elif node.type == "variable_declaration":
            model.variables[text(node.named_children[0])] = node.named_children[-1]
        elif node.type == "module_declaration":
            symbol = text(node.named_children[0])
            target = literal(node.named_children[1])
            if not isinstance(target, str) or ":" in target:  # a registry module (br:...) is not checked here
                continue
            properties = dict(object_properties(module_body(node)))
            args = dict(object_properties(properties["params"])) if "params" in properties else {}
            model.modules.append(ModuleCall(symbol, (path.parent / target).resolve(), args, node.start_point[0] + 1))
    return model


def possible_values(node: Any, model: BicepFile, seen: frozenset[str] = frozenset()) -> frozenset[Literal] | None:
    """Every literal an expression can evaluate to, or None when it is not a finite set of literals.

    A parameter stands for its @allowed list; a variable for its value; a ternary for both branches.
    """
    value = literal(node)
    if value is not None:
        return frozenset({value})
    if node.type == "parenthesized_expression":
        return possible_values(node.named_children[0], model, seen)
    if node.type == "ternary_expression":
        _condition, when_true, when_false = node.named_children
        first = possible_values(when_true, model, seen)
        second = possible_values(when_false, model, seen)
        return None if first is None or second is None else first | second
    if node.type == "identifier":
        name = text(node)
        if name in seen:
            return None
        if name in model.params:
            return model.params[name].allowed
        if name in model.variables:
            return possible_values(model.variables[name], model, seen | {name})
    return None


def problems_in(models: dict[Path, BicepFile]) -> list[str]:
    """What `az bicep build` would refuse across files: unknown or missing module arguments, values @allowed refuses."""
    found: list[str] = []
    for model in models.values():
        where = model.path.name
        for param in model.params.values():
            if param.allowed is not None and param.default is not None:
                values = possible_values(param.default, model)
                if values is not None and not values <= param.allowed:
                    found.append(f"{where}: default of {param.name} {sorted(values - param.allowed)} is not @allowed")
        for call in model.modules:
            target = models.get(call.path)
            if target is None:
                found.append(f"{where}:{call.line}: module {call.symbol} points at a missing file {call.path}")
                continue
            for name in sorted(set(call.args) - set(target.params)):
                found.append(f"{where}:{call.line}: module {call.symbol} passes {name}, which {target.path.name} lacks")
            for name in sorted(set(target.params) - set(call.args)):
                if target.params[name].default is None:
                    found.append(f"{where}:{call.line}: module {call.symbol} does not pass required {name}")
            for name, value in call.args.items():
                param = target.params.get(name)
                if param is None or param.allowed is None:
                    continue
                values = possible_values(value, model)
                if values is not None and not values <= param.allowed:
                    refused = sorted(map(str, values - param.allowed))
                    found.append(
                        f"{where}:{call.line}: module {call.symbol}: {name} can be {refused}, "
                        f"which {target.path.name} does not allow ({sorted(map(str, param.allowed))})"
                    )
    return found


def load_all(paths: list[Path]) -> dict[Path, BicepFile]:
    parser = tree_sitter_parser()
    return {path.resolve(): load(path, parser) for path in paths}


@pytest.fixture(scope="module")
def models() -> dict[Path, BicepFile]:
    return load_all(BICEP_FILES)


# --- 1. every file parses ----------------------------------------------------------------------------------------


def test_there_are_bicep_files_to_check():
    assert INFRA / "main.bicep" in BICEP_FILES and len(BICEP_FILES) >= 2


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: str(path.relative_to(INFRA)))
def test_bicep_file_parses_with_tree_sitter(path):
    tree = tree_sitter_parser().parse(path.read_bytes())
    assert not syntax_errors(tree.root_node), f"{path.relative_to(ROOT)}: {syntax_errors(tree.root_node)}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: str(path.relative_to(INFRA)))
def test_bicep_file_parses_with_pycep(path):
    pycep = pytest.importorskip("pycep", reason="pycep-parser is not installed (requirements-dev.txt)")
    pycep.BicepParser().parse(file_path=path)  # raises with line and column on a syntax error


def test_the_parse_check_sees_a_syntax_error():
    tree = tree_sitter_parser().parse(b"param a string\nvar b = {\n  c: [1, 2\n}\n")
    assert syntax_errors(tree.root_node)


# --- 2. what crosses modules ------------------------------------------------------------------------------------


def test_module_calls_pass_known_required_and_allowed_values(models):
    problems = problems_in(models)
    assert not problems, "\n".join(problems)


def test_every_module_call_is_checked(models):
    called = {call.path for model in models.values() for call in model.modules}
    assert called == {path.resolve() for path in BICEP_FILES if path.parent.name == "modules"}, (
        "a module is not called from main.bicep, or a call was not understood by this test"
    )


def write(directory: Path, files: dict[str, str]) -> list[Path]:
    paths = []
    for name, source in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
        paths.append(path)
    return paths


SQL_MODULE = """@description('kind')
@allowed([
  'User'
  'Group'
  'Application'
])
param adminPrincipalType string

@description('name')
param name string
"""

MAIN_TEMPLATE = """@allowed([
  'User'
  'Group'
  'ServicePrincipal'
  'Application'
])
param t string = 'User'

var sqlType = {expression}

module sql 'modules/sql.bicep' = {{
  name: 'sql'
  params: {{
    adminPrincipalType: sqlType
    name: 'x'
  }}
}}
"""


def test_allowed_check_refuses_a_ternary_that_passes_the_parameter_through(tmp_path):
    main = MAIN_TEMPLATE.format(expression="t == 'ServicePrincipal' ? 'Application' : t")
    paths = write(tmp_path, {"main.bicep": main, "modules/sql.bicep": SQL_MODULE})
    problems = problems_in(load_all(paths))
    assert len(problems) == 1 and "ServicePrincipal" in problems[0], problems


def test_allowed_check_accepts_a_ternary_of_literals(tmp_path):
    main = MAIN_TEMPLATE.format(expression="t == 'User' ? 'User' : t == 'Group' ? 'Group' : 'Application'")
    paths = write(tmp_path, {"main.bicep": main, "modules/sql.bicep": SQL_MODULE})
    assert problems_in(load_all(paths)) == []


def test_module_check_sees_unknown_and_missing_arguments(tmp_path):
    main = MAIN_TEMPLATE.format(expression="'User'").replace("    name: 'x'\n", "    nmae: 'x'\n")
    paths = write(tmp_path, {"main.bicep": main, "modules/sql.bicep": SQL_MODULE})
    problems = problems_in(load_all(paths))
    assert any("passes nmae" in problem for problem in problems), problems
    assert any("required name" in problem for problem in problems), problems


# --- 3. azd parameters ------------------------------------------------------------------------------------------


def test_main_parameters_json_names_only_parameters_of_main_bicep(models):
    main = models[(INFRA / "main.bicep").resolve()]
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    unknown = sorted(set(given) - set(main.params))
    assert not unknown, f"main.parameters.json passes parameters main.bicep does not declare: {unknown}"
    required = sorted(name for name, param in main.params.items() if param.default is None)
    missing = [name for name in required if name not in given]
    assert not missing, f"main.parameters.json does not pass required parameters: {missing}"


def test_azd_defaults_in_main_parameters_json_are_allowed(models):
    main = models[(INFRA / "main.bicep").resolve()]
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    for name, entry in given.items():
        allowed = main.params[name].allowed
        match = re.fullmatch(r"\$\{\w+=(.*)\}", str(entry["value"]))
        if allowed is None or match is None:
            continue
        default = match.group(1)
        assert default in {str(value) for value in allowed}, f"main.parameters.json: {name} defaults to {default!r}"


def test_location_is_one_of_the_flex_consumption_regions_and_azd_asks_for_it():
    source = (INFRA / "main.bicep").read_text(encoding="utf-8")
    declaration = source[: source.index("param location string")]
    block = declaration[declaration.rindex("@allowed([") :]
    regions = re.findall(r"'([a-z0-9]+)'", block)
    assert {"eastus", "westeurope", "swedencentral"} <= set(regions), regions
    assert "eastus2euap" not in regions, "a canary region is not for users"
    assert "type: 'location'" in block, "location lacks @metadata({azd: {type: 'location'}})"


# --- 4. numbers that must agree across files -------------------------------------------------------------------


def host_json() -> dict[str, Any]:
    return dict(json.loads((ROOT / "host.json").read_text(encoding="utf-8")))


def test_worker_threads_cover_the_queue_batch_host_json_hands_one_instance():
    queues = host_json()["extensions"]["queues"]
    per_instance = queues["batchSize"] + queues["newBatchThreshold"]
    source = (INFRA / "modules" / "functionapp.bicep").read_text(encoding="utf-8")
    declared = re.search(r"var queueConcurrencyPerInstance = (\d+)", source)
    assert declared, "functionapp.bicep has no queueConcurrencyPerInstance"
    assert int(declared.group(1)) == per_instance, (
        f"functionapp.bicep queueConcurrencyPerInstance is {declared.group(1)}, host.json batchSize + "
        f"newBatchThreshold is {per_instance}"
    )
    assert "max(httpPerInstanceConcurrency, queueConcurrencyPerInstance)" in source
    assert re.search(r"name: 'PYTHON_THREADPOOL_THREAD_COUNT'\s*\n\s*value: string\(workerThreads\)", source)


def test_alert_rules_count_what_sampling_keeps_and_fire_on_a_row():
    source = (INFRA / "modules" / "alerts.bicep").read_text(encoding="utf-8")
    queries = re.findall(r"query: '(.*)'", source)
    assert len(queries) == 3, queries
    for query in queries:
        assert re.search(r"\| summarize \w+ = sum\(itemCount\) \| where \w+ [<>]", query), query
    rules = re.findall(r"timeAggregation: '(\w+)'\s*\n\s*operator: '(\w+)'\s*\n\s*threshold: (\S+)", source)
    assert rules == [("Count", "GreaterThan", "0")] * 3, rules


def test_traces_the_alerts_count_are_not_sampled():
    excluded = host_json()["logging"]["applicationInsights"]["samplingSettings"].get("excludedTypes", "")
    assert {"Request", "Exception", "Trace"} <= set(excluded.split(";")), excluded


# --- 5. the pipeline compiles the Bicep first -------------------------------------------------------------------


def test_pipeline_first_stage_builds_and_lints_the_bicep_before_any_test():
    document = yaml.safe_load((ROOT / "azure-pipelines.yml").read_text(encoding="utf-8"))
    stages = document["stages"]
    first = stages[0]
    scripts = "\n".join(
        step.get("script", "")
        for job in first.get("jobs", [])
        for step in job.get("steps", [])
        if isinstance(step, dict)
    )
    assert "az bicep build --file infra/main.bicep" in scripts, scripts
    assert "az bicep lint --file infra/main.bicep" in scripts, scripts
    assert "pytest" not in scripts and "make test" not in scripts
    test_stage = next(stage for stage in stages if stage["stage"] == "Test")
    assert test_stage.get("dependsOn") == first["stage"], "the Test stage does not wait for the Bicep check"
