"""A small multipart/form-data reader (the stdlib ``cgi`` module is gone in Python 3.13)."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

__all__ = ["FormPart", "MultipartError", "parse_multipart"]


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True)
class FormPart:
    """One part of a form: its field name, optional filename and content type, and raw bytes."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def _header_params(value: str) -> Message:
    """Parse one header value with the email package, which handles quoting and RFC 2231."""
    msg = HeaderParser().parsestr(f"Content-Type: {value}\r\n\r\n")
    return msg


def parse_multipart(content_type: str, body: bytes) -> list[FormPart]:
    """Split a multipart/form-data ``body`` whose Content-Type header is ``content_type``.

    Splits on the boundary itself rather than feeding the body through ``email.parser``: the
    file bytes must come back byte for byte, whatever line endings they contain.
    """
    ctype = _header_params(content_type)
    if ctype.get_content_type() != "multipart/form-data":
        raise MultipartError(f"expected multipart/form-data, got {content_type!r}")
    boundary = ctype.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise MultipartError("multipart/form-data without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise MultipartError("multipart body has no parts")
    parts: list[FormPart] = []
    # chunks[0] is the preamble; the last chunk starts with "--" (the close delimiter).
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        if not chunk.startswith(b"\r\n"):
            raise MultipartError("malformed multipart delimiter line")
        head, sep, data = chunk[2:].partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("multipart part without a header block")
        # The CRLF before the next delimiter belongs to the delimiter, not to the data.
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = HeaderParser().parsestr(head.decode("utf-8", "replace") + "\r\n\r\n")
        disposition = headers.get("Content-Disposition")
        if disposition is None:
            raise MultipartError("multipart part without Content-Disposition")
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_filename()
        parts.append(
            FormPart(
                name=name if isinstance(name, str) else "",
                filename=filename,
                content_type=headers.get("Content-Type"),
                data=data,
            )
        )
    else:
        raise MultipartError("multipart body has no closing delimiter")
    return parts
