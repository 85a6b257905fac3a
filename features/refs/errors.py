"""The refs feature's errors (their codes are the problem documents' ``code``)."""

from __future__ import annotations

from core.errors import BadRequest, Conflict, Invalid, NotFound


class InvalidRefName(Invalid):
    default_code = "invalid_ref_name"


class InvalidRange(BadRequest):
    default_code = "invalid_range"


class RefNotFound(NotFound):
    default_code = "ref_not_found"


class BranchNotFound(RefNotFound):
    default_code = "branch_not_found"


class TagNotFound(RefNotFound):
    default_code = "tag_not_found"


class RefExists(Conflict):
    default_code = "ref_exists"


class RefAmbiguous(Conflict):
    default_code = "ref_ambiguous"


class RefConflict(Conflict):
    """The branch is not where the writer expected: it moved (compare-and-swap
    lost), or the client's ``expected_commit_id`` is stale."""

    default_code = "ref_conflict"


class BranchProtected(Conflict):
    default_code = "branch_protected"


class DefaultBranch(Conflict):
    default_code = "default_branch"


class InvalidRevision(BadRequest):
    """A ref's suffix (``~N``, ``^N``, ``@{…}``) that cannot be read; ``part`` names it."""

    default_code = "invalid_revision"


class RevisionNotFound(RefNotFound):
    """A suffix that leads nowhere (past the root, a missing parent, a time
    before the ref existed); ``part`` names it."""

    default_code = "revision_not_found"
