"""The infrastructure matches the code: app settings, queue and table names, secrets, schedules, pipeline.

Pure text checks of infra/*.bicep, azure.yaml and azure-pipelines.yml (no Bicep compiler here); the code side
comes from the app itself (`shared.settings.Settings`, the function registrations, host.json, names modules).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.secrets import VAULT_NAMES
from shared.settings import Settings
from shared.storage import names
from shared.storage.ratelimit import RATE_LIMIT_TABLE

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
FUNCTION_APP_BICEP = MODULES / "functionapp.bicep"
STORAGE_BICEP = MODULES / "storage.bicep"
KEYVAULT_BICEP = MODULES / "keyvault.bicep"

# Settings the code reads that the Azure deployment deliberately leaves to their defaults (or to another setup).
# Each needs a reason; functionapp.bicep lists the same names in its comment block.
OPTIONAL_IN_AZURE: dict[str, str] = {
    "AzureWebJobsStorage": "replaced by the identity-based AzureWebJobsStorage__* settings (checked separately)",
    "FACEBOOK_APP_SECRET_PREVIOUS": "only during a rotation; kept in Key Vault and read through KEY_VAULT_URL",
    "FACEBOOK_PAGE_TOKEN_{page_id}": "a page's own token, kept in Key Vault (facebook-page-token--{page_id})",
    "FACEBOOK_FORMS_INCLUDE": "optional: only these forms (az functionapp config appsettings set)",
    "FACEBOOK_FORMS_EXCLUDE": "optional: every form but these (az functionapp config appsettings set)",
    "FIELD_MAP": "optional: question key → field name, JSON (az functionapp config appsettings set)",
    "GRAPH_TIMEOUT_SECONDS": "tuning knob with a default",
    "DELIVERY_TIMEOUT_SECONDS": "tuning knob with a default",
    "DELIVERY_RETRY_SECONDS": "tuning knob with a default (the Standard Webhooks ladder)",
    "NOTIFY_STUCK_SECONDS": "tuning knob with a default",
    "QUEUE_TIMEOUT_SECONDS": "tuning knob with a default",
    "STORE_TIMEOUT_SECONDS": "tuning knob with a default",
    "SQLITE_PATH": "local SQLite store only; Azure uses STORE_BACKEND=mssql",
    "SQL_CONNECTION_STRING": "local/CI SQL Server; Azure uses SQL_SERVER + SQL_DATABASE with the managed identity",
    "SQL_POOL_SIZE": "tuning knob with a default",
    "WEBHOOK_MAX_BODY_BYTES": "tuning knob with a default",
    "INGEST_MAX_ATTEMPTS": "tuning knob with a default",
    "RETRY_BASE_SECONDS": "tuning knob with a default",
    "RETRY_MAX_SECONDS": "tuning knob with a default",
    "POLL_OVERLAP_SECONDS": "tuning knob with a default",
    "POLL_GRACE_SECONDS": "tuning knob with a default",
    "POLL_REQUEUE_AFTER_SECONDS": "tuning knob with a default",
    "POLL_FIRST_RUN_HOURS": "tuning knob with a default",
    "POLL_MAX_BACKFILL_DAYS": "tuning knob with a default",
    "RECONCILE_WINDOW_HOURS": "tuning knob with a default",
    "RECONCILE_EVERY_MINUTES": "tuning knob with a default",
    "RECONCILE_HTTP_BUDGET_SECONDS": "tuning knob with a default",
    "TOKEN_RECHECK_SECONDS": "tuning knob with a default",
    "PAUSED_RETRY_SECONDS": "tuning knob with a default",
    "FAILED_EVENTS_RETENTION_DAYS": "tuning knob with a default",
    "SECRETS_CACHE_SECONDS": "tuning knob with a default",
    "RATE_LIMIT_PER_MINUTE": "tuning knob with a default",
    "HEALTH_CACHE_SECONDS": "tuning knob with a default",
    "EMAIL_ROUTES": "optional per-form/per-page routing; EMAIL_TO is used otherwise",
    "SMTP_HOST": "EMAIL_SENDER=smtp only; Azure sends through ACS",
    "SMTP_PORT": "EMAIL_SENDER=smtp only; Azure sends through ACS",
    "SMTP_USERNAME": "EMAIL_SENDER=smtp only; Azure sends through ACS",
    "SMTP_PASSWORD": "EMAIL_SENDER=smtp only; Azure sends through ACS",
    "SMTP_STARTTLS": "EMAIL_SENDER=smtp only; Azure sends through ACS",
    "ACS_CONNECTION_STRING": "ACS with a key; Azure uses ACS_ENDPOINT with the managed identity",
    "EMAIL_TIMEOUT_SECONDS": "tuning knob with a default",
    "EMAIL_MAX_LEADS_PER_EMAIL": "tuning knob with a default",
    "NOTIFY_MAX_ATTEMPTS": "tuning knob with a default",
    "NOTIFY_RETRY_BASE_SECONDS": "tuning knob with a default",
    "NOTIFY_RETRY_MAX_SECONDS": "tuning knob with a default",
    "ALERT_DEAD_LETTERS_THRESHOLD": "tuning knob with a default",
    "SILENCE_HOURS": "tuning knob with a default",
    "SILENCE_MIN_EXPECTED": "tuning knob with a default",
}

# Flex Consumption rejects these (runtime and deployment come from functionAppConfig).
FLEX_FORBIDDEN = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "linuxFxVersion",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
)

# Key Vault secrets the Azure deployment cannot run without (the rest are optional or for other senders).
REQUIRED_VAULT_SETTINGS = ("FACEBOOK_APP_SECRET", "FACEBOOK_VERIFY_TOKEN", "FACEBOOK_ACCESS_TOKEN")

IDENTITY_STORAGE_SETTINGS = (
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__blobServiceUri",
)


# --- helpers ---------------------------------------------------------------------------------------------------


def strip_bicep_comments(text: str) -> str:
    """The Bicep source without `//` and `/* */` comments; string literals (also `'''` ones) are kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(text[i:end])
            i = end
        elif text[i] == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def bicep_files() -> list[Path]:
    files = sorted(INFRA.rglob("*.bicep"))
    assert files, f"no .bicep files under {INFRA}"
    return files


def app_settings(source: str) -> dict[str, str]:
    """`name` -> raw `value` expression of each entry of `var appSettings = [ ... ]` in functionapp.bicep."""
    code = strip_bicep_comments(source)
    match = re.search(r"^var appSettings = \[\n(.*?)^\]", code, re.M | re.S)
    assert match, "functionapp.bicep: no `var appSettings = [` block (the test reads the settings from it)"
    block = match.group(1)
    pairs = re.findall(r"name:\s*'([^']+)'\s*\n\s*value:\s*(.+)", block)
    assert pairs, "functionapp.bicep: no `name: '...'` / `value: ...` pairs in appSettings"
    settings: dict[str, str] = {}
    for name, value in pairs:
        assert name not in settings, f"functionapp.bicep: app setting {name} is set twice"
        settings[name] = value.strip()
    return settings


@pytest.fixture(scope="module")
def settings_in_bicep() -> dict[str, str]:
    return app_settings(FUNCTION_APP_BICEP.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def registrations() -> list[Any]:
    """The app's functions, from a fresh import (`get_functions()` may only run once per app)."""
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    return list(module.app.get_functions())


def setting_aliases() -> set[str]:
    return {field.alias or name for name, field in Settings.model_fields.items()}


# --- 1. every setting the code reads is set in Azure -----------------------------------------------------------


def test_every_setting_the_code_reads_is_an_app_setting_in_functionapp_bicep(settings_in_bicep):
    missing = sorted(setting_aliases() - set(OPTIONAL_IN_AZURE) - set(settings_in_bicep))
    assert not missing, (
        f"settings read by shared/settings.py but not set in infra/modules/functionapp.bicep: {missing} "
        "(set them there, or add them to OPTIONAL_IN_AZURE with a reason)"
    )


def test_optional_list_names_only_real_settings():
    stale = sorted(set(OPTIONAL_IN_AZURE) - setting_aliases())
    assert not stale, f"OPTIONAL_IN_AZURE names settings shared/settings.py no longer reads: {stale}"


def test_host_storage_is_identity_based(settings_in_bicep):
    assert "AzureWebJobsStorage" not in settings_in_bicep, "AzureWebJobsStorage (a connection string) must not be set"
    missing = [name for name in IDENTITY_STORAGE_SETTINGS if name not in settings_in_bicep]
    assert not missing, f"functionapp.bicep lacks identity-based host storage settings: {missing}"
    assert settings_in_bicep["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert (
        "AzureWebJobsStorage__accountName" in settings_in_bicep
        or "AzureWebJobsStorage__queueServiceUri" in settings_in_bicep
    ), "functionapp.bicep: neither AzureWebJobsStorage__accountName nor __queueServiceUri is set"


def test_every_binding_connection_is_configured(registrations, settings_in_bicep):
    for function in registrations:
        for binding in function.get_bindings():
            connection = getattr(binding, "connection", None)
            if not connection:
                continue
            covered = connection in settings_in_bicep or any(
                name.startswith(f"{connection}__") for name in settings_in_bicep
            )
            assert covered, (
                f"{function.get_function_name()}: binding connection {connection!r} has no app setting "
                f"{connection} or {connection}__* in functionapp.bicep"
            )


# --- 2. nothing Flex Consumption rejects --------------------------------------------------------------------


@pytest.mark.parametrize("forbidden", FLEX_FORBIDDEN)
def test_no_flex_forbidden_setting_in_bicep(forbidden):
    for path in bicep_files():
        code = strip_bicep_comments(path.read_text(encoding="utf-8"))
        assert forbidden not in code, f"{path.relative_to(ROOT)} sets {forbidden}, which Flex Consumption rejects"


def test_function_app_is_flex_consumption_python_313_and_the_pipeline_builds_on_it():
    code = strip_bicep_comments(FUNCTION_APP_BICEP.read_text(encoding="utf-8"))
    for needle in ("name: 'FC1'", "tier: 'FlexConsumption'", "reserved: true", "kind: 'functionapp,linux'"):
        assert needle in code, f"functionapp.bicep lacks {needle}"
    assert re.search(r"runtime:\s*\{\s*name:\s*'python'\s*version:\s*'3\.13'", code), (
        "functionapp.bicep: functionAppConfig.runtime is not python 3.13"
    )
    pipeline = (ROOT / "azure-pipelines.yml").read_text(encoding="utf-8")
    assert re.search(r"pythonVersion:\s*'3\.13'", pipeline), "azure-pipelines.yml builds on another Python"
    assert "azure-functions-runtime==" in (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert "keyVaultReferenceIdentity:" in code, "functionapp.bicep: keyVaultReferenceIdentity is not set"
    assert "type: 'UserAssignedIdentity'" in code, "functionapp.bicep: deployment storage does not use the identity"


# --- 3. queue and table names agree everywhere -------------------------------------------------------------


def test_queue_and_table_names_match_the_code_host_json_and_storage_bicep(registrations):
    queues = {
        names.LEADS_QUEUE,
        names.NOTIFICATIONS_QUEUE,
        names.poison_queue(names.LEADS_QUEUE),
        names.poison_queue(names.NOTIFICATIONS_QUEUE),
        names.DELIVERIES_QUEUE,
        names.poison_queue(names.DELIVERIES_QUEUE),
    }
    tables = {names.COUNTERS_TABLE, names.STATE_TABLE, RATE_LIMIT_TABLE}

    triggered = {
        binding.queue_name
        for function in registrations
        for binding in function.get_bindings()
        if "queue" in str(binding.type).lower() and getattr(binding, "queue_name", None)
    }
    assert triggered, "no queue bindings registered by function_app"
    unknown = sorted(triggered - queues)
    assert not unknown, f"function_app binds queues that shared/storage/names.py does not name: {unknown}"
    assert {names.LEADS_QUEUE, names.NOTIFICATIONS_QUEUE} <= triggered, (
        f"the queue triggers ({sorted(triggered)}) do not cover {names.LEADS_QUEUE} and {names.NOTIFICATIONS_QUEUE}"
    )

    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    queue_options = host.get("extensions", {}).get("queues")
    assert isinstance(queue_options, dict), "host.json has no extensions.queues section"
    assert queue_options.get("messageEncoding") == "base64", "host.json extensions.queues.messageEncoding is not base64"

    code = strip_bicep_comments(STORAGE_BICEP.read_text(encoding="utf-8"))
    declared = set(re.findall(r"'([a-z0-9-]+)'", code))
    for queue in sorted(queues):
        assert queue in declared, f"storage.bicep does not create queue {queue!r}"
    for table in sorted(tables):
        assert table in declared, f"storage.bicep does not create table {table!r}"
    assert "allowSharedKeyAccess: false" in code, "storage.bicep: allowSharedKeyAccess is not false"


# --- 4. every parameter is described -----------------------------------------------------------------------


def undescribed_params(source: str) -> list[str]:
    """Names of `param`s without a `@description(` among the decorators directly above them."""
    missing: list[str] = []
    decorators: list[str] = []
    depth = 0
    for raw in source.splitlines():
        line = raw.strip()
        if depth > 0:  # inside a multi-line decorator such as @allowed([ ... ])
            decorators[-1] += " " + line
            depth += line.count("(") - line.count(")")
            continue
        if line.startswith("@"):
            decorators.append(line)
            depth = line.count("(") - line.count(")")
            continue
        if line.startswith("//"):
            continue
        match = re.match(r"param\s+(\w+)", line)
        if match and not any(d.startswith(("@description(", "@sys.description(")) for d in decorators):
            missing.append(match.group(1))
        decorators = []
    return missing


def test_every_bicep_param_has_a_description():
    problems = {
        str(path.relative_to(ROOT)): names_
        for path in bicep_files()
        if (names_ := undescribed_params(path.read_text(encoding="utf-8")))
    }
    assert not problems, f"params without @description: {problems}"


def test_the_description_check_sees_a_missing_one():
    source = "@description('ok')\n@minValue(1)\nparam a int\n\n@secure()\nparam b string\nparam c string\n"
    assert undescribed_params(source) == ["b", "c"]


def test_secrets_are_secure_params():
    code = (INFRA / "main.bicep").read_text(encoding="utf-8") + KEYVAULT_BICEP.read_text(encoding="utf-8")
    for param in ("facebookAppSecret", "facebookVerifyToken", "facebookAccessToken", "facebookAppSecretPrevious"):
        assert re.search(rf"@secure\(\)\s*\n\s*param {param} string", code), f"param {param} is not @secure()"


# --- 5. Key Vault secrets ------------------------------------------------------------------------------------


def test_required_key_vault_secrets_are_created_and_referenced(settings_in_bicep):
    vault = strip_bicep_comments(KEYVAULT_BICEP.read_text(encoding="utf-8"))
    for setting in REQUIRED_VAULT_SETTINGS:
        secret = VAULT_NAMES[setting]
        assert f"name: '{secret}'" in vault, f"keyvault.bicep does not create secret {secret!r} ({setting})"
        value = settings_in_bicep.get(setting)
        assert value is not None, f"functionapp.bicep does not set {setting}"
        assert "@Microsoft.KeyVault(" in value and f"secrets/{secret}/" in value, (
            f"functionapp.bicep: {setting} is not a Key Vault reference to secret {secret!r}: {value}"
        )
    assert "enableRbacAuthorization: true" in vault, "keyvault.bicep: RBAC authorization is off"
    assert "enablePurgeProtection: true" in vault, "keyvault.bicep: purge protection is off"


def test_every_vault_secret_name_created_is_one_the_code_reads():
    vault = strip_bicep_comments(KEYVAULT_BICEP.read_text(encoding="utf-8"))
    created = set(re.findall(r"vaults/secrets@[^']+'\s*=.*?\n\s*parent: vault\s*\n\s*name: '([^']+)'", vault))
    assert created, "keyvault.bicep creates no secrets"
    unknown = sorted(created - set(VAULT_NAMES.values()))
    assert not unknown, f"keyvault.bicep creates secrets shared/secrets.py never reads: {unknown}"


# --- 6. azd and the pipeline ---------------------------------------------------------------------------------


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_azure_yaml_names_the_bicep_infra_and_a_python_function_service():
    document = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    infra = document.get("infra") or {}
    assert infra.get("path") == "infra", f"azure.yaml infra.path is {infra.get('path')!r}, not 'infra'"
    assert infra.get("provider", "bicep") == "bicep", "azure.yaml infra.provider is not bicep"
    services = document.get("services") or {}
    functions = [
        name
        for name, service in services.items()
        if service.get("language") in ("python", "py") and service.get("host") == "function"
    ]
    assert functions, f"azure.yaml has no python service with host: function (services: {sorted(services)})"
    hook = (document.get("hooks") or {}).get("postprovision") or {}
    assert "grant-sql-identity.sh" in json.dumps(hook), "azure.yaml: postprovision does not grant the SQL identity"
    assert (INFRA / "scripts" / "grant-sql-identity.sh").is_file(), "infra/scripts/grant-sql-identity.sh is missing"
    assert (INFRA / "scripts" / "grant-sql-identity.sql").is_file(), "infra/scripts/grant-sql-identity.sql is missing"


def test_azure_pipelines_tests_builds_and_deploys_to_flex():
    document = yaml.safe_load((ROOT / "azure-pipelines.yml").read_text(encoding="utf-8"))
    stages = [stage.get("stage") for stage in document.get("stages", [])]
    for stage in ("Test", "Build", "Deploy"):
        assert stage in stages, f"azure-pipelines.yml has no stage {stage!r} (stages: {stages})"

    tasks = [node for node in _walk(document) if "task" in node]
    by_name = {task["task"]: task for task in tasks}
    deploy = by_name.get("AzureFunctionApp@2")
    assert deploy is not None, "azure-pipelines.yml does not use AzureFunctionApp@2"
    inputs = deploy.get("inputs", {})
    assert inputs.get("isFlexConsumption") is True, "AzureFunctionApp@2 lacks isFlexConsumption: true"
    assert inputs.get("appType") == "functionAppLinux", "AzureFunctionApp@2 appType is not functionAppLinux"
    assert "PublishTestResults@2" in by_name, "azure-pipelines.yml does not use PublishTestResults@2"
    assert "AzureCLI@2" in by_name, "azure-pipelines.yml does not deploy the Bicep with AzureCLI@2"

    envs = [node["env"] for node in _walk(document) if isinstance(node.get("env"), dict)]
    assert any("TEST_MSSQL_CONNECTION_STRING" in env for env in envs), (
        "azure-pipelines.yml never sets TEST_MSSQL_CONNECTION_STRING (the Azure SQL contract tests would skip)"
    )


# --- 7. timer schedules read from app settings are set --------------------------------------------------------


def test_timer_schedule_settings_are_set(registrations, settings_in_bicep):
    schedules = [
        (function.get_function_name(), getattr(function.get_trigger(), "schedule", None))
        for function in registrations
        if "timer" in str(function.get_trigger().type).lower()
    ]
    assert schedules, "no timer triggers registered by function_app"
    referenced = {
        name: match.group(1)
        for name, schedule in schedules
        if schedule and (match := re.fullmatch(r"%(\w+)%", schedule))
    }
    missing = {name: setting for name, setting in referenced.items() if setting not in settings_in_bicep}
    assert not missing, f"timer schedules read from app settings that functionapp.bicep does not set: {missing}"
