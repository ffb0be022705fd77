#!/usr/bin/env python3
"""An OTLP/HTTP traces receiver for the tests: it decodes every export request with
OpenTelemetry's own protobuf classes (the `opentelemetry-proto` package) and prints one JSON
line per span on stdout, so a test can read exactly what an exporter sent.

Usage: receiver.py [--port N]   (0, the default: a free port)

Prints `otlp receiver listening on PORT` once bound. Then, per span:
  {"span": {"service": ..., "scope": ..., "name": ..., "kind": ..., "trace_id": hex,
            "span_id": hex, "parent_span_id": hex or "", "attributes": {...},
            "start_unix_nano": n, "end_unix_nano": n}, "path": "/v1/traces"}
and for anything else that reaches it (a request it cannot decode, another method or
content type) one line {"unexpected": ...}: a test that expects no export sees any request.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PRINT_LOCK = threading.Lock()


def emit(record: dict) -> None:
    with PRINT_LOCK:
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
        sys.stdout.flush()


def any_value(value):
    """An AnyValue as the plain JSON value it holds."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: any_value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(pairs) -> dict:
    return {pair.key: any_value(pair.value) for pair in pairs}


def spans(request: ExportTraceServiceRequest):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "service": resource.get("service.name"),
                    "scope": scope_spans.scope.name,
                    "name": span.name,
                    "kind": span.kind,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "attributes": attributes(span.attributes),
                    "start_unix_nano": span.start_time_unix_nano,
                    "end_unix_nano": span.end_time_unix_nano,
                }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self) -> bytes:
        """The request body, by Content-Length or chunked (Node's exporter sends chunks)."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return body
            body += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after each chunk

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        body = self.read_body()
        content_type = self.headers.get("Content-Type", "")
        try:
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            if not content_type.startswith("application/x-protobuf"):
                raise ValueError(f"content type {content_type!r}")
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
        except Exception as error:  # noqa: BLE001 - reported to the test, then answered 400
            emit({"unexpected": f"POST {self.path}: {error}"})
            self.answer(400, b"", "text/plain")
            return
        for span in spans(request):
            emit({"span": span, "path": self.path})
        self.answer(200, ExportTraceServiceResponse().SerializeToString(),
                    "application/x-protobuf")

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        emit({"unexpected": f"GET {self.path}"})
        self.answer(404, b"", "text/plain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), Handler)
    emit_line = f"otlp receiver listening on {server.server_address[1]}"
    with PRINT_LOCK:
        sys.stdout.write(emit_line + "\n")
        sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
