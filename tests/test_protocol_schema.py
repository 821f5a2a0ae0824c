"""Checks that the client protocol documents in ``protocol/`` agree with each other.

No server and no database: this module only reads files.

* ``protocol/asyncapi.yaml`` is a valid AsyncAPI 3.0.0 document, judged by the vendored official
  JSON Schema (draft-07), with every ``$ref`` resolved offline.
* Every message of ``components/messages`` has at least one example under
  ``protocol/examples/valid/``; each valid example matches its own payload schema and no other
  message of the channel.
* Each example under ``protocol/examples/invalid/`` is rejected by every client command schema,
  and its expected error ``code`` (and ``field``) follows from the protocol's rules.
* Every frame of the session transcripts in ``protocol/README.md`` matches exactly one message of
  its direction.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, ValidationError
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

PROTOCOL_DIR = Path(__file__).resolve().parent.parent / "protocol"
ASYNCAPI_PATH = PROTOCOL_DIR / "asyncapi.yaml"
ASYNCAPI_SCHEMA_PATH = PROTOCOL_DIR / "asyncapi-3.0.0.schema.json"
README_PATH = PROTOCOL_DIR / "README.md"
VALID_DIR = PROTOCOL_DIR / "examples" / "valid"
INVALID_DIR = PROTOCOL_DIR / "examples" / "invalid"

# Base URI under which the AsyncAPI document is registered, so that the payloads' local
# "#/components/schemas/..." references resolve against the whole document.
ASYNCAPI_URI = "urn:trustmess:protocol:asyncapi"
CLIENT_PREFIX = "client."
FIELD_CODES = {"invalid", "too_large"}
REJECTION_CODES = {"bad_frame", "unknown_type", "invalid", "too_large"}
VALID_EXAMPLES = sorted(VALID_DIR.glob("*.json"))
INVALID_EXAMPLES = sorted(INVALID_DIR.glob("*.json"))

Json = Any


def _refuse_remote(uri: str) -> Resource[Json]:
    """Registry hook: never fetch a schema over the network; every $ref must resolve locally."""
    raise LookupError(f"refusing to fetch {uri!r}: the test must resolve references offline")


def _load_json(path: Path) -> Json:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def asyncapi_document() -> Json:
    return yaml.safe_load(ASYNCAPI_PATH.read_text(encoding="utf-8"))


@cache
def asyncapi_meta_schema() -> Json:
    return _load_json(ASYNCAPI_SCHEMA_PATH)


def asyncapi_errors(document: Json) -> list[ValidationError]:
    """Errors of an AsyncAPI document against the vendored AsyncAPI 3.0.0 JSON Schema."""
    validator = Draft7Validator(asyncapi_meta_schema(), registry=Registry(retrieve=_refuse_remote))
    return list(validator.iter_errors(document))


@cache
def payload_registry() -> Registry[Json]:
    resource = DRAFT7.create_resource(asyncapi_document())
    return Registry(retrieve=_refuse_remote).with_resource(ASYNCAPI_URI, resource)


@cache
def payload_validator(message_name: str) -> Draft7Validator:
    """A validator for the payload of ``components/messages/<message_name>``."""
    schema = {"$ref": f"{ASYNCAPI_URI}#/components/messages/{message_name}/payload"}
    return Draft7Validator(schema, registry=payload_registry())


def message_names() -> list[str]:
    return sorted(asyncapi_document()["components"]["messages"])


def client_message_names() -> list[str]:
    return [name for name in message_names() if name.startswith(CLIENT_PREFIX)]


def wire_type(message_name: str) -> str:
    """The ``type`` value of a message, i.e. its ``name`` in the AsyncAPI document."""
    name: str = asyncapi_document()["components"]["messages"][message_name]["name"]
    return name


def payload_schema(message_name: str) -> Json:
    return follow(asyncapi_document()["components"]["messages"][message_name]["payload"])


def follow(node: Json) -> Json:
    """Follow local ``#/...`` references inside the AsyncAPI document."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are expected, got {ref!r}"
        target = asyncapi_document()
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def matching_messages(frame: Json, names: list[str]) -> list[str]:
    return [name for name in names if payload_validator(name).is_valid(frame)]


def _stem(path: Path) -> str:
    return path.stem


# ---------------------------------------------------------------- (a) the AsyncAPI document


def test_vendored_schema_is_the_official_draft07_asyncapi_300_schema() -> None:
    meta = asyncapi_meta_schema()
    assert validator_for(meta) is Draft7Validator
    assert meta["properties"]["asyncapi"]["const"] == "3.0.0"
    Draft7Validator.check_schema(meta)


def test_asyncapi_document_is_valid_asyncapi_300() -> None:
    errors = asyncapi_errors(asyncapi_document())
    assert not errors, "\n".join(f"{error.json_path}: {error.message}" for error in errors)


def _set_action(document: Json) -> None:
    document["operations"]["send"]["action"] = "publish"


def _set_binding_method(document: Json) -> None:
    document["channels"]["ws"]["bindings"]["ws"]["method"] = "PUT"


def _set_payload_to_number(document: Json) -> None:
    document["components"]["messages"]["client.ping"]["payload"] = 5


def _set_security_scheme(document: Json) -> None:
    document["components"]["securitySchemes"]["bearerHeader"]["type"] = "carrier-pigeon"


BREAKAGES: dict[str, Callable[[Json], None]] = {
    "operation_action": _set_action,
    "websocket_binding_method": _set_binding_method,
    "message_payload": _set_payload_to_number,
    "security_scheme": _set_security_scheme,
}


@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_meta_schema_rejects_a_broken_document(breakage: Callable[[Json], None]) -> None:
    """The meta-schema check is not vacuous: nested definitions are resolved and enforced."""
    document = copy.deepcopy(asyncapi_document())
    breakage(document)
    assert asyncapi_errors(document)


@pytest.mark.parametrize("message_name", message_names())
def test_message_name_is_the_payload_type(message_name: str) -> None:
    assert payload_schema(message_name)["properties"]["type"] == {"const": wire_type(message_name)}


@pytest.mark.parametrize("message_name", client_message_names())
def test_client_commands_reject_unknown_fields(message_name: str) -> None:
    schema = payload_schema(message_name)
    assert schema["additionalProperties"] is False
    assert {"type", "ref"} <= set(schema["properties"])
    assert "type" in schema["required"]


# ---------------------------------------------------------------- (b), (c) valid examples


def test_examples_exist() -> None:
    assert VALID_EXAMPLES
    assert INVALID_EXAMPLES


@pytest.mark.parametrize("message_name", message_names())
def test_every_message_has_a_valid_example(message_name: str) -> None:
    claimed = {_load_json(path)["message"] for path in VALID_EXAMPLES}
    assert message_name in claimed


@pytest.mark.parametrize("path", VALID_EXAMPLES, ids=_stem)
def test_valid_example_matches_its_payload_schema(path: Path) -> None:
    example = _load_json(path)
    assert example["message"] in message_names(), f"unknown message {example['message']!r}"
    errors = list(payload_validator(example["message"]).iter_errors(example["frame"]))
    assert not errors, "\n".join(f"{error.json_path}: {error.message}" for error in errors)


@pytest.mark.parametrize("path", VALID_EXAMPLES, ids=_stem)
def test_valid_example_matches_no_other_message(path: Path) -> None:
    """AsyncAPI: a frame on the channel is valid against exactly one message of the channel."""
    example = _load_json(path)
    assert matching_messages(example["frame"], message_names()) == [example["message"]]


# ---------------------------------------------------------------- (d) invalid examples


def offending_fields(frame: dict[str, Json], errors: list[ValidationError]) -> set[str]:
    """Top-level fields a server would name in ``field`` for these schema errors."""
    fields: set[str] = set()
    for error in errors:
        if error.validator == "required":
            fields |= set(error.validator_value) - frame.keys()
        elif error.validator == "additionalProperties":
            fields |= frame.keys() - set(error.schema["properties"])
        elif error.path:
            fields.add(str(error.path[0]))
    return fields


def expected_code(frame: Json, errors: list[ValidationError]) -> str:
    """The error code the protocol prescribes for a frame its claimed schema rejects."""
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return "bad_frame"
    if frame["type"] not in {wire_type(name) for name in client_message_names()}:
        return "unknown_type"
    if all(error.validator == "maxLength" and list(error.path) == ["body"] for error in errors):
        return "too_large"
    return "invalid"


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=_stem)
def test_invalid_example_is_well_formed(path: Path) -> None:
    example = _load_json(path)
    assert example["message"] in client_message_names(), "must claim to be a client command"
    assert example["code"] in REJECTION_CODES
    assert ("field" in example) == (example["code"] in FIELD_CODES)


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=_stem)
def test_invalid_example_is_rejected_by_its_payload_schema(path: Path) -> None:
    example = _load_json(path)
    assert not payload_validator(example["message"]).is_valid(example["frame"])


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=_stem)
def test_invalid_example_is_rejected_by_every_client_command(path: Path) -> None:
    """Covers ``unknown_type`` and ``bad_frame``: no command schema accepts the frame."""
    example = _load_json(path)
    assert matching_messages(example["frame"], client_message_names()) == []


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=_stem)
def test_invalid_example_code_follows_the_protocol(path: Path) -> None:
    example = _load_json(path)
    frame = example["frame"]
    errors = list(payload_validator(example["message"]).iter_errors(frame))
    assert expected_code(frame, errors) == example["code"]
    if example["code"] in FIELD_CODES:
        # One fault per example, so the server's `field` is unambiguous.
        assert offending_fields(frame, errors) == {example["field"]}


# ---------------------------------------------------------------- README transcripts


def transcript_frames() -> list[tuple[int, str, Json]]:
    """``(line number, direction, frame)`` of every ``> {…}`` and ``< {…}`` README line."""
    frames = []
    lines = README_PATH.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        direction, _, text = line.partition(" ")
        if direction in {">", "<"} and text.startswith("{"):
            frames.append((number, direction, json.loads(text)))
    return frames


def rejected_by_schema(index: int, frames: list[tuple[int, str, Json]]) -> bool:
    """Whether the server answers client frame ``index`` with a schema-level error."""
    frame = frames[index][2]
    if "ref" not in frame:
        return False
    for _, direction, answer in frames[index + 1 :]:
        if direction == "<" and answer.get("ref") == frame["ref"]:
            return answer["type"] == "error" and answer["code"] in REJECTION_CODES
    return False


TRANSCRIPT = transcript_frames()


def test_readme_has_a_transcript() -> None:
    assert {direction for _, direction, _ in TRANSCRIPT} == {">", "<"}


@pytest.mark.parametrize(
    "index", range(len(TRANSCRIPT)), ids=[f"line{number}" for number, _, _ in TRANSCRIPT]
)
def test_readme_transcript_frame_matches_its_schema(index: int) -> None:
    """Accepted frames match exactly one message of their side; rejected ones match none."""
    _, direction, frame = TRANSCRIPT[index]
    side = "client." if direction == ">" else "server."
    matches = matching_messages(frame, [name for name in message_names() if name.startswith(side)])
    expected = 0 if direction == ">" and rejected_by_schema(index, TRANSCRIPT) else 1
    assert len(matches) == expected, matches


def _iter_refs(node: Json) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _iter_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _iter_refs(item)


def test_every_local_reference_resolves() -> None:
    for ref in _iter_refs(asyncapi_document()):
        assert follow({"$ref": ref}) is not None, ref
