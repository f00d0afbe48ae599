"""The soak in miniature (500 leads, every fault, shortened outages): nothing lost, nothing twice."""

from __future__ import annotations

import pytest

from bench.soak import SoakConfig, run_soak


@pytest.mark.timeout(900)  # the soak gives itself 420 s; starting and stopping its stack takes more
def test_500_leads_through_every_fault_are_all_stored_and_announced_exactly_once(tmp_path):
    report = run_soak(
        SoakConfig(leads=500, rate=50, duplicates=0.2, scale=0.1, deadline_seconds=420, seed=11),
        workdir=tmp_path,
        log=lambda line: None,
    )
    print(report.table())
    assert len(report.faults) == 8, report.faults
    assert report.created == 500
    assert report.stored == report.created and report.lost == 0
    assert report.emailed_twice == 0 and report.unannounced == 0
    assert report.duplicates_ignored > 0 and report.undelivered_on_purpose > 0
    # the CRM endpoint failed a fifth of the POSTs, yet took every lead, each under one webhook-id
    assert report.crm_delivered == report.stored and report.crm_twice == 0
    assert report.crm_attempts > report.crm_delivered
