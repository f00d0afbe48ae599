"""The deployment scripts azd runs as hooks fail loudly, and say why, when their tools are missing.

`grant-sql-identity.sh` (postprovision) creates the function identity's database user; without the Azure CLI
signed in on azd's subscription, or without go-sqlcmd, it must stop `azd up` with the list of what is missing
instead of exiting 0 with no user created. The scripts run under `sh` with a PATH that holds only a few basic
tools and, per test, fake `az` / `sqlcmd` programs that answer like the real ones.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRANT = ROOT / "infra" / "scripts" / "grant-sql-identity.sh"
WAIT = ROOT / "infra" / "scripts" / "wait-for-role-propagation.sh"
BASIC_TOOLS = ("dirname", "grep", "tr", "cat", "date", "sleep", "sed")

OUTPUTS = {
    "SQL_SERVER_FQDN": "sql-test.database.windows.net",
    "SQL_SERVER_NAME": "sql-test",
    "SQL_DATABASE_NAME": "leads",
    "IDENTITY_NAME": "id-test",
    "IDENTITY_PRINCIPAL_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_RESOURCE_GROUP": "rg-test",
    "AZURE_SUBSCRIPTION_ID": "sub-azd",
}

FAKE_AZ_SIGNED_OUT = "#!/bin/sh\necho 'Please run az login to setup account.' >&2\nexit 1\n"
FAKE_AZ_ON = '#!/bin/sh\necho "$*" >> "$CALLS"\ncase "$*" in \'account show\'*) echo {sub};; esac\nexit 0\n'
FAKE_GO_SQLCMD = (
    "#!/bin/sh\n"
    "case \"$*\" in *--help*) echo '      --authentication-method string'; exit 0;; esac\n"
    'echo "sqlcmd $*" >> "$CALLS"\nexit 0\n'
)
FAKE_ODBC_SQLCMD = (
    "#!/bin/sh\necho 'usage: sqlcmd [-U login id] [-P password] [-G use Azure Active Directory]'\nexit 0\n"
)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH directory with only the basic tools the scripts use: no az, no sqlcmd, no azd, no curl."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in BASIC_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed on this machine"
        (directory / tool).symlink_to(found)
    return directory


def fake(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(script, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run(script: Path, bin_dir: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shell = shutil.which("sh")
    assert shell, "sh is not installed"
    environment = {"PATH": str(bin_dir), "HOME": str(tmp_path), "CALLS": str(tmp_path / "calls"), **env}
    return subprocess.run(
        [shell, str(script)], env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def calls(tmp_path: Path) -> str:
    path = tmp_path / "calls"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_grant_without_az_or_sqlcmd_fails_and_names_both(bin_dir, tmp_path):
    result = run(GRANT, bin_dir, tmp_path, **OUTPUTS)

    assert result.returncode != 0, result.stdout + result.stderr
    assert "was NOT created" in result.stderr
    assert "Azure CLI (az) not found" in result.stderr
    assert "go-sqlcmd not found" in result.stderr
    assert "curl not found" in result.stderr


def test_grant_with_az_signed_out_fails_and_says_az_login(bin_dir, tmp_path):
    fake(bin_dir, "az", FAKE_AZ_SIGNED_OUT)
    fake(bin_dir, "sqlcmd", FAKE_GO_SQLCMD)

    result = run(GRANT, bin_dir, tmp_path, SQL_ADD_CLIENT_IP="false", **OUTPUTS)

    assert result.returncode != 0
    assert "not signed in" in result.stderr and "az login" in result.stderr
    assert "sqlcmd" not in calls(tmp_path), "sqlcmd ran although az is signed out"


def test_grant_on_another_subscription_than_azd_fails_and_says_which(bin_dir, tmp_path):
    fake(bin_dir, "az", FAKE_AZ_ON.format(sub="sub-other"))
    fake(bin_dir, "sqlcmd", FAKE_GO_SQLCMD)

    result = run(GRANT, bin_dir, tmp_path, SQL_ADD_CLIENT_IP="false", **OUTPUTS)

    assert result.returncode != 0
    assert "az account set --subscription sub-azd" in result.stderr
    assert "sub-other" in result.stderr


def test_grant_with_the_legacy_odbc_sqlcmd_fails_and_asks_for_go_sqlcmd(bin_dir, tmp_path):
    fake(bin_dir, "az", FAKE_AZ_ON.format(sub="sub-azd"))
    fake(bin_dir, "sqlcmd", FAKE_ODBC_SQLCMD)

    result = run(GRANT, bin_dir, tmp_path, SQL_ADD_CLIENT_IP="false", **OUTPUTS)

    assert result.returncode != 0
    assert "legacy ODBC sqlcmd" in result.stderr


def test_grant_without_deployment_outputs_fails_and_names_them(bin_dir, tmp_path):
    result = run(GRANT, bin_dir, tmp_path)

    assert result.returncode != 0
    assert "SQL_SERVER_FQDN" in result.stderr and "IDENTITY_PRINCIPAL_ID" in result.stderr


def test_grant_with_every_prerequisite_runs_the_sql_as_the_entra_sign_in(bin_dir, tmp_path):
    fake(bin_dir, "az", FAKE_AZ_ON.format(sub="sub-azd"))
    fake(bin_dir, "sqlcmd", FAKE_GO_SQLCMD)

    result = run(GRANT, bin_dir, tmp_path, SQL_ADD_CLIENT_IP="false", **OUTPUTS)

    assert result.returncode == 0, result.stderr
    assert "grant-sql-identity: done" in result.stdout
    sqlcmd = [line for line in calls(tmp_path).splitlines() if line.startswith("sqlcmd ")]
    assert len(sqlcmd) == 1, calls(tmp_path)
    assert "--authentication-method ActiveDirectoryDefault" in sqlcmd[0]
    assert "-S tcp:sql-test.database.windows.net,1433 -d leads" in sqlcmd[0]
    assert "IDENTITY_NAME=id-test" in sqlcmd[0]
    assert str(GRANT.with_suffix(".sql")) in sqlcmd[0]


def test_grant_that_cannot_log_in_to_sql_fails_after_its_retries(bin_dir, tmp_path):
    fake(bin_dir, "az", FAKE_AZ_ON.format(sub="sub-azd"))
    fake(bin_dir, "sqlcmd", FAKE_GO_SQLCMD.replace("exit 0\n", "exit 1\n"))

    result = run(
        GRANT, bin_dir, tmp_path, SQL_ADD_CLIENT_IP="false", SQL_ATTEMPTS="2", SQL_RETRY_SECONDS="0", **OUTPUTS
    )

    assert result.returncode != 0
    assert "sqlcmd failed 2 times" in result.stderr and "was NOT created" in result.stderr


def test_wait_for_role_propagation_without_az_does_not_block_the_deploy(bin_dir, tmp_path):
    result = run(
        WAIT,
        bin_dir,
        tmp_path,
        STORAGE_ACCOUNT_NAME="sttest",
        AZURE_RESOURCE_GROUP="rg-test",
        IDENTITY_PRINCIPAL_ID="00000000-0000-0000-0000-000000000001",
    )

    assert result.returncode == 0
    assert "Azure CLI not found" in result.stderr


def test_wait_for_role_propagation_returns_at_once_when_the_assignments_are_old(bin_dir, tmp_path):
    fake(
        bin_dir,
        "az",
        FAKE_AZ_ON.format(sub="sub-azd").replace(
            "esac", "'role assignment list'*) echo 2020-01-01T00:00:00.000000+00:00;; esac"
        ),
    )

    result = run(
        WAIT,
        bin_dir,
        tmp_path,
        STORAGE_ACCOUNT_NAME="sttest",
        AZURE_RESOURCE_GROUP="rg-test",
        IDENTITY_PRINCIPAL_ID="00000000-0000-0000-0000-000000000001",
        AZURE_SUBSCRIPTION_ID="sub-azd",
    )

    assert result.returncode == 0, result.stderr
    assert "waiting" not in result.stdout
    assert "/subscriptions/sub-azd/resourceGroups/rg-test/providers/Microsoft.Storage/storageAccounts/sttest" in calls(
        tmp_path
    )


def test_wait_for_role_propagation_waits_out_a_fresh_assignment(bin_dir, tmp_path):
    fresh = subprocess.run(
        ["date", "-u", "+%Y-%m-%dT%H:%M:%S.000000+00:00"], capture_output=True, text=True, check=True
    ).stdout.strip()
    fake(
        bin_dir, "az", FAKE_AZ_ON.format(sub="sub-azd").replace("esac", f"'role assignment list'*) echo {fresh};; esac")
    )

    result = run(
        WAIT,
        bin_dir,
        tmp_path,
        STORAGE_ACCOUNT_NAME="sttest",
        AZURE_RESOURCE_GROUP="rg-test",
        IDENTITY_PRINCIPAL_ID="00000000-0000-0000-0000-000000000001",
        AZURE_SUBSCRIPTION_ID="sub-azd",
        ROLE_PROPAGATION_SECONDS="2",
    )

    assert result.returncode == 0, result.stderr
    assert "waiting" in result.stdout


def test_scripts_are_executable_for_azd_hooks():
    for script in (GRANT, WAIT):
        assert os.access(script, os.X_OK), f"{script.relative_to(ROOT)} is not executable (git update-index --chmod=+x)"
