"""The stock client's end-to-end tests (tests/e2e/test_hf_client.py) once more, against the team deployment:
`weightyard serve --workers 2` on PostgreSQL with its content in an S3 bucket (SeaweedFS). They are the same
test functions, given this module's `server`. Not `client`-marked: they run once, with the current client
(tests/e2e runs them with both client generations on the embedded hub).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.e2e.test_hf_client import (  # noqa: F401 - collected here, run against this module's server
    test_branches_tags_and_refs,
    test_commits_are_listed_newest_first_with_stable_ids,
    test_create_commit_with_additions_deletions_and_parent_commit,
    test_create_repo_public_and_private_and_exist_ok,
    test_delete_repo_then_it_is_not_found,
    test_downloads_by_branch_tag_and_commit_with_allow_patterns,
    test_interrupted_download_resumes_with_range,
    test_list_models_search_author_and_sort,
    test_missing_things_raise_the_client_errors,
    test_model_info_at_revision_and_files_metadata,
    test_private_repo_is_invisible_without_access,
    test_read_token_cannot_write_and_anonymous_cannot_create,
    test_tree_is_recursive_and_paginated,
    test_upload_file_folder_and_download_are_byte_identical,
    test_whoami_reports_user_and_token_scope,
)
from tests.s3 import SeaweedServer, credentials_env, fresh_prefix
from tests.support import Server, start_server, stop_server, wait_for_workers


@pytest.fixture(scope="module")
def server(
    postgres_url: str, seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = {
        **credentials_env(),
        "WEIGHTYARD_DATABASE_URL": postgres_url,
        "WEIGHTYARD_BLOB_URL": seaweed.url(fresh_prefix()),
        # The stock client does not retry a commit's 503 ScanPending; on this 2-core machine under the whole
        # suite, scans read back from SeaweedFS have taken longer than the default 5 s wait (a commit of 8
        # files failed that way once). The longest wait allowed keeps these tests about the client, not the
        # scanner's speed (tests/scan_hub/test_scan_queue.py pins the wait and the 503).
        "WEIGHTYARD_SCAN_WAIT": "60",
    }
    instance = start_server(tmp_path_factory.mktemp("team") / "data", env=env, args=("--workers", "2"))
    try:
        wait_for_workers(instance, 2)
        yield instance
    finally:
        stop_server(instance)
