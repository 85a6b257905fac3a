"""The uploads feature's errors: a request body that is not an upload."""

from __future__ import annotations

from core.errors import BadRequest, InvalidRequest, TooLarge


class UploadTooLarge(TooLarge):
    default_code = "upload_too_large"


class FileMissing(BadRequest):
    default_code = "file_missing"


class MultipleFiles(BadRequest):
    default_code = "multiple_files"


class FieldTooLong(BadRequest):
    default_code = "field_too_long"


class TooManyFields(BadRequest):
    """A form with too many parts, or too much besides its file."""

    default_code = "too_many_fields"


class NotMultipart(BadRequest):
    default_code = "not_multipart"


class BadMultipart(BadRequest):
    default_code = "bad_multipart"


class BadFormOptions(BadRequest, InvalidRequest):
    """The upload page's advanced options are not a JSON object (400)."""

    default_code = "invalid_request"
