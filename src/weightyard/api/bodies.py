"""The typed JSON request bodies of every route, and the one way to read one.

Each body is a pydantic model: wrong types, missing fields and out-of-range numbers are a 400 with the
field named, before the route does any work. Unknown fields are ignored, as the Hugging Face Hub does,
because clients send more than this hub reads. Strict types: `"5"` is not an integer and `1` not a bool.
The body's size is already bounded while it is read (see `body_limit`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from weightyard.errors import BadRequest

# A size or count that fits the database's 64-bit integers.
Size = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
# Token lifetimes beyond a century are refused rather than overflowing the calendar.
MAX_TOKEN_DAYS = 36_500
RepoType = Literal["model", "dataset", "space"]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ---------------------------------------------------------------------------------------------- hf.py


class ValidateYamlBody(Body):
    content: StrictStr
    repoType: StrictStr | None = None


class PathsInfoBody(Body):
    paths: list[StrictStr] = []
    expand: StrictBool = False


class RepoTargetBody(Body):
    name: StrictStr
    organization: StrictStr | None = None
    type: RepoType | None = None


class MoveRepoBody(Body):
    fromRepo: StrictStr
    toRepo: StrictStr
    type: RepoType = "model"


class LfsDeletions(Body):
    sha: list[StrictStr] = Field(max_length=1000)
    rewriteHistory: StrictBool = True


class LfsDeletionsBody(Body):
    deletions: LfsDeletions


class SquashBody(Body):
    message: StrictStr = "Super-squash"


class CreateRepoBody(RepoTargetBody):
    private: StrictBool | None = None
    visibility: StrictStr | None = None


class RepoSettingsBody(Body):
    private: StrictBool | None = None
    visibility: Literal["public", "private"] | None = None
    gated: Literal["auto", "manual", False] | None = None
    scanPolicy: StrictStr | None = None


class BranchBody(Body):
    startingPoint: StrictStr | None = None


class TagBody(Body):
    tag: StrictStr
    message: StrictStr | None = None


class PreuploadFile(Body):
    path: StrictStr
    size: Size = 0
    sample: StrictStr = ""


class PreuploadBody(Body):
    files: list[PreuploadFile]
    # The content of a `.gitignore` committed along with these files (the client reads it locally).
    gitIgnore: StrictStr | None = None


# ---------------------------------------------------------------------------------------------- admin.py


class CreateUserBody(Body):
    name: StrictStr
    admin: StrictBool = False
    fullname: StrictStr | None = None


class CreateOrgBody(Body):
    name: StrictStr


class MemberBody(Body):
    role: StrictStr


class CreateTokenBody(Body):
    name: StrictStr
    scope: StrictStr = "read"
    repos: list[StrictStr] | None = None
    expiresInDays: Annotated[StrictInt, Field(ge=1, le=MAX_TOKEN_DAYS)] | None = None


# ---------------------------------------------------------------------------------------------- access.py


class AskAccessBody(Body):
    fields: dict[str, Any] | None = None


class HandleAccessBody(Body):
    status: StrictStr
    user: StrictStr | None = None
    requestId: Size | Annotated[StrictStr, Field(pattern=r"^[0-9]{1,18}$")] | None = None
    rejectionReason: StrictStr | None = None


class GrantAccessBody(Body):
    user: StrictStr


# ---------------------------------------------------------------------------------------------- lfs.py


class LfsObject(Body):
    oid: StrictStr
    size: Size


class LfsBatchBody(Body):
    operation: StrictStr
    objects: list[LfsObject]
    hash_algo: StrictStr = "sha256"


class LfsCompleteBody(Body):
    oid: StrictStr


class UploadSessionBody(Body):
    # an empty file has nothing to send in parts: it goes inline with the commit
    size: Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]


class UploadSessionCompleteBody(Body):
    oid: StrictStr
    # only look whether the hub already holds this content (the session ends if it does, else stays open)
    if_stored: StrictBool = False


class LfsVerifyBody(Body):
    oid: StrictStr
    size: Size | None = None


# ---------------------------------------------------------------------------------------------- provenance.py


class AddKeyBody(Body):
    publicKey: StrictStr


class RevokeKeyBody(Body):
    reason: StrictStr


B = TypeVar("B", bound=Body)


async def read_json(request: Request, model: type[B], *, empty: bool = False) -> B:
    """The request body parsed as `model`; with `empty`, a blank body reads as the model's defaults."""
    raw = await request.body()
    if empty and not raw.strip():
        return parse_body({}, model)
    return parse_body(raw, model)


def parse_body(raw: bytes | str | dict[str, Any], model: type[B]) -> B:
    try:
        if isinstance(raw, dict):
            return model.model_validate(raw)
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise BadRequest(f"invalid request body: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """The first few problems, by field; never the submitted values."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
