"""What a job records about where it ran: passed facts, its job ad, the data's digest."""

from __future__ import annotations

import hashlib

import provenance


def test_facts_come_from_the_environment_or_the_job_ad(tmp_path):
    ad = tmp_path / ".job.ad"
    # The job ad file the starter writes (old ClassAd syntax), named by _CONDOR_JOB_AD.
    ad.write_text('ProvenanceCommit = "abc123"\nContainerImage = "docker://example.org/me/study:abc1"\nJobStatus = 2\n')
    archive = tmp_path / "MNIST_data.tar.gz"
    archive.write_bytes(b"tiny data")
    record = provenance.collect(archive, environ={"_CONDOR_JOB_AD": str(ad), "PROVENANCE_LOCK_SHA256": "f" * 64})
    assert record["commit"] == "abc123" and record["pixi_lock_sha256"] == "f" * 64
    assert record["image"] == "docker://example.org/me/study:abc1"
    assert record["data_sha256"] == hashlib.sha256(b"tiny data").hexdigest()


def test_a_pack_names_the_environment_and_nothing_passed_is_none(tmp_path):
    record = provenance.collect(tmp_path / "absent.tar.gz", environ={"PIXI_PACK_EXECUTABLE": "env-gpu.sh"})
    assert record["image"] == "env-gpu.sh"
    assert record["commit"] is None and record["data_sha256"] is None
