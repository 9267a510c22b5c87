"""The SageMaker runtime emulator, driven by boto3 (SigV4-signed requests, dummy credentials)."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from local.sagemaker_runtime import encode_message, parse_route, payload_part, stream_error

ENDPOINT, TOOLS, PLAIN = "clinical-llm", "clinical-lora", "plain-model"
CHAT = {"messages": [{"role": "user", "content": "Patient P-000001 has chest pain"}], "max_tokens": 64}


@pytest.fixture(scope="module")
def runtime(emulator):
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_invoke_endpoint_forwards_to_the_component_and_returns_the_container_body(runtime, model_log, plain_model):
    r = runtime.invoke_endpoint(
        EndpointName=ENDPOINT, InferenceComponentName=PLAIN, Body=json.dumps(CHAT), ContentType="application/json"
    )
    body = json.loads(r["Body"].read())
    assert "Acute coronary syndrome" in body["choices"][0]["message"]["content"]
    assert r["InvokedProductionVariant"] == "AllTraffic"
    seen = model_log.get(plain_model)
    assert [s["body"] for s in seen] == [CHAT] and seen[0]["path"] == "/invocations"
    assert seen[0]["adapter"] is None


def test_adapter_component_adds_the_adapter_identifier_header(runtime, model_log, tools_model):
    runtime.invoke_endpoint(EndpointName=ENDPOINT, InferenceComponentName=TOOLS, Body=json.dumps(CHAT))
    assert [s["adapter"] for s in model_log.get(tools_model)] == [TOOLS]


def test_response_stream_is_event_stream_framed_payload_parts(runtime):
    r = runtime.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT, InferenceComponentName=PLAIN, Body=json.dumps(CHAT | {"stream": True})
    )
    assert r["ContentType"] == "text/event-stream"
    raw = b"".join(event["PayloadPart"]["Bytes"] for event in r["Body"])
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert "Acute coronary syndrome" in text
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert raw.rstrip().endswith(b"data: [DONE]")


@pytest.mark.parametrize(
    ("endpoint", "component", "message"),
    [
        ("no-such-endpoint", PLAIN, "Endpoint no-such-endpoint of account"),
        (ENDPOINT, "no-such-component", "Inference Component no-such-component not found"),
        (ENDPOINT, None, "Inference Component Name header is required"),
    ],
)
def test_unknown_endpoint_or_component_is_a_validation_error(runtime, endpoint, component, message):
    kwargs = {"InferenceComponentName": component} if component else {}
    for call in (runtime.invoke_endpoint, runtime.invoke_endpoint_with_response_stream):
        with pytest.raises(runtime.exceptions.ValidationError) as err:
            call(EndpointName=endpoint, Body=json.dumps(CHAT), **kwargs)
        assert message in str(err.value)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_container_error_is_a_model_error_with_the_original_status(runtime):
    with pytest.raises(runtime.exceptions.ModelError) as err:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, InferenceComponentName=PLAIN, Body=b'{"no": "messages"}')
    assert err.value.response["OriginalStatusCode"] == 400
    assert "messages" in err.value.response["OriginalMessage"]


def test_unreachable_container_is_service_unavailable(runtime):
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, InferenceComponentName="dead-component", Body=json.dumps(CHAT))
    assert err.value.response["Error"]["Code"] == "ServiceUnavailable"


def test_unsigned_request_is_refused(emulator):
    request = urllib.request.Request(
        f"{emulator.url}/endpoints/{ENDPOINT}/invocations", data=json.dumps(CHAT).encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    assert err.value.code == 403


def test_encoder_frames_decode_with_botocore_including_checksums():
    buffer = EventStreamBuffer()
    parts = [b"data: {}\n", b"x" * 70000, "ünïcode".encode()]
    buffer.add_data(b"".join(payload_part(p) for p in parts) + stream_error("boom"))
    messages = list(buffer)
    assert [m.payload for m in messages[:3]] == parts
    assert messages[0].headers == {
        ":event-type": "PayloadPart",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }
    assert messages[3].headers[":exception-type"] == "ModelStreamError"
    assert json.loads(messages[3].payload) == {"Message": "boom", "ErrorCode": "ModelStreamError"}
    corrupted = bytearray(encode_message({":message-type": "event"}, b"payload"))
    corrupted[-6] ^= 0xFF
    broken = EventStreamBuffer()
    broken.add_data(bytes(corrupted))
    with pytest.raises(Exception, match="[Cc]hecksum"):
        list(broken)


def test_container_failing_mid_stream_ends_the_stream_with_a_model_stream_error(runtime):
    r = runtime.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT, InferenceComponentName="broken-component", Body=json.dumps(CHAT | {"stream": True})
    )
    events = iter(r["Body"])
    assert b"chat.completion.chunk" in next(events)["PayloadPart"]["Bytes"]
    with pytest.raises(EventStreamError) as err:
        list(events)
    assert err.value.response["Error"]["Code"] == "ModelStreamError"


@pytest.mark.parametrize(
    "spec", ["clinical-llm", "clinical-llm/x=ftp://h", "bad_name/x=http://h:1", "e/c=http://h:1#adapter="]
)
def test_bad_route_is_refused_with_the_expected_form(spec):
    with pytest.raises(ValueError, match="expected ENDPOINT"):
        parse_route(spec)


def test_route_parses_component_and_adapter():
    r = parse_route("clinical-llm/clinical-lora=http://127.0.0.1:9/#adapter=clinical-lora")
    assert (r.endpoint, r.component, r.url, r.adapter) == (
        "clinical-llm",
        "clinical-lora",
        "http://127.0.0.1:9",
        "clinical-lora",
    )


# --- the wire protocol as botocore's service model describes it (issue 21 item 3) -----------------------------


@pytest.fixture(scope="module")
def echo_runtime():
    """The emulator in front of a container that answers what it received."""
    from local.server import LocalServer, free_port
    from tests.agent.conftest import ROOT, start_python

    port = free_port()
    with LocalServer.start(
        [sys.executable, "-m", "tests.agent.echo_container", "--port", str(port)], port=port, cwd=ROOT
    ) as echo:
        routes = [f"{ENDPOINT}/echo={echo.url}", f"{ENDPOINT}/echo-lora={echo.url}#adapter=echo-lora"]
        with start_python("local.sagemaker_runtime", *[a for r in routes for a in ("--route", r)]) as emulator:
            yield boto3.client(
                "sagemaker-runtime",
                endpoint_url=emulator.url,
                region_name="us-east-1",
                aws_access_key_id="local",
                aws_secret_access_key="local",
            )


def test_every_request_header_botocore_sends_is_handled():
    """Each header of both operations' input shapes is passed on, used for routing, or refused: none is
    silently dropped, and a new one in botocore fails here (and the emulator's start)."""
    from local.sagemaker_runtime import PASSED, REFUSED, ROUTING, wire

    for op, w in wire().items():
        assert set(w.inputs) <= PASSED | ROUTING | set(REFUSED), op
        assert {"ContentType", "Accept", "CustomAttributes", "InferenceComponentName"} <= set(w.inputs), op


def test_invoke_endpoint_maps_every_header_field_both_ways(echo_runtime):
    r = echo_runtime.invoke_endpoint(
        EndpointName=ENDPOINT,
        InferenceComponentName="echo",
        Body=b'{"x": 1}',
        ContentType="application/json",
        Accept="application/x-echo",
        CustomAttributes="trace=abc",
        InferenceId="inference-7",
        SessionId="NEW_SESSION",
        TargetVariant="AllTraffic",
        PrefixAwareId="prefix-1",
    )
    received = json.loads(r["Body"].read())
    headers = received["headers"]
    assert received["body"] == '{"x": 1}'
    assert headers["content-type"] == "application/json" and headers["accept"] == "application/x-echo"
    assert headers["x-amzn-sagemaker-custom-attributes"] == "trace=abc"
    assert headers["x-amzn-sagemaker-inference-id"] == "inference-7"
    assert headers["x-amzn-sagemaker-session-id"] == "NEW_SESSION"
    assert not {"x-amzn-sagemaker-inference-component", "x-amzn-sagemaker-target-variant", "authorization"} & set(
        headers
    )
    assert r["ContentType"] == "application/x-echo"
    assert r["InvokedProductionVariant"] == "AllTraffic"
    assert r["CustomAttributes"] == "echo:trace=abc"
    assert r["NewSessionId"] == "session-1; Expires=2030-01-01T00:00:00Z"
    assert len(r["ResponseMetadata"]["RequestId"]) == 36
    closed = echo_runtime.invoke_endpoint(
        EndpointName=ENDPOINT, InferenceComponentName="echo", Body=b"{}", SessionId="s9"
    )
    assert closed["ClosedSessionId"] == "s9" and "NewSessionId" not in closed
    assert closed["ResponseMetadata"]["RequestId"] != r["ResponseMetadata"]["RequestId"]


def test_invoke_endpoint_with_response_stream_maps_every_header_field_both_ways(echo_runtime):
    r = echo_runtime.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT,
        InferenceComponentName="echo-lora",
        Body=b'{"stream": true}',
        ContentType="application/json",
        Accept="text/event-stream",
        CustomAttributes="trace=def",
        InferenceId="inference-8",
        SessionId="s1",
        TargetVariant="AllTraffic",
    )
    received = json.loads(b"".join(e["PayloadPart"]["Bytes"] for e in r["Body"]))
    headers = received["headers"]
    assert headers["accept"] == "text/event-stream"  # the client's X-Amzn-SageMaker-Accept, as Accept
    assert headers["x-amzn-sagemaker-custom-attributes"] == "trace=def"
    assert headers["x-amzn-sagemaker-inference-id"] == "inference-8" and headers["x-amzn-sagemaker-session-id"] == "s1"
    assert headers["x-amzn-sagemaker-adapter-identifier"] == "echo-lora"
    assert r["ContentType"] == "text/event-stream"
    assert r["InvokedProductionVariant"] == "AllTraffic"
    assert r["CustomAttributes"] == "echo:trace=def"
    assert len(r["ResponseMetadata"]["RequestId"]) == 36


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"TargetModel": "m.tar.gz"}, "TargetModel is supported only by multi-model endpoints"),
        ({"TargetContainerHostname": "c1"}, "TargetContainerHostname is supported only by multi-container"),
        ({"EnableExplanations": "`true`"}, "EnableExplanations is supported only by endpoints with a SageMaker"),
        ({"TargetVariant": "Blue"}, "Variant Blue is not a variant of this endpoint"),
    ],
    ids=["target-model", "target-container", "explanations", "variant"],
)
def test_headers_for_other_endpoint_kinds_are_validation_errors_with_a_request_id(echo_runtime, kwargs, message):
    with pytest.raises(echo_runtime.exceptions.ValidationError) as err:
        echo_runtime.invoke_endpoint(EndpointName=ENDPOINT, InferenceComponentName="echo", Body=b"{}", **kwargs)
    assert message in str(err.value)
    assert len(err.value.response["ResponseMetadata"]["RequestId"]) == 36
