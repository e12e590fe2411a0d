"""Every row of the reliability table (../shared/notes/reliability.md) and the tests that
show it. The map is checked: each row has tests, and each named test exists, so a row
cannot silently lose its coverage when tests move."""

from __future__ import annotations

import ast
from functools import cache

import pytest

from ..support import REPO, shared_dir

ROWS: dict[int, tuple[str, ...]] = {
    1: ("unit/test_manifest.py::test_macro_injection_in_token_fields_is_refused",
        "unit/test_spec.py::test_free_text_cannot_run_macros",
        "hostile/test_names.py::test_a_manifest_value_rpm_refuses_is_refused_with_its_line"),
    2: ("unit/test_spec.py::test_text_escapes_percent_and_refuses_line_breaks",
        "unit/test_spec.py::test_changelog_version_is_escaped_text"),
    3: ("integration/test_cli.py::test_sources_mismatch_names_file_and_both_hashes_and_caches_nothing",
        "integration/test_distgit.py::test_download_refuses_a_tampered_file"),
    4: ("integration/test_signatures.py::test_signature_over_the_compressed_file_is_refused_with_the_hint",
        "integration/test_signatures.py::test_signature_by_an_unpinned_key_names_its_fingerprint",
        "integration/test_signatures.py::test_tampered_tarball_is_a_bad_signature",
        "integration/test_signatures.py::test_user_gnupghome_that_trusts_the_signer_changes_nothing"),
    5: ("unit/test_tarball_links.py::test_links_that_leave_the_tree_are_refused_naming_archive_and_member",
        "hostile/test_tarballs.py::test_a_hostile_tarball_extracts_nothing",
        "hostile/test_tarballs.py::test_setuid_setgid_and_sticky_bits_are_not_extracted"),
    6: ("hostile/test_inputs.py::test_hostile_checkout_input",
        "unit/test_configs.py::test_unreadable_fragment"),
    7: ("integration/test_patches.py::test_wrong_context_fails_naming_patch_file_and_hunk",),
    8: ("integration/test_crash.py::test_a_second_build_of_the_same_nvr_is_refused_and_the_first_goes_on",
        "unit/test_fsutil.py::test_lock_held_by_another_process_names_its_pid"),
    9: ("integration/test_failures.py::test_signal_mid_build_stops_everything",
        "integration/test_crash.py::test_interrupted_first_build_leaves_no_empty_results_dir"),
    10: ("unit/test_fsutil.py::test_replace_dir_keeps_old_content_when_staging_rename_fails",
         "unit/test_fsutil.py::test_atomic_write_failure_leaves_no_temp_file",
         "integration/test_distgit.py::test_failed_upload_leaves_the_checkout_unchanged",
         "integration/test_distgit.py::test_commit_git_refuses_leaves_the_checkout_unchanged"),
    11: ("hostile/test_inputs.py::test_hostile_checkout_input",),
    12: ("integration/test_koji.py::test_keeps_watching_through_dropped_connections",
         "integration/test_koji.py::test_lost_build_answer_is_reconciled_not_resubmitted",
         "integration/test_koji.py::test_failing_arch_names_arch_fault_and_log_tail",
         "integration/test_koji.py::test_cli_watch_interrupt"),
    13: ("integration/test_mockbuild.py::test_missing_build_dependency_is_named",
         "integration/test_mockbuild.py::test_compile_error_shows_the_compiler_lines",
         "integration/test_mockbuild.py::test_locked_root_is_reported"),
    14: ("unit/test_backends.py::test_terminal_escapes_are_neutralised",),
    15: ("hostile/test_names.py::test_the_srpm_ships_a_hostile_tarball_under_kxen_s_name",
         "integration/test_distgit.py::test_hostile_options_are_refused",
         "unit/test_release.py::test_dist_git_url_refusals",
         "hostile/test_names.py::test_a_path_rpm_would_expand_is_refused",
         "hostile/test_names.py::test_the_srpm_of_a_tarball_whose_top_directory_has_spaces"),
    16: ("hostile/test_locks.py::test_lock_files_are_never_followed",
         "integration/test_distgit.py::test_export_replaces_a_symlink_instead_of_writing_through_it",
         "unit/test_fsutil.py::test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched"),
    17: ("hostile/test_caches.py::test_a_changed_cache_entry_is_set_aside_and_made_again",
         "hostile/test_caches.py::test_a_corrupt_lookaside_copy_is_named_and_kept_when_no_mirror_answers"),
    18: ("hostile/test_inputs.py::test_hostile_checkout_input",
         "integration/test_distgit.py::test_patch_leading_outside_the_packaging_checkout_is_refused"),
    19: ("integration/test_crash.py::test_killed_build_is_reclaimed_by_the_next_run",
         "integration/test_distgit.py::test_export_again_is_unchanged_and_a_dropped_patch_is_removed",
         "unit/test_runner.py::test_sigkill_of_kxen_takes_the_command_group_with_it"),
    20: ("hostile/test_inputs.py::test_hostile_checkout_input",),
    21: ("hostile/test_inputs.py::test_hostile_checkout_input",),
}  # fmt: skip
TABLE_ROWS = 21


@cache
def _test_functions(relative: str) -> frozenset[str]:
    tree = ast.parse((REPO / "tests" / relative).read_text())
    return frozenset(node.name for node in tree.body if isinstance(node, ast.FunctionDef))


def test_every_row_of_the_table_has_tests() -> None:
    assert sorted(ROWS) == list(range(1, TABLE_ROWS + 1))
    assert all(ROWS.values())


@pytest.mark.parametrize("row", sorted(ROWS))
def test_the_tests_named_for_a_row_exist(row: int) -> None:
    for test in ROWS[row]:
        relative, _, name = test.partition("::")
        assert (REPO / "tests" / relative).is_file(), test
        assert name in _test_functions(relative), test


def test_the_map_follows_the_notes() -> None:
    notes = shared_dir() / "notes" / "reliability.md"
    rows = [line for line in notes.read_text().splitlines() if line.startswith("| ")]
    numbered = [line for line in rows if line.split("|")[1].strip().isdigit()]
    assert len(numbered) == TABLE_ROWS
