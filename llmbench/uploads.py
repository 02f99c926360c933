"""Shared by every importer: a problem names its row and field, and a rejected file lists them all."""

from dataclasses import dataclass, field

MAX_ERRORS = 500  # past this a file is clearly the wrong kind; the list says how many more


@dataclass
class RowError:
    """One problem: the row (CSV line number, or an item / key of a JSON file), field, message."""

    row: int | str
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        return f"row {self.row}, {self.field}: {self.message}"


class FileRejected(Exception):
    """The file cannot be imported; `errors` names every bad row and field. Nothing is written."""

    def __init__(self, errors: list[RowError], more: int = 0):
        self.errors = errors
        self.more = more
        super().__init__("; ".join(str(e) for e in errors[:5]))

    def as_dict(self) -> dict:
        message = f"The file was not imported: {len(self.errors) + self.more} problem(s). Nothing was written."
        return {"detail": message, "errors": [e.as_dict() for e in self.errors], "more_errors": self.more}


@dataclass
class ErrorList:
    """Collects row errors up to MAX_ERRORS, counting the rest."""

    items: list[RowError] = field(default_factory=list)
    more: int = 0

    def add(self, row: int | str, field_name: str, message: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append(RowError(row, field_name, message))
        else:
            self.more += 1

    def raise_if_any(self, error_class: type[FileRejected] = FileRejected) -> None:
        if self.items:
            raise error_class(self.items, self.more)


def decode_upload(content: bytes, error_class: type[FileRejected] = FileRejected) -> str:
    """Text of an uploaded file: UTF-8, with or without a byte-order mark."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error_class([RowError("file", "encoding", f"is not UTF-8 text (byte {exc.start}).")]) from None
